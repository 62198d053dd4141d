// API-key authentication and admission: the key is hashed and looked up, its allow-lists,
// budgets, rate windows and quotas (and its team's and user's) checked in one atomic store
// step, and the request's real cost settled exactly once when it ends, on every path.
import type { ServedModel, UpstreamSource } from '../upstream/source.js';
import { OptionReader } from '../options.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ensureContext, onResponseClose, socketAddress, type RequestContext } from '../context.js';
import type { LlmuxErrorCode } from '../errors/catalog.js';
import { errors, LlmuxError, sendError, llmuxError } from '../errors/llmux-error.js';
import { digestsEqual, hashApiKey, readPresentedKey } from '../keys/hash.js';
import { MemoryKeyStore } from '../keys/memory-store.js';
import type { PricingTable } from '../pricing/catalog.js';
import { Pricing } from '../pricing/pricing.js';
import { checkPrice, costOf, type ModelPrice } from '../pricing/price.js';
import { billOf, reservationOf, type OutputReserve, type Reservation } from '../accounting/reservation.js';
import {
  SettlementQueue,
  type SettlementQueueOptions,
  type SettlementStats,
} from '../accounting/settlement-queue.js';
import type { Admission, ApiKey, KeyStore, RateLimitState, Settlement } from '../keys/types.js';
import { isStoreUnavailableError } from '../errors/store.js';
import { randomBytes } from 'node:crypto';
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
  /**
   * Prices: a {@link Pricing}, or a table of the host's own prices over the built-in catalog
   * (`DEFAULT_PRICING`, current list prices of OpenAI, Anthropic, Google, Mistral, DeepSeek and xAI
   * models). Default: the catalog.
   */
  pricing?: Pricing | PricingTable;
  /**
   * A model without a price: `'refuse'` (400 `model_not_priced` naming it: nothing is relayed
   * that cannot be billed), a {@link ModelPrice} to bill it at, or `'free'` to relay it at $0
   * (an explicit opt-in). Default `'refuse'`.
   */
  onUnpricedModel?: 'refuse' | 'free' | ModelPrice;
  /**
   * Output tokens reserved, per model, for a request that sets no cap of its own
   * (`max_tokens`, `max_completion_tokens`, `max_output_tokens`), instead of the model's maximum
   * output from the catalog; model names match in any case. Default: none.
   */
  outputReserve?: Record<string, number>;
  /**
   * Output tokens reserved for a request without a cap when neither `outputReserve` nor the
   * catalog knows the model's maximum. The request is never rewritten to fit it (see
   * `capRequests`). Default 4096.
   */
  defaultMaxTokens?: number;
  /**
   * Send the reserved output as the request's cap when it set none, so the reservation is a hard
   * worst case. Off by default: a request is never silently changed. Default false.
   */
  capRequests?: boolean;
  /**
   * Tell the client what its request cost: an `x-llmux-cost-usd` header on JSON answers, and on
   * streams an `x-llmux-cost-usd` trailer and a last SSE comment (`: x-llmux-cost-usd 0.000123`),
   * which SSE parsers skip. Default false.
   */
  exposeCost?: boolean;
  /** The durable settlement queue: its bound and retry timing. */
  settlement?: SettlementQueueOptions;
  /**
   * The relay's upstream when it routes models (a {@link ModelRouter}): a request is then checked
   * against every model it may be served as (each must have a price), reserved for the dearest,
   * and billed as the model that served it. The preset passes its own. Default: none (a request
   * is billed as the model it names).
   */
  router?: Pick<UpstreamSource, 'servedModels'>;
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
  /** Resolves once every settlement has reached the store (for tests, and before a last read). */
  whenSettled(): Promise<void>;
  /** The durable settlement queue's counts: pending, recovered, dropped, refused. */
  settlementStats(): SettlementStats;
  /** Lets pending settlements land (bounded), then closes the private store, if it made one. Idempotent. */
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
  const unpriced = resolveUnpriced(read, options.onUnpricedModel);
  const reserve: OutputReserve = {
    perModel: new Map(
      Object.entries(read.object('outputReserve', options.outputReserve)).map(([model, tokens]) => [
        model.toLowerCase(),
        read.positiveInteger(`outputReserve.${model}`, tokens),
      ]),
    ),
    fallbackTokens: read.positiveInteger('defaultMaxTokens', options.defaultMaxTokens, 4096),
  };
  const capRequests = read.boolean('capRequests', options.capRequests, false);
  const exposeCost = read.boolean('exposeCost', options.exposeCost, false);
  const clock = read.function('clock', options.clock, Date.now);
  const clientAddress = read.function('clientAddress', options.clientAddress, socketAddress);
  const limitFailedAuth = read.boolean('limitFailedAuth', options.limitFailedAuth, true);
  const logger = read.implementing<Logger>(
    'logger',
    options.logger ?? stderrLogger,
    ['error'],
    'an object with an error() method',
  );
  const settlements = new SettlementQueue(keyStore, logger, read.object('settlement', options.settlement));
  const router =
    options.router === undefined
      ? undefined
      : read.implementing<Required<Pick<UpstreamSource, 'servedModels'>>>(
          'router',
          options.router,
          ['servedModels'],
          'an upstream source with servedModels()',
        );

  /** A price for `model`: its endpoint's own, the catalog's, or what `onUnpricedModel` says. */
  const priceFor = (model: string | undefined, own: ModelPrice | undefined): ModelPrice | undefined =>
    own ?? pricing.priceOf(model) ?? unpriced;

  /**
   * What the request reserves: at its model's price, or (routed) at the dearest model it may be
   * served as. An error when a model has no price or the router cannot route it.
   */
  function reserveFor(ctx: RequestContext): { price: ModelPrice; reservation: Reservation } | LlmuxError {
    // What has no body or costs nothing upstream (a model list, a stored response) is not priced.
    if (ctx.body === undefined || ctx.route?.operation === 'free') {
      return { price: FREE, reservation: reservationOf(ctx, ctx.model, FREE, reserve) };
    }
    let served: readonly ServedModel[] = [];
    try {
      if (router !== undefined) served = router.servedModels(ctx);
    } catch (err) {
      if (err instanceof LlmuxError) return err;
      throw err;
    }
    if (served.length === 0) {
      const price = priceFor(ctx.model, undefined);
      if (price === undefined) return notPriced(ctx.model);
      return { price, reservation: reservationOf(ctx, ctx.model, price, reserve) };
    }
    let best: { price: ModelPrice; reservation: Reservation } | undefined;
    for (const candidate of served) {
      const price = priceFor(candidate.model, candidate.price);
      if (price === undefined) return notPriced(candidate.model);
      const reservation = reservationOf(ctx, candidate.model, price, reserve);
      if (best === undefined || reservation.costUsd > best.reservation.costUsd) best = { price, reservation };
    }
    return best!;
  }

  /** The price of the model that served the request; `fallback` (the reserved one) when unknown. */
  function servedPrice(ctx: RequestContext, fallback: ModelPrice): ModelPrice {
    const model = ctx.servedModel;
    if (model === undefined || (model === ctx.model && ctx.servedPrice === undefined)) return fallback;
    return priceFor(model, ctx.servedPrice) ?? fallback;
  }
  const reservationIds = new ReservationIds();

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
    const reserved = reserveFor(ctx);
    if (reserved instanceof LlmuxError) {
      refuse(res, ctx, reserved);
      return false;
    }
    const { price, reservation } = reserved;
    // Observers wait for the cost: held from before the admission (the client may leave during
    // it) until the bill is priced when the response closes.
    const releaseCost = ctx.hold();
    // The id is made here, so an admission that times out (and may still land in the store) can
    // be settled at no cost: it never holds a budget or a slot for a request that was not served.
    const reservationId = reservationIds.next();
    let admission: Admission;
    try {
      admission = await keyStore.admit({
        keyId: key.id,
        model: ctx.model,
        estimatedCostUsd: reservation.costUsd,
        estimatedTokens: reservation.promptTokens + reservation.outputTokens,
        nowMs: now,
        reservationId,
      });
    } catch (err) {
      releaseCost();
      if (isStoreUnavailableError(err)) {
        settlements.settle(reservationId, voidSettlement(ctx.model, clock()), ctx.id);
      }
      throw err;
    }
    if (!admission.ok) {
      releaseCost();
      refuse(res, ctx, refusalError(admission, ctx.model, reservation));
      return false;
    }
    if (admission.rateLimit !== undefined) setRateLimitHeaders(res, admission.rateLimit);
    if (capRequests && reservation.uncapped && ctx.body !== undefined) {
      // Asked for by the host: the reserve becomes the request's own cap, sent upstream.
      ctx.body = ctx.protocol.capOutput(ctx.body, reservation.outputTokens);
      ctx.rawBody = undefined;
    }
    if (exposeCost) ctx.priceUsage = (usage) => costOf(servedPrice(ctx, price), usage);
    onResponseClose(res, () => {
      const bill = billOf(ctx, reservation, res.statusCode);
      const costUsd = costOf(servedPrice(ctx, price), bill);
      ctx.costUsd = costUsd;
      releaseCost();
      settlements.settle(
        admission.reservationId,
        {
          model: ctx.servedModel ?? ctx.model,
          costUsd,
          promptTokens: bill.promptTokens,
          completionTokens: bill.completionTokens,
          cachedTokens: bill.cachedTokens,
          cacheWriteTokens: bill.cacheWriteTokens,
          reasoningTokens: bill.reasoningTokens,
          audioPromptTokens: bill.audioPromptTokens,
          audioCompletionTokens: bill.audioCompletionTokens,
          nowMs: clock(),
        },
        ctx.id,
      );
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
  middleware.whenSettled = () => settlements.whenIdle();
  middleware.settlementStats = () => settlements.stats();
  let closing: Promise<void> | undefined;
  middleware.close = () => {
    closing ??= settlements.close().then(() => ownStore?.close());
    return closing;
  };
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

function refuse(res: ServerResponse, ctx: RequestContext, err: LlmuxError): void {
  ctx.errorCode = err.code;
  sendError(res, err);
}

/** Reservation ids unique across instances: a random prefix per keyAuth, then a counter. */
class ReservationIds {
  private readonly prefix = `r_${randomBytes(9).toString('base64url')}_`;
  private count = 0;

  next(): string {
    return this.prefix + (++this.count).toString(36);
  }
}

/** The settlement of an admission that was never answered: nothing was served, nothing is billed. */
function voidSettlement(model: string | undefined, nowMs: number): Settlement {
  return { model, costUsd: 0, promptTokens: 0, completionTokens: 0, nowMs };
}

function notPriced(model: string | undefined): LlmuxError {
  return llmuxError('model_not_priced', {
    message:
      model === undefined
        ? 'the request names no model, so it cannot be priced'
        : `model ${JSON.stringify(model)} has no price: llmux relays only what it can bill (give it a price, or set onUnpricedModel)`,
    param: 'model',
  });
}

function resolveUnpriced(
  read: OptionReader,
  value: KeyAuthOptions['onUnpricedModel'],
): ModelPrice | undefined {
  if (value === undefined || value === 'refuse') return undefined;
  if (value === 'free') return FREE;
  if (typeof value !== 'object' || value === null)
    read.fail('onUnpricedModel', "'refuse', 'free' or a price", value);
  return checkPrice(value, 'onUnpricedModel');
}

/** What an unpriced model costs when the host opted into `onUnpricedModel: 'free'`. */
const FREE: ModelPrice = Object.freeze({ inputPerMTokUsd: 0, outputPerMTokUsd: 0 });

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

function refusalError(
  admission: Extract<Admission, { ok: false }>,
  model: string | undefined,
  reservation: Reservation,
): LlmuxError {
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
  if (admission.reason === 'budget' && reservation.uncapped) {
    // What an uncapped request reserves is the model's whole output: say so, and how to ask for less.
    return llmuxError('insufficient_quota', {
      message: `${admission.subject} budget left is below this request's worst case ($${reservation.costUsd.toFixed(6)} for up to ${reservation.outputTokens} output tokens); set max_tokens to reserve less`,
      retryAfterSeconds: null,
      headers,
    });
  }
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
