// What the client's answer carries besides the upstream's body: the model that served it
// (`x-llmux-model`), and the upstream's own response headers an allow-list lets through: its
// request id (what provider support asks for), its rate-limit state, its processing time.
import type { ServerResponse } from 'node:http';
import type { RequestContext } from '../context.js';
import type { OptionReader } from '../options.js';

/** The response header naming the model that served the request. */
export const MODEL_HEADER = 'x-llmux-model';

/** The upstream's request id when the client's own `x-request-id` is kept. */
export const UPSTREAM_REQUEST_ID_HEADER = 'x-upstream-request-id';

/** Upstream response headers passed to the client by default; `*` ends a prefix. */
export const DEFAULT_RESPONSE_HEADERS: readonly string[] = Object.freeze([
  'x-request-id',
  'request-id',
  'openai-processing-ms',
  'x-ratelimit-*',
  'anthropic-ratelimit-*',
]);

/** Headers the relay writes itself, or that describe the upstream's connection: never passed. */
const OWN_HEADERS: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'content-length',
  'content-type',
  'content-encoding',
  'set-cookie',
  'trailer',
  'upgrade',
  'retry-after',
  'x-should-retry',
]);

/**
 * The relay's own headers (`x-llmux-model`, `x-llmux-cost-usd`): an upstream's of the same name
 * (another relay in front of the model) never replaces them, whatever prefix the list allows.
 */
const OWN_PREFIX = 'x-llmux-';

/** A resolved `forwardResponseHeaders`: exact names and prefixes. */
export interface ResponseHeaderRule {
  readonly names: ReadonlySet<string>;
  readonly prefixes: readonly string[];
}

/** Checks a `forwardResponseHeaders` option: header names, each possibly ending in `*`. */
export function resolveResponseHeaders(
  read: OptionReader,
  value: readonly string[] | undefined,
): ResponseHeaderRule {
  // Only an absent option means the default: `null` is refused, not read as "the default list".
  const list = value === undefined ? DEFAULT_RESPONSE_HEADERS : value;
  if (
    !Array.isArray(list) ||
    !list.every((name) => typeof name === 'string' && /^[!#$%&'*+.^_`|~0-9a-z-]+$/i.test(name))
  ) {
    read.fail('forwardResponseHeaders', 'an array of header names (a trailing * for a prefix)', value);
  }
  const names = new Set<string>();
  const prefixes: string[] = [];
  for (const raw of list) {
    const name = raw.toLowerCase();
    const star = name.indexOf('*');
    if (star !== -1 && star !== name.length - 1) {
      read.fail('forwardResponseHeaders', 'names with * only at the end', raw);
    }
    if (OWN_HEADERS.has(name))
      read.fail('forwardResponseHeaders', 'free of headers the relay writes itself', raw);
    if (star === -1) names.add(name);
    else prefixes.push(name.slice(0, -1));
  }
  return Object.freeze({ names, prefixes: Object.freeze(prefixes) });
}

/**
 * The upstream headers `rule` lets through, as the client gets them: the upstream's `x-request-id`
 * as `x-upstream-request-id` when the client sent its own (which the answer keeps), else as
 * `x-request-id`. Undefined when none passes.
 */
export function passedHeaders(
  ctx: RequestContext,
  upstream: Record<string, string | string[] | undefined>,
  rule: ResponseHeaderRule,
): Record<string, string> | undefined {
  if (rule.names.size === 0 && rule.prefixes.length === 0) return undefined;
  let passed: Record<string, string> | undefined;
  for (const name in upstream) {
    if (!allowed(name, rule) || OWN_HEADERS.has(name) || name.startsWith(OWN_PREFIX)) continue;
    const value = upstream[name];
    if (value === undefined) continue;
    const as = name === 'x-request-id' && ctx.idFromClient ? UPSTREAM_REQUEST_ID_HEADER : name;
    (passed ??= {})[as] = Array.isArray(value) ? value.join(', ') : value;
  }
  return passed;
}

/** Writes the answer's own headers: the served model and the upstream's that pass. */
export function writeAnswerHeaders(
  res: ServerResponse,
  ctx: RequestContext,
  upstream: Record<string, string | string[] | undefined>,
  rule: ResponseHeaderRule,
): void {
  if (ctx.servedModel !== undefined) res.setHeader(MODEL_HEADER, ctx.servedModel);
  const passed = passedHeaders(ctx, upstream, rule);
  if (passed !== undefined) for (const name in passed) res.setHeader(name, passed[name]!);
}

function allowed(name: string, rule: ResponseHeaderRule): boolean {
  if (rule.names.has(name)) return true;
  const prefixes = rule.prefixes;
  for (let i = 0; i < prefixes.length; i++) if (name.startsWith(prefixes[i]!)) return true;
  return false;
}
