// API-key authentication and admission: the key is hashed and looked up, its allow-lists,
// budgets, rate windows and quotas (and its team's and user's) checked in one atomic store
// step, and the request's real cost settled exactly once when it ends, on every path.
import { OptionReader } from '../options.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ensureContext, onResponseClose, socketAddress, type RequestContext } from '../context.js';
import type { LlmuxErrorCode } from '../errors/catalog.js';
import { errors, LlmuxError, sendError, llmuxError } from '../errors/llmux-error.js';
import { digestsEqual, hashApiKey, readPresentedKey } from '../keys/hash.js';
import { MemoryKeyStore } from '../keys/memory-store.js';
import { Pricing, type PricingTable } from '../keys/pricing.js';
import type { Admission, ApiKey, KeyStore, RateLimitState } from '../keys/types.js';
import { stderrLogger, type Logger } from '../log.js';

type Next = (err?: unknown) => void;

/** One accepted key for the static form: give the plaintext `key` or its `hash` (see {@link hashApiKey}). */
export interface StaticKey {
  /** Identity recorded in the context, logs and metrics; never the secret. */
  id: string;
  /** The plaintext key; hashed at construction and not kept. */
  key?: string;
  /** The key's hash (hex SHA-256, or HMAC-SHA-256 with `pepper`). */
  hash?: string;
}

/** Options of {@link keyAuth}. Give a `store`, or `keys` for a fixed list without accounting limits. */
export interface KeyAuthOptions {
  /** Where keys, teams, users and their accounting live. Default: a private `MemoryKeyStore` seeded with `keys`. */
  store?: KeyStore;
  /** A fixed list of keys, for the simple case without a store of your own. */
  keys?: readonly StaticKey[];
  /** Secret for HMAC-SHA-256 key hashes; must match the one the store's hashes were made with. Default: none. */
  pepper?: string;
  /** Prices for spend: a {@link Pricing} or a table merged over the defaults. */
  pricing?: Pricing | PricingTable;
  /**
   * Completion tokens reserved when a request sets no `max_tokens`/`max_completion_tokens`; the
   * request is then sent upstream with that cap, so the reservation is a true worst case.
   * Default 4096.
   */
  defaultMaxTokens?: number;
  /** The clock, ms since the epoch; injectable for tests. Default `Date.now`. */
  clock?: () => number;
  /** The address the failed-auth limiter counts by. Default: the socket's remote address. */
  clientAddress?: (req: IncomingMessage) => string;
  /**
   * Block an address after too many failed authentications (the store's limiter: 5 in 15
   * minutes by default). Turn off only where another layer does it. Default true.
   */
  limitFailedAuth?: boolean;
  /** Where a failed settlement (a store error) is logged. Default: JSON lines on stderr. */
  logger?: Logger;
}

/** The middleware returned by {@link keyAuth}. */
export interface KeyAuth {
  (req: IncomingMessage, res: ServerResponse, next: Next): void;
  /** The store it uses (the private one when `keys` was given). */
  readonly store: KeyStore;
  /** The pricing it bills with. */
  readonly pricing: Pricing;
  /**
   * The same authentication (and failed-auth limiter) without admission: no allow-list, budget,
   * window or quota is checked or counted. For routes that cost nothing, such as `/v1/models`.
   */
  readonly authenticateOnly: (req: IncomingMessage, res: ServerResponse, next: Next) => void;
  /** Closes the private store, if it made one. Idempotent. */
  close(): Promise<void>;
}

const SAME_FOR_ALL_FAILURES = errors.invalidApiKey;
/** What keyAuth calls on a store. */
const KEY_STORE_METHODS = ['lookupKey', 'admit', 'settle', 'recordAuthFailure'];

/**
 * Authenticates `Authorization: Bearer …` or `x-api-key`, then admits the request against the
 * key's, team's and user's limits in one atomic store operation: model allow-lists (403
 * `model_not_allowed`), budgets (429 `insufficient_quota`), rpm/tpm (429 `rate_limited` with
 * `Retry-After` and `RateLimit-*`), daily quotas (429 `daily_quota_exceeded`, reset at 00:00 UTC)
 * and parallel requests (429 `too_many_parallel_requests`). Admission reserves the request's
 * worst-case cost; when the response finishes or the client leaves, the reservation is settled to
 * the real cost once. A missing, malformed, unknown, revoked or expired key gets the same 401;
 * an address with too many failures gets 429 `too_many_auth_failures` until its window passes.
 *
 * @example
 * const store = new MemoryKeyStore();
 * app.post('/v1/chat/completions', bodyLimit(), keyAuth({ store }), streamRelay({ upstream }));
 */
export function keyAuth(options: KeyAuthOptions): KeyAuth {
  const read = new OptionReader('keyAuth');
  read.options(options, true);
  const pepper = options.pepper;
  if (pepper !== undefined && (typeof pepper !== 'string' || pepper.length === 0)) {
    throw new TypeError('keyAuth: pepper must be a non-empty string');
  }
  let ownStore: MemoryKeyStore | undefined;
  let keyStore: KeyStore;
  if (options.store === undefined) {
    if (!Array.isArray(options.keys)) throw new TypeError('keyAuth: give a store or a keys array');
    ownStore = new MemoryKeyStore({ seed: { keys: staticSeed(options.keys) }, pepper });
    keyStore = ownStore;
  } else {
    if (options.keys !== undefined) throw new TypeError('keyAuth: give either store or keys, not both');
    keyStore = read.implementing<KeyStore>('store', options.store, KEY_STORE_METHODS, 'a KeyStore');
  }
  const pricing =
    options.pricing instanceof Pricing
      ? options.pricing
      : new Pricing(read.object('pricing', options.pricing));
  const defaultMaxTokens = read.positiveInteger('defaultMaxTokens', options.defaultMaxTokens, 4096);
  const clock = read.function('clock', options.clock, Date.now);
  const clientAddress = read.function('clientAddress', options.clientAddress, socketAddress);
  const limitFailedAuth = read.boolean('limitFailedAuth', options.limitFailedAuth, true);
  const logger = read.implementing<Logger>(
    'logger',
    options.logger ?? stderrLogger,
    ['error'],
    'an object with an error() method',
  );

  async function authenticate(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    admit: boolean,
  ): Promise<boolean> {
    const now = clock();
    const address = clientAddress(req);
    const presented = readPresentedKey(req.headers);
    const digest = presented === undefined ? '' : hashApiKey(presented, pepper);
    // One step: the key, and whether the address is blocked (which only a failure will read).
    const { key, failures } = await keyStore.lookupKey(digest, address, now);
    if (key === undefined || !digestsEqual(key.hash, digest) || !usable(key, now)) {
      // A valid key is always admitted, whatever others did from its address; the limiter only
      // makes failures from a blocked address cheap: a 429 and no further store work.
      if (limitFailedAuth && failures.blocked) {
        refuse(res, ctx, tooManyFailures(failures.retryAfterMs));
        return false;
      }
      if (limitFailedAuth) await keyStore.recordAuthFailure(address, now);
      refuse(res, ctx, SAME_FOR_ALL_FAILURES());
      return false;
    }
    ctx.keyId = key.id;
    ctx.teamId = key.teamId;
    ctx.userId = key.userId;
    if (!admit) return true;
    const estimate = estimateRequest(ctx, defaultMaxTokens);
    // Observers wait for the cost: held from before the admission (the client may leave during
    // it) until the bill is priced when the response closes.
    const releaseCost = ctx.hold();
    let admission: Admission;
    try {
      admission = await keyStore.admit({
        keyId: key.id,
        model: ctx.model,
        estimatedCostUsd: pricing.costUsd(ctx.model, estimate.promptTokens, estimate.completionTokens),
        estimatedTokens: estimate.promptTokens + estimate.completionTokens,
        nowMs: now,
      });
    } catch (err) {
      releaseCost();
      throw err;
    }
    if (!admission.ok) {
      releaseCost();
      refuse(res, ctx, refusalError(admission, ctx.model));
      return false;
    }
    if (admission.rateLimit !== undefined) setRateLimitHeaders(res, admission.rateLimit);
    if (estimate.capped) capCompletion(ctx, defaultMaxTokens);
    const reservationId = admission.reservationId;
    const promptEstimate = estimate.promptTokens;
    onResponseClose(res, () => {
      const bill = billOf(ctx, promptEstimate);
      const costUsd = pricing.costUsd(ctx.model, bill.promptTokens, bill.completionTokens);
      ctx.costUsd = costUsd;
      releaseCost();
      keyStore
        .settle(reservationId, {
          model: ctx.model,
          costUsd,
          promptTokens: bill.promptTokens,
          completionTokens: bill.completionTokens,
          nowMs: clock(),
        })
        .then(undefined, (err: unknown) => {
          logger.error('settlement failed', { requestId: ctx.id, keyId: ctx.keyId, error: String(err) });
        });
    });
    return true;
  }

  const handler = (admit: boolean) =>
    function llmuxKeyAuth(req: IncomingMessage, res: ServerResponse, next: Next): void {
      const ctx = ensureContext(req, res);
      authenticate(req, res, ctx, admit).then(
        (passed) => {
          // A client that left during admission gets nothing more; its reservation is settled.
          if (passed && !(res as { closed?: boolean }).closed) next();
        },
        (err: unknown) => {
          refuse(res, ctx, errors.storeUnavailable('key store', err));
        },
      );
    };
  const middleware = handler(true) as KeyAuth;
  Object.defineProperty(middleware, 'authenticateOnly', { value: handler(false) });
  Object.defineProperty(middleware, 'store', { value: keyStore });
  Object.defineProperty(middleware, 'pricing', { value: pricing });
  middleware.close = () => (ownStore === undefined ? Promise.resolve() : ownStore.close());
  return middleware;
}

function staticSeed(keys: readonly StaticKey[]) {
  return keys.map((entry) => {
    if (typeof entry?.id !== 'string' || entry.id.length === 0) {
      throw new TypeError('keyAuth: every key needs a non-empty id');
    }
    if (entry.hash !== undefined) {
      if (!/^[0-9a-f]{64}$/.test(entry.hash))
        throw new TypeError(`keyAuth: key ${entry.id} hash must be 64 hex digits`);
      return { id: entry.id, name: entry.id, hash: entry.hash };
    }
    if (typeof entry.key !== 'string' || entry.key.length === 0) {
      throw new TypeError(`keyAuth: key ${entry.id} needs a non-empty key or a 64-hex-digit hash`);
    }
    return { id: entry.id, name: entry.id, key: entry.key };
  });
}

function usable(key: ApiKey, now: number): boolean {
  return !key.revoked && (key.expiresAt === undefined || key.expiresAt > now);
}

/**
 * Worst-case tokens of a request: its prompt by size, its completion by its own cap, or by
 * `defaultMaxTokens` (`capped: true`: the caller must then send that cap upstream).
 */
export function estimateRequest(
  ctx: RequestContext,
  defaultMaxTokens: number,
): { promptTokens: number; completionTokens: number; capped: boolean } {
  const body = ctx.body;
  if (body === undefined) return { promptTokens: 0, completionTokens: 0, capped: false };
  // ~4 bytes a token for English; 3 keeps the estimate on the safe (higher) side.
  const bytes = ctx.rawBody?.length ?? JSON.stringify(body).length;
  const promptTokens = Math.ceil(bytes / 3);
  const operation = ctx.route?.operation;
  const generates =
    operation === 'generate' ||
    (operation === undefined && (body.messages !== undefined || body.prompt !== undefined));
  if (!generates) return { promptTokens, completionTokens: 0, capped: false };
  const cap = ctx.protocol.outputCap(body);
  const completionTokens = cap ?? defaultMaxTokens;
  return {
    promptTokens,
    completionTokens: completionTokens * ctx.protocol.outputCount(body),
    capped: cap === undefined,
  };
}

/**
 * Sends the reserved cap upstream: `max_completion_tokens` on chat (the field every current
 * model takes), `max_tokens` on text completions. The raw bytes are dropped so the relay
 * serializes the changed body.
 */
function capCompletion(ctx: RequestContext, maxTokens: number): void {
  const body = ctx.body;
  if (body === undefined) return;
  if (body.messages !== undefined) body.max_completion_tokens = maxTokens;
  else body.max_tokens = maxTokens;
  ctx.rawBody = undefined;
}

/**
 * What to bill: the usage the upstream reported; for a stream that ended without it (the client
 * left, the upstream cut it), the prompt estimate plus the chunks relayed; nothing when no byte
 * of an answer reached the client.
 */
export function billOf(
  ctx: RequestContext,
  promptEstimate: number,
): { promptTokens: number; completionTokens: number } {
  if (ctx.usage !== undefined) {
    return { promptTokens: ctx.usage.promptTokens, completionTokens: ctx.usage.completionTokens };
  }
  if (ctx.firstByteAt !== undefined && ctx.stream) {
    return { promptTokens: promptEstimate, completionTokens: ctx.streamedChunks };
  }
  return { promptTokens: 0, completionTokens: 0 };
}

function refuse(res: ServerResponse, ctx: RequestContext, err: LlmuxError): void {
  ctx.errorCode = err.code;
  sendError(res, err);
}

function tooManyFailures(retryAfterMs: number): LlmuxError {
  return llmuxError('too_many_auth_failures', {
    retryAfterSeconds: Math.max(1, Math.ceil(retryAfterMs / 1000)),
  });
}

const REFUSALS: Record<string, { code: LlmuxErrorCode; message: string }> = {
  budget: { code: 'insufficient_quota', message: 'budget exhausted' },
  rpm: { code: 'rate_limited', message: 'request rate limit reached' },
  tpm: { code: 'rate_limited', message: 'token rate limit reached' },
  daily_requests: { code: 'daily_quota_exceeded', message: 'daily request quota reached' },
  daily_tokens: { code: 'daily_quota_exceeded', message: 'daily token quota reached' },
  parallel: { code: 'too_many_parallel_requests', message: 'too many requests in flight' },
};

function refusalError(admission: Extract<Admission, { ok: false }>, model: string | undefined): LlmuxError {
  if (admission.reason === 'model') {
    return llmuxError('model_not_allowed', {
      message: `model ${JSON.stringify(model ?? '')} is not allowed for this ${admission.subject}`,
      param: 'model',
    });
  }
  const refusal = REFUSALS[admission.reason]!;
  const headers: Record<string, string> = {};
  if (admission.rateLimit !== undefined) Object.assign(headers, rateLimitHeaders(admission.rateLimit));
  // No wait can make the request pass (a spent budget, a request above a whole tpm limit or
  // daily quota): no Retry-After, and `x-should-retry: false` so SDKs do not sleep on it.
  const never = admission.retryAfterMs === undefined;
  return llmuxError(refusal.code, {
    message:
      never && admission.reason !== 'budget'
        ? `${admission.subject} ${refusal.message}: this request is larger than the whole limit`
        : `${admission.subject} ${refusal.message}`,
    retryAfterSeconds: never ? null : Math.max(1, Math.ceil(admission.retryAfterMs! / 1000)),
    shouldRetry: never ? false : undefined,
    headers,
  });
}

function rateLimitHeaders(state: RateLimitState): Record<string, string> {
  return {
    'RateLimit-Limit': String(state.limit),
    'RateLimit-Remaining': String(Math.max(0, Math.floor(state.remaining))),
    'RateLimit-Reset': String(Math.max(0, Math.ceil(state.resetMs / 1000))),
  };
}

function setRateLimitHeaders(res: ServerResponse, state: RateLimitState): void {
  const headers = rateLimitHeaders(state);
  for (const name in headers) res.setHeader(name, headers[name]!);
}
