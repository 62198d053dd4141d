// What a wire protocol owns: its routes, how its requests are read and checked, how usage is asked
// for and read (JSON and stream), what ends a complete stream, and the shape of its errors. The
// relay, key auth, the preset and the observers ask the protocol; none of them knows a wire format.
import type { RequestContext } from '../context.js';
import type { ErrorShape, LlmuxError } from '../errors/llmux-error.js';
import type { PromptEstimate } from '../accounting/estimate.js';
import type { Usage } from '../usage.js';

/** The wire protocols llmux speaks. */
export type ProtocolName = 'openai' | 'openai-responses' | 'anthropic-messages';

/** What a route does, which decides its accounting and its estimate. */
export type RouteOperation =
  /** Generates text (chat, completions, responses, messages): admitted, reserved, billed. */
  | 'generate'
  /** Embeds its input: admitted and billed for its input only. */
  | 'embed'
  /** Costs nothing upstream (a stored response read, a token count): authenticated, not admitted. */
  | 'free';

/** One route of a protocol. */
export interface ProtocolRoute {
  readonly method: 'GET' | 'POST' | 'DELETE';
  /** The exact path, or one with a single `{id}` segment (`/v1/responses/{id}`). */
  readonly path: string;
  readonly operation: RouteOperation;
}

/** What the relay does with one event of an upstream stream. */
export type StreamVerdict =
  /** Forward it to the client. */
  | 'relay'
  /** Keep it from the client (the usage chunk the relay asked for on the client's behalf). */
  | 'drop'
  /** The upstream reported an error in the stream: fail with this error object. */
  | { readonly upstreamError: unknown };

/** Reads one upstream stream, event by event, into the context (usage) and verdicts. */
export interface StreamReader {
  /** Reads one event (`data` its joined data lines, `event` its event name). */
  read(data: string | undefined, event: string | undefined): StreamVerdict;
  /** True once the event that ends a complete stream was read (`[DONE]`, `message_stop`, …). */
  readonly complete: boolean;
}

/** The body the relay sends upstream. */
export interface UpstreamRequest {
  /** The bytes (the client's own when unchanged), or undefined for a request without a body. */
  readonly body: Buffer | string | undefined;
  /** True when the relay asked for usage the client did not: the reader drops it again. */
  readonly hideUsage: boolean;
}

/**
 * One wire protocol. Implementations are immutable objects with no per-request state; what a
 * request needs lives in its context and in the {@link StreamReader} made for its stream.
 */
export interface WireProtocol extends ErrorShape {
  readonly name: ProtocolName;
  /** The routes it serves, matched exactly (method and path). */
  readonly routes: readonly ProtocolRoute[];
  /** Client headers forwarded upstream unless the host says otherwise. */
  readonly forwardHeaders: readonly string[];
  /** Why a parsed request body cannot be relayed on `route` (any route when undefined), or undefined. */
  validate(body: Record<string, unknown>, route: ProtocolRoute | undefined): LlmuxError | undefined;
  /** True when the request asks for a stream. */
  isStream(body: Record<string, unknown>): boolean;
  /** The cap the request sets on its output (`max_tokens`, `max_output_tokens`, …), if any. */
  outputCap(body: Record<string, unknown>): number | undefined;
  /** How many outputs the request asks for (`n`); 1 when it cannot ask. */
  outputCount(body: Record<string, unknown>): number;
  /** The request's prompt in tokens, estimated from its text, images (by this provider's formula), files and schemas. */
  estimatePrompt(body: Record<string, unknown>): PromptEstimate;
  /** The body with its output capped at `tokens`, in this protocol's field (for `capRequests`). */
  capOutput(body: Record<string, unknown>, tokens: number): Record<string, unknown>;
  /**
   * True when the answer will not carry the request's usage (a background response, generated
   * after the answer): the request is then billed at its reservation, never at nothing.
   */
  deferredUsage(body: Record<string, unknown>): boolean;
  /** Sets the headers that carry the relay's own key (`Authorization: Bearer`, `x-api-key`). */
  authenticate(headers: Record<string, string>, apiKey: string): void;
  /** The request to send upstream, asking for usage where the protocol needs asking. */
  upstreamRequest(ctx: RequestContext, requestStreamUsage: boolean): UpstreamRequest;
  /** The usage of a JSON answer, if it holds one. */
  readUsage(answer: Record<string, unknown>): Usage | undefined;
  /** The error object a JSON answer holds, whatever its status, or undefined. */
  errorOf(answer: Record<string, unknown>): unknown;
  /** A reader for one stream answer of `ctx`'s request. */
  streamReader(ctx: RequestContext, hideUsage: boolean): StreamReader;
}
