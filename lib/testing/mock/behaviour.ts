// Behaviours validated and pre-serialised once, when queued or set, so answering a request reads
// plain fields; and the one change a request makes to them: its own completion cap.
import { TOKEN_CLASSES } from '../../usage.js';
import type { MockBehaviour, MockFinishReason, MockUsage } from './types.js';
import { fail, flag, integerIn, optionalFlag, optionalOneOf, optionalString } from './validate.js';

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
  /** The behaviour's token counts, validated; undefined when it sets none. */
  readonly usage: Readonly<MockUsage> | undefined;
  /** Undefined: decided by the request's tools. */
  readonly toolCalls: boolean | undefined;
  /** The serialised `toolArguments`, or undefined for schema-derived ones. */
  readonly toolArgumentsJson: string | undefined;
  readonly finishReason: MockFinishReason | undefined;
  /** True when the request's own cap cut the chunks (set by {@link capChunks}). */
  readonly truncated: boolean;
}

const DEFAULT_CHUNKS = 3;
const MAX_CHUNKS = 1_000_000;
const MAX_TIMER_MS = 2 ** 31 - 1;
const MAX_TOKENS = 1_000_000_000;

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
    usage: resolveUsage(where, behaviour.usage),
    toolCalls: optionalFlag(where, 'toolCalls', behaviour.toolCalls),
    toolArgumentsJson: resolveToolArguments(where, behaviour.toolArguments),
    finishReason: optionalOneOf(where, 'finishReason', behaviour.finishReason, FINISH_REASONS),
    truncated: false,
  });
}

const FINISH_REASONS: readonly MockFinishReason[] = ['stop', 'length', 'content_filter', 'failed'];
const USAGE_FIELDS: readonly (keyof MockUsage)[] = ['promptTokens', 'completionTokens', ...TOKEN_CLASSES];

function resolveUsage(where: string, usage: MockUsage | undefined): Readonly<MockUsage> | undefined {
  if (usage === undefined) return undefined;
  if (typeof usage !== 'object' || usage === null) fail(where, 'usage', 'an object', usage);
  const resolved: MockUsage = {};
  for (const name of Object.keys(usage)) {
    if (!(USAGE_FIELDS as readonly string[]).includes(name)) {
      throw new TypeError(`${where}: usage.${name} is not a token class (${USAGE_FIELDS.join(', ')})`);
    }
  }
  for (const name of USAGE_FIELDS) {
    const value = usage[name];
    if (value !== undefined) resolved[name] = integerIn(where, `usage.${name}`, value, 0, 0, MAX_TOKENS);
  }
  // The classes are parts of the totals, so a total below its parts could never come from a provider.
  const promptParts =
    (resolved.cachedTokens ?? 0) + (resolved.cacheWriteTokens ?? 0) + (resolved.audioPromptTokens ?? 0);
  if (resolved.promptTokens !== undefined && promptParts > resolved.promptTokens) {
    fail(
      where,
      'usage.promptTokens',
      `at least cachedTokens + cacheWriteTokens + audioPromptTokens (${promptParts})`,
      resolved.promptTokens,
    );
  }
  const completionParts = (resolved.reasoningTokens ?? 0) + (resolved.audioCompletionTokens ?? 0);
  if (resolved.completionTokens !== undefined && completionParts > resolved.completionTokens) {
    fail(
      where,
      'usage.completionTokens',
      `at least reasoningTokens + audioCompletionTokens (${completionParts})`,
      resolved.completionTokens,
    );
  }
  return Object.freeze(resolved);
}

function resolveToolArguments(where: string, value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    fail(where, 'toolArguments', 'a JSON object', value);
  }
  try {
    return JSON.stringify(value);
  } catch {
    return fail(where, 'toolArguments', 'JSON-serialisable', value);
  }
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
    truncated: true,
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
