// Reads the rate-limit state an upstream reports on every answer: OpenAI's `x-ratelimit-*`
// (durations such as `6m0s`) and Anthropic's `anthropic-ratelimit-*` (RFC 3339 instants). The
// pool uses it to cool a member only as long as its upstream says, and to avoid one near its limit.

type HeaderValue = string | string[] | undefined;
type Headers = Record<string, HeaderValue>;

/** What an upstream said of its rate-limit windows on one answer. */
export interface UpstreamRateLimits {
  /**
   * The smallest share left over the reported windows (requests, tokens, input and output
   * tokens), from 0 (a window is spent) to 1.
   */
  readonly headroom: number;
  /**
   * ms until the window with the smallest share left resets (the last of them to reset when
   * several are equally short); undefined when not reported.
   */
  readonly resetMs: number | undefined;
}

/** One family of headers: a window's names and how its reset is written. */
interface WindowHeaders {
  readonly limit: string;
  readonly remaining: string;
  readonly reset: string;
  readonly resetIsInstant: boolean;
}

const WINDOWS: readonly WindowHeaders[] = [
  ...['requests', 'tokens'].map((w) => ({
    limit: `x-ratelimit-limit-${w}`,
    remaining: `x-ratelimit-remaining-${w}`,
    reset: `x-ratelimit-reset-${w}`,
    resetIsInstant: false,
  })),
  ...['requests', 'tokens', 'input-tokens', 'output-tokens'].map((w) => ({
    limit: `anthropic-ratelimit-${w}-limit`,
    remaining: `anthropic-ratelimit-${w}-remaining`,
    reset: `anthropic-ratelimit-${w}-reset`,
    resetIsInstant: true,
  })),
];

/** Longest reset a header can yield: one day, as for `Retry-After`. */
const MAX_RESET_MS = 86_400_000;

/**
 * The rate-limit state in `headers`, or undefined when the upstream reported none. Malformed
 * values are skipped, never thrown on.
 *
 * @param nowMs the current time in epoch ms, for Anthropic's reset instants
 */
export function readRateLimits(headers: Headers, nowMs: number): UpstreamRateLimits | undefined {
  let headroom = Infinity;
  let resetMs: number | undefined;
  for (const window of WINDOWS) {
    const remaining = numberOf(headers[window.remaining]);
    if (remaining === undefined) continue;
    const limit = numberOf(headers[window.limit]);
    const share =
      limit === undefined || limit <= 0 ? (remaining > 0 ? 1 : 0) : Math.min(1, remaining / limit);
    if (share > headroom) continue;
    const reset = first(headers[window.reset]);
    const windowResetMs =
      reset === undefined ? undefined : window.resetIsInstant ? instantMs(reset, nowMs) : durationMs(reset);
    // Windows equally short (both spent): the upstream serves again once the last one resets.
    resetMs = share === headroom ? laterOf(resetMs, windowResetMs) : windowResetMs;
    headroom = share;
  }
  return headroom === Infinity ? undefined : { headroom, resetMs };
}

function laterOf(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined ? b : b === undefined ? a : Math.max(a, b);
}

function first(value: HeaderValue): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function numberOf(value: HeaderValue): number | undefined {
  const text = first(value);
  if (text === undefined || text.length === 0 || text.length > 20) return undefined;
  const n = Number(text);
  return Number.isFinite(n) && n >= 0 ? n : undefined;
}

const DURATION =
  /^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$/;

/** OpenAI's reset durations, as Go prints them: `20ms`, `1s`, `6m0s`, `1h2m3.5s`. */
export function durationMs(text: string): number | undefined {
  if (text.length === 0 || text.length > 32) return undefined;
  const match = DURATION.exec(text.trim());
  if (match === null || match[0].length === 0) return undefined;
  const [, h, m, s, ms] = match;
  const total =
    Number(h ?? 0) * 3_600_000 + Number(m ?? 0) * 60_000 + Number(s ?? 0) * 1000 + Number(ms ?? 0);
  return bound(total);
}

/** A date and a time, as RFC 3339 starts; Date.parse alone would read `1` as the year 2001. */
const INSTANT = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}/;

/** Anthropic's reset instants (RFC 3339), as ms from `nowMs`. */
function instantMs(text: string, nowMs: number): number | undefined {
  if (text.length > 64 || !INSTANT.test(text)) return undefined;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : bound(at - nowMs);
}

function bound(ms: number): number | undefined {
  if (!Number.isFinite(ms)) return undefined;
  return Math.min(Math.max(0, Math.ceil(ms)), MAX_RESET_MS);
}
