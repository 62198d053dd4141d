// A pool of upstream endpoints (URLs and keys) behind one UpstreamSource: a strategy picks among
// the healthy ones, outcomes drive cooldowns, and status() feeds health pages. No timers.
import { checkPrice, type ModelPrice } from '../pricing/price.js';
import { OptionReader } from '../options.js';
import { LlmuxError, llmuxError } from '../errors/llmux-error.js';
import { utcDayNumber } from '../keys/utc.js';
import { maskKey } from '../redact.js';
import { toRetryAfterSeconds } from '../retry/retry-after.js';
import type { RequestContext } from '../context.js';
import {
  UpstreamHealth,
  type ResolvedCooldown,
  type SharedUpstreamState,
  type UpstreamState,
} from './endpoint-health.js';
import { parseBaseUrl, type AttemptOutcome, type UpstreamEndpoint, type UpstreamSource } from './source.js';
import {
  STRATEGY_NAMES,
  createStrategy,
  type UpstreamStrategy,
  type UpstreamStrategyName,
} from './strategies.js';

export type { SharedUpstreamState, UpstreamState } from './endpoint-health.js';

/** One endpoint of a pool: a base URL and the relay's key for it. */
export interface PooledUpstreamOptions {
  /** Base URL, as an OpenAI SDK's `baseURL`: e.g. `https://api.openai.com/v1`. */
  url: string;
  /** The relay's key for this upstream, sent as `Authorization: Bearer …`. Omit for none. */
  apiKey?: string;
  /** Name in logs, metrics and `status()`; unique in the pool. Default: `host#index`, e.g. `api.openai.com#0`. */
  name?: string;
  /** Relative share of picks under the `weighted` strategy; a positive number. Default: 1. */
  weight?: number;
  /** Most attempts in flight on this endpoint at once; a positive integer. Default: no limit. */
  maxConcurrent?: number;
  /**
   * Most attempts started per UTC day (counted from 00:00:00Z); a positive integer. Counted in
   * this process only, unless `sharePoolState` (`llmux/redis`) shares the counts. Default: no limit.
   */
  dailyRequestCap?: number;
  /**
   * The model name this endpoint is asked for, written into the request body in place of the
   * client's (an Azure deployment name, a provider's own id for a model). Accounting, the tracker
   * and the `x-llmux-model` header then name it. Default: the client's model, unchanged.
   */
  model?: string;
  /**
   * What this endpoint's tokens cost, instead of the catalog's price of its model (a negotiated
   * rate, a self-hosted model). Default: the key auth's pricing of the model served.
   */
  price?: ModelPrice;
}

/** How long endpoints rest after failures. Every duration is capped by `maxMs`. */
export interface UpstreamPoolCooldownOptions {
  /** Rest after a 429 that gave neither a `Retry-After` hint nor a rate-limit reset, in ms. Default: 30_000. */
  rateLimitMs?: number;
  /** Rest after the first failure trip, in ms; each further consecutive trip doubles it. Default: 5_000. */
  baseMs?: number;
  /** Longest rest of any kind, in ms (a longer `Retry-After` is cut to it). Default: 600_000. */
  maxMs?: number;
  /** Consecutive 5xx, network or timeout failures that trip a cooldown; a positive integer. Default: 3. */
  failureThreshold?: number;
  /**
   * An endpoint whose upstream reported less than this share of a rate-limit window left
   * (`x-ratelimit-remaining-*`, `anthropic-ratelimit-*-remaining`) is passed over until the window
   * resets while another can serve, so it is spared before it answers 429. 0 turns it off.
   * Default: 0.05.
   */
  nearLimitShare?: number;
}

/** Options of {@link UpstreamPool}. */
export interface UpstreamPoolOptions {
  /** The endpoints, at least one; names unique. */
  upstreams: readonly PooledUpstreamOptions[];
  /**
   * How to choose among the endpoints that can serve: `'round-robin'` (least recently used),
   * `'random'`, `'least-connections'`, `'weighted'` (smooth weighted round-robin), `'latency'`
   * (the faster of two random picks, by a moving average of time to first byte), or a custom
   * {@link UpstreamStrategy}. Default: `'round-robin'`.
   */
  strategy?: UpstreamStrategyName | UpstreamStrategy;
  /** The current time in epoch ms; injectable for tests. Default: `Date.now`. */
  clock?: () => number;
  /** A number in `[0, 1)` for the `random` strategy; injectable for tests. Default: `Math.random`. */
  random?: () => number;
  /** Cooldown durations and the failure threshold. */
  cooldown?: UpstreamPoolCooldownOptions;
}

/** One endpoint in `UpstreamPool.status()`; never carries a full key. */
export interface UpstreamStatus {
  name: string;
  origin: string;
  basePath: string;
  /** The key masked by `maskKey` (`sk-a…wxyz`), or null when the endpoint has none. */
  key: string | null;
  state: UpstreamState;
  inFlight: number;
  /** ms until a cooldown ends; 0 when not cooling. */
  cooldownRemainingMs: number;
  consecutiveFailures: number;
  /** Attempts started since 00:00:00Z today. */
  requestsToday: number;
  weight: number;
  /** null when unlimited. */
  maxConcurrent: number | null;
  /** null when unlimited. */
  dailyRequestCap: number | null;
  /** Moving average of the upstream's time to first byte in ms; null before the first answer. */
  latencyMs: number | null;
  /** True while the upstream reported a rate-limit window nearly spent (see `cooldown.nearLimitShare`). */
  nearLimit: boolean;
  /** The model asked of this endpoint, when it names one. */
  model: string | null;
}

/**
 * A local change of an endpoint's health, as {@link UpstreamPoolObserver.stateChanged} hears it:
 *
 * - `cooling`: a 429 or a failure trip set or extended a cooldown until `cooldownUntilMs`;
 *   `halfOpen` is true after a trip (the endpoint is half-open once cooled: one probe goes).
 * - `healthy`: a half-open endpoint's probe succeeded.
 * - `disabled`: a 401 or {@link UpstreamPool.disable}.
 * - `enabled`: {@link UpstreamPool.enable}, an operator's reset.
 */
export interface UpstreamStateChange {
  /** The endpoint's name. */
  readonly name: string;
  /** What happened; see above. */
  readonly kind: 'cooling' | 'healthy' | 'disabled' | 'enabled';
  /** When the cooldown ends (or ended), epoch ms by the pool's clock; 0 when it never cooled. */
  readonly cooldownUntilMs: number;
  /** The endpoint is half-open (now, or once cooled). */
  readonly halfOpen: boolean;
  /** When the change happened, epoch ms by the pool's clock. */
  readonly atMs: number;
}

/**
 * Hears what happens in an {@link UpstreamPool}, e.g. to share it between instances. Both methods
 * run synchronously inside `acquire`/`release`/`enable`/`disable`: keep them cheap and never
 * throwing (a throw is swallowed so the pool keeps working). State applied with
 * {@link UpstreamPool.applySharedState} or {@link UpstreamPool.applySharedCount} is not reported.
 *
 * @example
 * pool.observe({ stateChanged: (change) => console.log(change.name, change.kind) });
 */
export interface UpstreamPoolObserver {
  /** A local health transition of an endpoint. */
  stateChanged?(change: UpstreamStateChange): void;
  /** An attempt started on `endpoint` on the UTC day `day` (days since the epoch); on the hot path. */
  acquired?(endpoint: UpstreamEndpoint, day: number): void;
}

/** `Retry-After` when every endpoint is disabled: recovery waits for an operator. */
const ALL_DISABLED_RETRY_AFTER_SECONDS = 60;

const OWNER = 'upstreamPool';
const READ: OptionReader = new OptionReader(OWNER);

/**
 * An {@link UpstreamSource} over many endpoints. `acquire` lets the strategy choose among the
 * eligible endpoints: not disabled, not cooling, no half-open probe out, under `maxConcurrent` and
 * under today's `dailyRequestCap`; `exclude` (the endpoint that just failed) is skipped when
 * another is eligible. `release` applies the outcome:
 *
 * - success: the consecutive failure count restarts; a half-open endpoint is healthy again.
 * - `rate_limit` (429): cools for the upstream's `Retry-After`, else until the spent window of its
 *   rate-limit headers resets (`x-ratelimit-reset-*`, `anthropic-ratelimit-*-reset`), else
 *   `cooldown.rateLimitMs`.
 * - `auth` (401: the relay's key refused): disabled until {@link UpstreamPool.enable}.
 * - `server`, `network`, `timeout`: counted; `cooldown.failureThreshold` in a row cool the endpoint
 *   for `cooldown.baseMs`, doubled on each consecutive trip. When a cooldown ends the endpoint is
 *   half-open: one probe goes through; its success heals the endpoint, its failure cools it again
 *   for the next, doubled, duration. Failures reported while cooling come from attempts started
 *   before the trip and are not counted again.
 * - `invalid_request` (what the request caused: a 403/404 for a model the relay's project cannot
 *   use, a prompt over the context window, a request over a per-request limit), `decode`,
 *   `cancelled`: about the request or the relay, not the upstream; not counted (a half-open probe
 *   that ends so lets the next attempt probe).
 *
 * When nothing is eligible `acquire` throws a 503 `LlmuxError` (`overloaded_error`,
 * `no_upstream_available`) whose `Retry-After` is the time to the earliest recovery. Endpoint
 * objects keep their identity for the pool's life. Expiry is computed from `clock()` on use, so
 * the pool holds no timers and needs no `close()`. State lives in this process only; to share
 * cooldowns, disables and daily counts between instances, see `sharePoolState` (`llmux/redis`),
 * which uses {@link observe}, {@link applySharedState} and {@link applySharedCount}.
 *
 * @example
 * const pool = upstreamPool({
 *   upstreams: [
 *     { url: 'https://api.openai.com/v1', apiKey: process.env.OPENAI_KEY_A, weight: 3 },
 *     { url: 'https://api.openai.com/v1', apiKey: process.env.OPENAI_KEY_B, maxConcurrent: 20 },
 *   ],
 *   strategy: 'weighted',
 * });
 * app.post('/v1/chat/completions', streamRelay({ upstream: pool }));
 * app.get('/health/upstreams', (_req, res) => res.json(pool.status()));
 */
export class UpstreamPool implements UpstreamSource {
  /** The endpoints in `upstreams` order; the same objects `acquire` returns. */
  readonly endpoints: readonly UpstreamEndpoint[];
  /** The strategy in use. */
  readonly strategy: UpstreamStrategy;
  private readonly health: readonly UpstreamHealth[];
  private readonly byEndpoint: Map<UpstreamEndpoint, UpstreamHealth>;
  private readonly byName: Map<string, UpstreamHealth>;
  private readonly clock: () => number;
  private readonly cooldown: ResolvedCooldown;
  /** Reused by every acquire (which is synchronous), so a pick allocates no array. */
  private readonly candidates: UpstreamHealth[] = [];
  /** The same for endpoints near their upstream's rate limit. */
  private readonly spared: UpstreamHealth[] = [];
  private pickSeq = 0;
  /** Replaced, never mutated, so a notification loop is never disturbed by (un)subscribing. */
  private observers: readonly UpstreamPoolObserver[] = [];

  constructor(options: UpstreamPoolOptions) {
    READ.options(options, true);
    const { upstreams } = options;
    if (!Array.isArray(upstreams) || upstreams.length === 0) {
      READ.fail('upstreams', 'a non-empty array', upstreams);
    }
    this.clock = READ.function('clock', options.clock, Date.now);
    const random = READ.function('random', options.random, Math.random);
    this.cooldown = resolveCooldown(options.cooldown);
    this.health = upstreams.map((u: PooledUpstreamOptions, i) => resolveUpstream(u, i));
    this.endpoints = this.health.map((h) => h.endpoint);
    this.byEndpoint = new Map(this.health.map((h) => [h.endpoint, h]));
    this.byName = new Map();
    for (const h of this.health) {
      if (this.byName.has(h.endpoint.name)) {
        throw new TypeError(
          `${OWNER}: upstreams[${h.index}].name must be unique, got ${JSON.stringify(h.endpoint.name)} twice`,
        );
      }
      this.byName.set(h.endpoint.name, h);
    }
    this.strategy = resolveStrategy(options.strategy, upstreams.length, random, this.clock);
  }

  /**
   * The endpoint for the next attempt, counted in flight until its {@link release}. `exclude` is
   * skipped when another endpoint is eligible.
   *
   * @throws LlmuxError 503 `no_upstream_available` when no endpoint can serve now.
   */
  acquire(_ctx: RequestContext | undefined, exclude?: UpstreamEndpoint): UpstreamEndpoint {
    return this.acquireAmong(this.health, exclude);
  }

  /**
   * @internal {@link acquire} among some endpoints only (a model router's group): `members` is
   * what {@link membersNamed} returned.
   */
  acquireAmong(members: readonly UpstreamHealth[], exclude?: UpstreamEndpoint): UpstreamEndpoint {
    const nowMs = this.clock();
    const day = utcDayNumber(nowMs);
    const candidates = this.candidates;
    const spared = this.spared;
    let excluded: UpstreamHealth | undefined;
    for (let i = 0; i < members.length; i++) {
      const h = members[i]!;
      if (!h.canServe(nowMs, day)) continue;
      if (h.endpoint === exclude) excluded = h;
      else if (h.isNearLimit(nowMs)) spared.push(h);
      else candidates.push(h);
    }
    // Endpoints near their upstream's limit serve only when no other can.
    if (candidates.length === 0) for (const h of spared) candidates.push(h);
    spared.length = 0;
    if (candidates.length === 0) {
      if (excluded === undefined) throw this.unavailable(members, nowMs, day);
      candidates.push(excluded);
    }
    let chosen: UpstreamHealth;
    try {
      chosen = this.strategy.pick(candidates);
    } finally {
      candidates.length = 0;
    }
    if (this.byEndpoint.get(chosen?.endpoint) !== chosen) {
      throw new TypeError(`${OWNER}: strategy ${this.strategy.name} returned an endpoint it was not offered`);
    }
    chosen.recordAcquire(day, ++this.pickSeq);
    const observers = this.observers;
    for (let i = 0; i < observers.length; i++) {
      try {
        observers[i]!.acquired?.(chosen.endpoint, day);
      } catch {
        // An observer's fault must not fail the request; see UpstreamPoolObserver.
      }
    }
    return chosen.endpoint;
  }

  /**
   * Ends the attempt on `endpoint` and applies its outcome. Call exactly once per
   * {@link acquire}. Leases are counted per endpoint: a release while none is in flight on that
   * endpoint, or for an endpoint of another source, is ignored, so counts never go below zero
   * and an outcome never counts twice.
   */
  release(endpoint: UpstreamEndpoint, outcome: AttemptOutcome): void {
    const h = this.byEndpoint.get(endpoint);
    if (h === undefined) return;
    const nowMs = this.clock();
    if (this.observers.length === 0) {
      h.recordRelease(outcome, nowMs, this.cooldown);
      return;
    }
    const wasDisabled = h.isDisabled();
    const wasHalfOpen = h.isHalfOpen();
    const cooledUntilMs = h.cooldownEndsAtMs();
    if (!h.recordRelease(outcome, nowMs, this.cooldown)) return;
    if (!wasDisabled && h.isDisabled()) this.notify(h, 'disabled', nowMs);
    if (h.cooldownEndsAtMs() > cooledUntilMs || (!wasHalfOpen && h.isHalfOpen())) {
      this.notify(h, 'cooling', nowMs);
    } else if (wasHalfOpen && !h.isHalfOpen()) {
      this.notify(h, 'healthy', nowMs);
    }
  }

  /**
   * Puts an endpoint back in service, healthy: clears a disable, a cooldown, a half-open state
   * and its failure counts. Returns false when no endpoint has that name.
   */
  enable(name: string): boolean {
    const h = this.byName.get(name);
    if (h === undefined) return false;
    h.enable();
    this.notify(h, 'enabled', this.clock());
    return true;
  }

  /**
   * Takes an endpoint out of service until {@link enable}; attempts in flight finish normally.
   * Returns false when no endpoint has that name.
   */
  disable(name: string): boolean {
    const h = this.byName.get(name);
    if (h === undefined) return false;
    h.disable();
    this.notify(h, 'disabled', this.clock());
    return true;
  }

  /**
   * Registers `observer` for local state changes and acquires; returns the function that
   * removes it (idempotent).
   *
   * @example
   * const stop = pool.observe({ stateChanged: (c) => logger.error('upstream ' + c.kind, { ...c }) });
   */
  observe(observer: UpstreamPoolObserver): () => void {
    if (typeof observer !== 'object' || observer === null) {
      READ.fail('observer', 'an object', observer);
    }
    this.observers = [...this.observers, observer];
    return () => {
      this.observers = this.observers.filter((o) => o !== observer);
    };
  }

  /**
   * Merges another instance's view of the endpoint `name` into this pool (see
   * {@link SharedUpstreamState}): a reset enables it, a disable disables it, a cooldown extends
   * the local one only if it ends later. Observers are not told. Returns false for an unknown name.
   */
  applySharedState(name: string, shared: SharedUpstreamState): boolean {
    const h = this.byName.get(name);
    h?.applyShared(shared, this.clock());
    return h !== undefined;
  }

  /**
   * Raises the endpoint's count of attempts on UTC day `day` (days since the epoch) to `count`
   * when that is higher: the cluster-wide count, so `dailyRequestCap` holds across instances.
   * Observers are not told. Returns false for an unknown name.
   */
  applySharedCount(name: string, day: number, count: number): boolean {
    const h = this.byName.get(name);
    h?.applySharedCount(day, count);
    return h !== undefined;
  }

  /** Whether an endpoint other than `endpoint` can serve now. */
  hasAlternative(_ctx: RequestContext | undefined, endpoint: UpstreamEndpoint): boolean {
    return this.anyServable(this.health, endpoint);
  }

  /** @internal Whether one of `members` other than `exclude` can serve now. */
  anyServable(members: readonly UpstreamHealth[], exclude: UpstreamEndpoint | undefined): boolean {
    const nowMs = this.clock();
    const day = utcDayNumber(nowMs);
    for (const h of members) if (h.endpoint !== exclude && h.canServe(nowMs, day)) return true;
    return false;
  }

  /**
   * @internal The endpoints named, for {@link acquireAmong}; throws a TypeError for an unknown name.
   */
  membersNamed(names: readonly string[]): readonly UpstreamHealth[] {
    return names.map((name) => {
      const h = this.byName.get(name);
      if (h === undefined) throw new TypeError(`${OWNER}: no upstream is named ${JSON.stringify(name)}`);
      return h;
    });
  }

  /** The pool's current time in epoch ms: its `clock` option. */
  now(): number {
    return this.clock();
  }

  /** Attempts in flight over all endpoints. */
  inFlightTotal(): number {
    let total = 0;
    for (const h of this.health) total += h.inFlight;
    return total;
  }

  /** A snapshot per endpoint for health pages, keys masked. */
  status(): UpstreamStatus[] {
    const nowMs = this.clock();
    const day = utcDayNumber(nowMs);
    return this.health.map((h) => ({
      name: h.endpoint.name,
      origin: h.endpoint.origin,
      basePath: h.endpoint.basePath,
      key: h.endpoint.apiKey === undefined ? null : maskKey(h.endpoint.apiKey),
      state: h.state(nowMs),
      inFlight: h.inFlight,
      cooldownRemainingMs: h.cooldownRemainingMs(nowMs),
      consecutiveFailures: h.consecutiveFailures,
      requestsToday: h.requestsOn(day),
      weight: h.weight,
      maxConcurrent: Number.isFinite(h.maxConcurrent) ? h.maxConcurrent : null,
      dailyRequestCap: Number.isFinite(h.dailyRequestCap) ? h.dailyRequestCap : null,
      latencyMs: h.latencyMs === 0 ? null : Math.round(h.latencyMs),
      nearLimit: h.isNearLimit(nowMs),
      model: h.endpoint.model ?? null,
    }));
  }

  /** Same as {@link status}, so `JSON.stringify(pool)` is safe to log. */
  toJSON(): UpstreamStatus[] {
    return this.status();
  }

  private notify(h: UpstreamHealth, kind: UpstreamStateChange['kind'], atMs: number): void {
    const observers = this.observers;
    if (observers.length === 0) return;
    const change: UpstreamStateChange = Object.freeze({
      name: h.endpoint.name,
      kind,
      cooldownUntilMs: h.cooldownEndsAtMs(),
      halfOpen: h.isHalfOpen(),
      atMs,
    });
    for (const observer of observers) {
      try {
        observer.stateChanged?.(change);
      } catch {
        // An observer's fault must not break the pool; see UpstreamPoolObserver.
      }
    }
  }

  private unavailable(members: readonly UpstreamHealth[], nowMs: number, day: number): LlmuxError {
    let waitMs = Infinity;
    let disabled = 0;
    for (const h of members) {
      if (h.isDisabled()) disabled++;
      else waitMs = Math.min(waitMs, h.msUntilServable(nowMs, day));
    }
    if (disabled === members.length) {
      return llmuxError('no_upstream_available', {
        message: 'no upstream is available: every upstream is disabled',
        retryAfterSeconds: ALL_DISABLED_RETRY_AFTER_SECONDS,
      });
    }
    return llmuxError('no_upstream_available', {
      message: 'no upstream is available: every upstream is cooling down, busy or at its cap',
      retryAfterSeconds: toRetryAfterSeconds(waitMs),
    });
  }
}

/**
 * Creates an {@link UpstreamPool}; see there for the behaviour and an example.
 *
 * @example
 * streamRelay({ upstream: upstreamPool({ upstreams: [{ url: 'https://api.openai.com/v1', apiKey }] }) });
 */
export function upstreamPool(options: UpstreamPoolOptions): UpstreamPool {
  return new UpstreamPool(options);
}

function resolveUpstream(u: PooledUpstreamOptions, index: number): UpstreamHealth {
  const at = `upstreams[${index}]`;
  if (typeof u !== 'object' || u === null || typeof u.url !== 'string') {
    READ.fail(at, 'an object with a url', u);
  }
  const { origin, basePath } = parseBaseUrl(u.url, `${OWNER}: ${at}`);
  if (u.apiKey !== undefined && (typeof u.apiKey !== 'string' || u.apiKey.length === 0)) {
    // The value is a secret: name its type, never echo it.
    throw new TypeError(`${OWNER}: ${at}.apiKey must be a non-empty string, got ${typeof u.apiKey}`);
  }
  if (u.name !== undefined && (typeof u.name !== 'string' || u.name.length === 0)) {
    READ.fail(`${at}.name`, 'a non-empty string', u.name);
  }
  const weight = u.weight ?? 1;
  if (typeof weight !== 'number' || !Number.isFinite(weight) || weight <= 0) {
    READ.fail(`${at}.weight`, 'a positive number', u.weight);
  }
  if (u.model !== undefined && (typeof u.model !== 'string' || u.model.length === 0)) {
    READ.fail(`${at}.model`, 'a non-empty string', u.model);
  }
  const endpoint: UpstreamEndpoint = Object.freeze({
    name: u.name ?? `${new URL(origin).host}#${index}`,
    origin,
    basePath,
    apiKey: u.apiKey,
    model: u.model,
    price: u.price === undefined ? undefined : checkPrice(u.price, `${OWNER}: ${at}.price`),
  });
  return new UpstreamHealth(
    endpoint,
    index,
    weight,
    READ.optionalPositiveInteger(`${at}.maxConcurrent`, u.maxConcurrent) ?? Infinity,
    READ.optionalPositiveInteger(`${at}.dailyRequestCap`, u.dailyRequestCap) ?? Infinity,
  );
}

function resolveCooldown(options: UpstreamPoolCooldownOptions | undefined): ResolvedCooldown {
  if (options !== undefined && (typeof options !== 'object' || options === null)) {
    READ.fail('cooldown', 'an object', options);
  }
  return {
    rateLimitMs: READ.nonNegativeInteger('cooldown.rateLimitMs', options?.rateLimitMs, 30_000),
    baseMs: READ.nonNegativeInteger('cooldown.baseMs', options?.baseMs, 5_000),
    maxMs: READ.nonNegativeInteger('cooldown.maxMs', options?.maxMs, 600_000),
    failureThreshold:
      READ.optionalPositiveInteger('cooldown.failureThreshold', options?.failureThreshold) ?? 3,
    nearLimitShare: READ.share('cooldown.nearLimitShare', options?.nearLimitShare, 0.05),
  };
}

function resolveStrategy(
  strategy: UpstreamPoolOptions['strategy'],
  upstreamCount: number,
  random: () => number,
  clock: () => number,
): UpstreamStrategy {
  if (strategy === undefined) return createStrategy('round-robin', { upstreamCount, random, clock });
  if (typeof strategy === 'string' && (STRATEGY_NAMES as readonly string[]).includes(strategy)) {
    return createStrategy(strategy, { upstreamCount, random, clock });
  }
  if (typeof strategy === 'object' && strategy !== null && typeof strategy.pick === 'function') {
    return strategy;
  }
  READ.fail('strategy', `one of ${STRATEGY_NAMES.join(', ')} or an object with pick()`, strategy);
}
