// Behaviours validated and pre-serialised once, when queued or set, so answering a request reads
// plain fields; and the one change a request makes to them: its own completion cap.
import type { MockBehaviour } from './types.js';
import { fail, flag, integerIn, optionalString } from './validate.js';

type HeaderValue = string | number | string[];

/** A {@link MockBehaviour} validated and pre-serialised once, when it is queued or set. */
export interface ResolvedBehaviour {
  readonly status: number;
  /** The scripted response body (`body` serialised, or `rawBody`); undefined for the protocol's own answer. */
  readonly scriptedBody: string | undefined;
  readonly retryAfter: string | undefined;
  readonly extraHeaders: readonly (readonly [string, HeaderValue])[];
  readonly delayBeforeHeadersMs: number;
  readonly chunks: number;
  readonly chunkDelayMs: number;
  readonly resetBeforeHeaders: boolean;
  /** -1 for never, else clamped to `chunks`. */
  readonly resetAfterChunks: number;
  /** -1 for never, else clamped to `chunks`. */
  readonly errorFrameAfterChunks: number;
  /** -1 for never, else clamped to `chunks`. */
  readonly stallAfterChunks: number;
  /** -1 for a stall without end. */
  readonly stallMs: number;
  readonly omitDone: boolean;
  readonly omitUsage: boolean;
  /** JSON string literal of `content + ' '`, or undefined for `tok<i> `. */
  readonly wordJson: string | undefined;
  readonly word: string | undefined;
}

const DEFAULT_CHUNKS = 3;
const MAX_CHUNKS = 1_000_000;
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Validates a behaviour; throws a TypeError naming the first invalid field. */
export function resolveBehaviour(behaviour: MockBehaviour): ResolvedBehaviour {
  const where = 'MockBehaviour';
  if (typeof behaviour !== 'object' || behaviour === null) fail(where, 'behaviour', 'an object', behaviour);
  const status = integerIn(where, 'status', behaviour.status, 200, 200, 599);
  const rawBody = optionalString(where, 'rawBody', behaviour.rawBody);
  if (rawBody !== undefined && behaviour.body !== undefined) {
    throw new TypeError(`${where}: set body or rawBody, not both`);
  }
  let scriptedBody = rawBody;
  if (behaviour.body !== undefined) {
    scriptedBody = JSON.stringify(behaviour.body) as string | undefined;
    if (scriptedBody === undefined) fail(where, 'body', 'JSON-serialisable', behaviour.body);
  }
  const chunks = integerIn(where, 'chunks', behaviour.chunks, DEFAULT_CHUNKS, 0, MAX_CHUNKS);
  const atChunk = (name: keyof MockBehaviour): number => {
    const at = integerIn(where, name, behaviour[name], -1, 0, MAX_CHUNKS);
    return at < 0 ? -1 : Math.min(at, chunks);
  };
  const word = optionalString(where, 'content', behaviour.content);
  return Object.freeze({
    status,
    scriptedBody,
    retryAfter: optionalString(where, 'retryAfter', behaviour.retryAfter),
    extraHeaders: resolveHeaders(where, behaviour.headers),
    delayBeforeHeadersMs: integerIn(
      where,
      'delayBeforeHeadersMs',
      behaviour.delayBeforeHeadersMs,
      0,
      0,
      MAX_TIMER_MS,
    ),
    chunks,
    chunkDelayMs: integerIn(where, 'chunkDelayMs', behaviour.chunkDelayMs, 0, 0, MAX_TIMER_MS),
    resetBeforeHeaders: flag(where, 'resetBeforeHeaders', behaviour.resetBeforeHeaders),
    resetAfterChunks: atChunk('resetAfterChunks'),
    errorFrameAfterChunks: atChunk('errorFrameAfterChunks'),
    stallAfterChunks: atChunk('stallAfterChunks'),
    stallMs: integerIn(where, 'stallMs', behaviour.stallMs, -1, 0, MAX_TIMER_MS),
    omitDone: flag(where, 'omitDone', behaviour.omitDone),
    omitUsage: flag(where, 'omitUsage', behaviour.omitUsage),
    wordJson: word === undefined ? undefined : JSON.stringify(`${word} `),
    word,
  });
}

function resolveHeaders(
  where: string,
  headers: MockBehaviour['headers'],
): readonly (readonly [string, HeaderValue])[] {
  const resolved: [string, HeaderValue][] = [];
  if (headers === undefined) return Object.freeze(resolved);
  if (typeof headers !== 'object' || headers === null) fail(where, 'headers', 'an object', headers);
  for (const [name, value] of Object.entries(headers)) {
    resolved.push([name.toLowerCase(), Array.isArray(value) ? [...value] : value]);
  }
  return Object.freeze(resolved);
}

/** The plain default answer: 200, three chunks `tok0 tok1 tok2 `. */
export const PLAIN: ResolvedBehaviour = resolveBehaviour({});

/** The behaviour with at most `cap` chunks (its chunk-indexed events clamped alike), as a real model stops at the request's cap. */
export function capChunks(behaviour: ResolvedBehaviour, cap: number | undefined): ResolvedBehaviour {
  if (cap === undefined || cap >= behaviour.chunks) return behaviour;
  const clamp = (at: number) => (at < 0 ? at : Math.min(at, cap));
  return {
    ...behaviour,
    chunks: cap,
    resetAfterChunks: clamp(behaviour.resetAfterChunks),
    errorFrameAfterChunks: clamp(behaviour.errorFrameAfterChunks),
    stallAfterChunks: clamp(behaviour.stallAfterChunks),
  };
}

/** The text of content chunk `index`: `tok<index> `, or the behaviour's `content` and a space. */
export function chunkText(behaviour: ResolvedBehaviour, index: number): string {
  return behaviour.word === undefined ? `tok${index} ` : `${behaviour.word} `;
}

/** {@link chunkText} as a JSON string literal (pre-serialised when the behaviour sets `content`). */
export function chunkTextJson(behaviour: ResolvedBehaviour, index: number): string {
  return behaviour.wordJson ?? `"tok${index} "`;
}
