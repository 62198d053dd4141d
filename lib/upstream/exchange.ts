// One client request's whole exchange with the upstreams: attempts in turn (each on another
// upstream than the one that just failed), retried only while nothing reached the client,
// optionally hedged, with every endpoint released exactly once.
import type { ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import type { RequestContext } from '../context.js';
import { errors, LlmuxError, sendError } from '../errors/llmux-error.js';
import type { RetryPolicy } from '../retry/policy.js';
import { sleep } from '../retry/sleep.js';
import { endWithError, type AttemptInput, type AttemptResult } from './attempt.js';
import { answerFacts, isResponse, relayResponse, requestUpstream, withFacts } from './request.js';
import type { ClientCache } from './client-cache.js';
import type { AnswerFacts, AttemptOutcome, UpstreamEndpoint, UpstreamSource } from './source.js';

/** Hedging: a second attempt on another upstream when the first is slow to answer. */
export interface HedgeOptions {
  /** Start the second attempt when the first has produced no response headers after this many ms. */
  afterMs: number;
}

/** What an exchange needs besides the per-attempt input. */
export interface ExchangeSettings {
  source: UpstreamSource;
  clients: ClientCache;
  retry: RetryPolicy | undefined;
  hedge: HedgeOptions | undefined;
}

/** The parts of an attempt's input that do not depend on the endpoint. */
export type ExchangeInput = Omit<AttemptInput, 'endpoint' | 'pool' | 'path'> & {
  route: string;
  /** Whether the relay asks streams for usage (the protocol's `upstreamRequest` argument). */
  requestStreamUsage: boolean;
};

const CANCELLED = { ok: false, category: 'cancelled', status: undefined, retryAfterMs: undefined } as const;

/** Releases the endpoint to its source and notes the attempt in the context, once per attempt. */
function settleAttempt(
  settings: ExchangeSettings,
  ctx: RequestContext,
  endpoint: UpstreamEndpoint,
  outcome: AttemptOutcome,
): void {
  settings.source.release(endpoint, outcome);
  ctx.attemptLog.push({
    upstream: endpoint.name,
    outcome: outcome.ok ? 'ok' : outcome.category,
    status: outcome.ok ? undefined : outcome.status,
  });
}

/**
 * Runs attempts until one answers the client, the client leaves, or the retry policy gives up
 * (then the last failure is sent). Never rejects for upstream trouble.
 */
export async function runExchange(settings: ExchangeSettings, input: ExchangeInput): Promise<void> {
  const { res, ctx, clientSignal } = input;
  const policy = settings.retry;
  policy?.recordRequest();
  let exclude: UpstreamEndpoint | undefined;
  /** The last failure: what the client hears if no upstream can be picked for the next try. */
  let previous: LlmuxError | undefined;
  for (let attempt = 1; ; attempt++) {
    // The deadline bounds the tries themselves, not only the waits between them.
    const attemptIn =
      policy === undefined
        ? input
        : {
            ...input,
            headersTimeoutMs: remainingMs(policy, ctx, input.settings),
            deadlineAt: ctx.startedAt + policy.deadlineMs,
          };
    const result = settings.hedge
      ? await hedgedAttempt(settings, attemptIn, exclude, previous, settings.hedge)
      : await singleAttempt(settings, attemptIn, exclude, previous);
    if (result === undefined) return; // no upstream could be picked: already answered
    const { outcome, failure, endpoint } = result;
    if (failure.unsent === undefined) {
      // Nothing left to send: answered, or the client left. A request must never be left
      // unanswered, so anything else (the relay stopped an attempt itself) gets a 503.
      if (!clientSignal.aborted && !res.headersSent) endWithError(res, ctx, errors.overloaded());
      return;
    }
    if (clientSignal.aborted) return;
    // What the request itself caused (a model its project cannot use, a prompt too long or too
    // large) fails the same on every upstream: the client gets it, nothing else is tried.
    const requestFault = !outcome.ok && outcome.category === 'invalid_request';
    const decision =
      policy === undefined || requestFault
        ? undefined
        : policy.decide({
            attempt,
            status: failure.network ? undefined : judgedStatus(outcome),
            network: failure.network,
            retryAfterMs: waitHint(settings.source, ctx, endpoint, outcome),
            elapsedMs: performance.now() - ctx.startedAt,
          });
    if (decision === undefined || !decision.retry) {
      if (!fallsBack(settings, ctx, outcome, failure.unsent)) {
        endWithError(res, ctx, failure.unsent);
        return;
      }
      // Another group now: its own tries, at once, on any of its endpoints.
      ctx.retryReasons.push(outcome.ok ? 'unknown' : outcome.category);
      attempt = 0;
      exclude = undefined;
      previous = failure.unsent;
      continue;
    }
    ctx.retryReasons.push(outcome.ok ? 'unknown' : outcome.category);
    try {
      await sleep(decision.delayMs, clientSignal);
    } catch (err) {
      if (clientSignal.aborted) return; // the client left during the wait
      throw err;
    }
    exclude = endpoint;
    previous = failure.unsent;
  }
}

/**
 * Whether the request moves on to its source's next fallback after a failure no retry follows:
 * the source says so, and the retry policy's deadline and budget (which counts it) allow it.
 */
function fallsBack(
  settings: ExchangeSettings,
  ctx: RequestContext,
  outcome: AttemptOutcome,
  error: LlmuxError,
): boolean {
  if (settings.source.fallback?.(ctx, outcome, error) !== true) return false;
  return settings.retry?.mayFallBack(performance.now() - ctx.startedAt) ?? true;
}

/**
 * The upstream's wait hint, for the retry policy: none when another endpoint can take the retry
 * (the one that asked for the wait cools for it; the others need not wait).
 */
function waitHint(
  source: UpstreamSource,
  ctx: RequestContext,
  endpoint: UpstreamEndpoint,
  outcome: AttemptOutcome,
): number | undefined {
  if (outcome.ok || outcome.retryAfterMs === undefined) return undefined;
  return source.hasAlternative?.(ctx, endpoint) === true ? undefined : outcome.retryAfterMs;
}

/** The first-byte timeout of the next try: never past the retry policy's deadline. */
function remainingMs(policy: RetryPolicy, ctx: RequestContext, settings: AttemptInput['settings']): number {
  const left = policy.deadlineMs - (performance.now() - ctx.startedAt);
  return Math.max(1, Math.min(settings.firstByteTimeoutMs, Math.floor(left)));
}

/**
 * The status the retry policy judges: the one the failure counts as (the upstream's own, not the
 * one the client would see, or what an error frame implies), else 504 for a timeout without an
 * answer and 502 for an answer that could not be read.
 */
function judgedStatus(outcome: AttemptOutcome): number {
  // The relay's key refused (401): another member's key may serve it, as after any 502.
  if (outcome.ok || outcome.category === 'auth') return 502;
  if (outcome.status !== undefined && outcome.status >= 400) return outcome.status;
  return outcome.category === 'timeout' ? 504 : 502;
}

interface Attempted {
  endpoint: UpstreamEndpoint;
  outcome: AttemptResult['outcome'];
  failure: AttemptResult;
}

/**
 * Picks an endpoint, or returns undefined when none can serve; then, when `answer` is set, the
 * client hears the previous try's failure if there was one (what really went wrong), else why
 * nothing could be picked (a 503 `no_upstream_available`, a 404 `model_not_found`).
 */
function pick(
  settings: ExchangeSettings,
  ctx: RequestContext,
  res: ServerResponse,
  exclude: UpstreamEndpoint | undefined,
  answer: { previous: LlmuxError | undefined } | undefined,
): UpstreamEndpoint | undefined {
  try {
    return settings.source.acquire(ctx, exclude);
  } catch (err) {
    if (answer !== undefined) {
      const error = answer.previous ?? (err instanceof LlmuxError ? err : errors.internal(err));
      ctx.errorCode = error.code;
      sendError(res, error);
    }
    return undefined;
  }
}

/**
 * The request's body with `model` in place of the client's, made as the protocol makes any body
 * (usage asked for on streams); the client's body is left as it is.
 */
function bodyAs(input: ExchangeInput, model: string): Buffer | string | undefined {
  const ctx = input.ctx;
  const body = ctx.body;
  if (body === undefined) return input.body;
  const rawBody = ctx.rawBody;
  ctx.body = { ...body, model };
  ctx.rawBody = undefined;
  try {
    return ctx.protocol.upstreamRequest(ctx, input.requestStreamUsage).body;
  } finally {
    ctx.body = body;
    ctx.rawBody = rawBody;
  }
}

/** Notes in the context which endpoint serves the request, and as which model. */
function servedBy(ctx: RequestContext, endpoint: UpstreamEndpoint): void {
  ctx.upstream = endpoint.name;
  ctx.servedModel = endpoint.model ?? ctx.routedModel ?? ctx.model;
  ctx.servedPrice = endpoint.price;
}

/** The attempt's input, or undefined when the client cache is closed (the relay shut down). */
function attemptInput(
  settings: ExchangeSettings,
  input: ExchangeInput,
  endpoint: UpstreamEndpoint,
): AttemptInput | undefined {
  let pool;
  try {
    // Taken per attempt and used at once: a pool held across an await could be evicted.
    pool = settings.clients.get(endpoint.origin);
  } catch {
    return undefined;
  }
  // An attempt counts once its request is about to go, never for a pick that was given back.
  input.ctx.attempts++;
  // An endpoint asked for another model gets the request with that model in it.
  const model = endpoint.model ?? input.ctx.routedModel;
  const body = model === undefined || model === input.ctx.model ? input.body : bodyAs(input, model);
  return { ...input, endpoint, pool, body, path: endpoint.basePath + input.route };
}

async function singleAttempt(
  settings: ExchangeSettings,
  input: ExchangeInput,
  exclude: UpstreamEndpoint | undefined,
  previous: LlmuxError | undefined,
): Promise<Attempted | undefined> {
  const endpoint = pick(settings, input.ctx, input.res, exclude, { previous });
  if (endpoint === undefined) return undefined;
  servedBy(input.ctx, endpoint);
  const attemptIn = attemptInput(settings, input, endpoint);
  if (attemptIn === undefined) return shuttingDown(settings, input, endpoint);
  const controller = new AbortController();
  const result = await withClientSignal(input.clientSignal, controller, async () => {
    const sentAt = performance.now();
    const response = await requestUpstream(attemptIn, controller);
    if (!isResponse(response)) return response;
    const facts = answerFacts(input.ctx, response, sentAt);
    return withFacts(await relayResponse(attemptIn, response, controller), facts);
  });
  settleAttempt(settings, input.ctx, endpoint, result.outcome);
  return { endpoint, outcome: result.outcome, failure: result };
}

/** The relay was closed while this request was on its way: release the endpoint and say so. */
function shuttingDown(
  settings: ExchangeSettings,
  input: ExchangeInput,
  endpoint: UpstreamEndpoint,
): undefined {
  settings.source.release(endpoint, CANCELLED);
  endWithError(input.res, input.ctx, errors.overloaded('the relay is shutting down; retry later'));
  return undefined;
}

/** Runs `work` with `controller` aborted when the client leaves; the listener is always removed. */
async function withClientSignal<T>(
  clientSignal: AbortSignal,
  controller: AbortController,
  work: () => Promise<T>,
): Promise<T> {
  const onClientGone = () => controller.abort();
  if (clientSignal.aborted) controller.abort();
  else clientSignal.addEventListener('abort', onClientGone);
  try {
    return await work();
  } finally {
    clientSignal.removeEventListener('abort', onClientGone);
  }
}

interface Contender {
  endpoint: UpstreamEndpoint;
  controller: AbortController;
  input: AttemptInput;
  response: Dispatcher.ResponseData | AttemptResult | undefined;
  facts: AnswerFacts | undefined;
}

/**
 * A hedged attempt: the first upstream gets `afterMs` to answer with headers; then a second one
 * (another endpoint) is started. The first response wins; the other attempt is aborted, its
 * endpoint released as `cancelled`, and it is never relayed (so never billed). Both attempts
 * have settled before the winner is relayed.
 */
async function hedgedAttempt(
  settings: ExchangeSettings,
  input: ExchangeInput,
  exclude: UpstreamEndpoint | undefined,
  previous: LlmuxError | undefined,
  hedge: HedgeOptions,
): Promise<Attempted | undefined> {
  const { ctx, res, clientSignal } = input;
  const first = pick(settings, ctx, res, exclude, { previous });
  if (first !== undefined) servedBy(ctx, first);
  if (first === undefined) return undefined;
  const contenders: Contender[] = [];
  let winner: Contender | undefined;
  const firstSettled = new AbortController();

  const run = async (endpoint: UpstreamEndpoint): Promise<void> => {
    const controller = new AbortController();
    const attemptIn = attemptInput(settings, input, endpoint);
    if (attemptIn === undefined) {
      settings.source.release(endpoint, CANCELLED);
      return;
    }
    const contender: Contender = {
      endpoint,
      controller,
      input: attemptIn,
      response: undefined,
      facts: undefined,
    };
    contenders.push(contender);
    const sentAt = performance.now();
    contender.response = await withClientSignal(clientSignal, controller, () =>
      requestUpstream(contender.input, controller),
    );
    if (isResponse(contender.response)) contender.facts = answerFacts(ctx, contender.response, sentAt);
    if (winner === undefined && isResponse(contender.response)) {
      winner = contender;
      for (const other of contenders) if (other !== contender) other.controller.abort();
    }
  };

  // Both contenders settle before anything else happens: none outlives the exchange.
  const settled = await Promise.allSettled([
    (async () => {
      try {
        await run(first);
      } finally {
        firstSettled.abort();
      }
    })(),
    (async () => {
      try {
        await sleep(hedge.afterMs, AbortSignal.any([firstSettled.signal, clientSignal]));
      } catch {
        return; // the first answered in time, or the client left
      }
      const second = pick(settings, ctx, res, first, undefined);
      if (second === undefined) return;
      if (second === first) {
        settings.source.release(second, CANCELLED);
        return;
      }
      await run(second);
    })(),
  ]);
  for (const outcome of settled) if (outcome.status === 'rejected') throw outcome.reason;

  // Every contender has settled: release the losers, relay the winner.
  let failed: Contender | undefined;
  for (const contender of contenders) {
    if (contender === winner) continue;
    const response = contender.response;
    if (response !== undefined && isResponse(response)) response.body.destroy();
    // A contender the relay stopped is `cancelled`; one that failed on its own keeps its outcome,
    // so a broken upstream that hedges keep rescuing still cools down.
    const stopped = response === undefined || isResponse(response);
    settleAttempt(
      settings,
      ctx,
      contender.endpoint,
      stopped ? CANCELLED : (response as AttemptResult).outcome,
    );
    if (!stopped) failed = contender;
  }
  if (winner === undefined) {
    const failure = (failed?.response ?? {
      outcome: CANCELLED,
      unsent: undefined,
      network: false,
    }) as AttemptResult;
    return { endpoint: failed?.endpoint ?? first, outcome: failure.outcome, failure };
  }
  servedBy(ctx, winner.endpoint);
  const relayed = await withClientSignal(clientSignal, winner.controller, () =>
    relayResponse(winner!.input, winner!.response as Dispatcher.ResponseData, winner!.controller),
  );
  const result = withFacts(relayed, winner.facts!);
  settleAttempt(settings, ctx, winner.endpoint, result.outcome);
  return { endpoint: winner.endpoint, outcome: result.outcome, failure: result };
}
