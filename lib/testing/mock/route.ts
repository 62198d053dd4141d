// The contract between an exchange and the wire protocols: what a route handler may read and how it
// answers, and what a protocol offers (its routes and its error shape).
import type { ResolvedBehaviour } from './behaviour.js';
import type { ResponseStore } from './response-store.js';
import type { SseScript } from './sse-writer.js';
import type { RecordedRequest } from './types.js';

/** What a route handler reads and how it answers; the exchange implements it. */
export interface RouteContext {
  readonly record: RecordedRequest;
  /** The behaviour of this request (the plain one for any method but POST). */
  readonly behaviour: ResolvedBehaviour;
  /** The request path without its query string. */
  readonly pathname: string;
  /** The query string without its `?` (`''` for none). */
  readonly search: string;
  /** The Responses API objects this mock created. */
  readonly responses: ResponseStore;
  /** Sends a complete JSON answer with the behaviour's headers. */
  sendJson(status: number, body: string): void;
  /** Sends the event-stream headers with `behaviour.status`, then streams the script under `behaviour`'s timing and faults. */
  stream(behaviour: ResolvedBehaviour, script: SseScript): void;
}

/** Answers one route; `id` is the path parameter of routes that have one (else `''`). */
export type RouteHandler = (context: RouteContext, id: string) => void;

/** A matched route and its path parameter. */
export interface RouteMatch {
  readonly handler: RouteHandler;
  readonly id: string;
}

/** One wire protocol: its routes and the shape of its error bodies. */
export interface WireProtocol {
  /** The JSON error body for `status`, in this protocol's shape; `code` overrides the status's default code. */
  errorBody(status: number, message: string, code?: string): string;
  /** The route for a method and path, or undefined (the exchange then answers 404 in this protocol's shape). */
  route(method: string, pathname: string): RouteMatch | undefined;
}
