// Liveness and readiness for load balancers and orchestrators: live while the process serves,
// ready while every pool has an upstream to send to and every store answers its ping in time.
import { OptionReader } from '../options.js';
import express from 'express';
import type { Request, Response, Router } from 'express';

/** Longest delay `setTimeout` honours. */
/** Upstream states in which an endpoint takes no request. */
const UNAVAILABLE_STATES: ReadonlySet<string> = new Set(['cooling', 'disabled']);
/** An error `code` worth showing (`ECONNREFUSED`, `ETIMEDOUT`); anything else is not shown. */
const SAFE_ERROR_CODE = /^[A-Z][A-Z0-9_]{1,39}$/;

/**
 * What readiness reads from a pool: `UpstreamPool` fits as it is. `name`, when there, names the
 * component in the body.
 */
export interface HealthPool {
  /** One row per upstream; only `state` (and `name`, when a string) are read. */
  status(): readonly { readonly state: string; readonly name?: unknown }[];
  /** The component name. Default: `upstreams` for `pool`, `upstreams#<index>` for `pools`. */
  readonly name?: string;
}

/** A store readiness pings, e.g. the key store's Redis. */
export interface HealthStore {
  /** The component name in the body; unique. */
  name: string;
  /** Resolves when the store answers; rejects when it cannot. */
  ping(): Promise<void>;
}

/** Options of {@link healthRouter}. */
export interface HealthRouterOptions {
  /** A pool whose upstreams must not all be cooling or disabled. */
  pool?: HealthPool;
  /** More pools, each checked like `pool`. */
  pools?: readonly HealthPool[];
  /** Stores that must answer `ping()` within `timeoutMs`. */
  stores?: readonly HealthStore[];
  /**
   * Longest wait for a store's ping, in ms; a slower store counts as unreachable. Positive integer.
   * @defaultValue 1_000
   */
  timeoutMs?: number;
  /**
   * The `Retry-After` of a 503, in seconds. Positive integer.
   * @defaultValue 5
   */
  retryAfterSeconds?: number;
  /**
   * Monotonic time in ms, for the `latencyMs` of pings.
   * @defaultValue `performance.now`
   */
  clock?: () => number;
}

/** One upstream of a pool, as readiness shows it. */
export interface HealthUpstream {
  name: string | null;
  state: string;
}

/** One component of the readiness body. */
export type HealthComponent =
  | { kind: 'pool'; status: 'ok' | 'unavailable'; upstreams: HealthUpstream[]; reason?: string }
  | { kind: 'store'; status: 'ok' | 'unavailable'; latencyMs: number; reason?: string; code?: string };

/** The body of `GET /health/ready`. */
export interface HealthReport {
  status: 'ok' | 'unavailable';
  /** Why not ready: the reasons of the unavailable components, joined by `; `. */
  reason?: string;
  components: Record<string, HealthComponent>;
}

interface NamedPool {
  name: string;
  pool: HealthPool;
}

/**
 * An Express router with the two health routes:
 *
 * - `GET /health/live`: 200 `{"status":"ok"}` whenever the process answers HTTP. Checks nothing
 *   else, so an orchestrator never restarts the relay because an upstream is down.
 * - `GET /health/ready`: 200 `{"status":"ok","components":{…}}` when ready; 503 with `Retry-After`
 *   and `{"status":"unavailable","reason":…,"components":{…}}` when every upstream of a pool is
 *   cooling or disabled, or a store's ping rejects or takes longer than `timeoutMs` (the timer is
 *   cleared on every path). Checks that overlap share one round of pings, so a burst of probes
 *   never multiplies the load on a store.
 *
 * The body lists each component with its state: upstream names and states (never keys), store
 * latency and, when a ping fails, a generic reason and the error's code (`ECONNREFUSED`), never its
 * message, which may quote a connection string. Responses are `Cache-Control: no-store`.
 *
 * @example
 * app.use(healthRouter({
 *   pool,
 *   stores: [{ name: 'redis', ping: async () => void (await redis.ping()) }],
 *   timeoutMs: 500,
 * }));
 * // kubernetes: livenessProbe GET /health/live, readinessProbe GET /health/ready
 *
 * @throws TypeError naming the option when an option is invalid.
 */
export function healthRouter(options: HealthRouterOptions = {}): Router {
  const { pools, stores, timeoutMs, retryAfterSeconds, clock } = resolveOptions(options);
  let checking: Promise<HealthReport> | undefined;

  const check = async (): Promise<HealthReport> => {
    const components: Record<string, HealthComponent> = {};
    const reasons: string[] = [];
    for (const { name, pool } of pools) {
      const component = poolComponent(name, pool);
      components[name] = component;
      if (component.reason !== undefined) reasons.push(component.reason);
    }
    const pinged = await Promise.all(stores.map((store) => pingStore(store, timeoutMs, clock)));
    for (let i = 0; i < stores.length; i++) {
      const component = pinged[i]!;
      components[stores[i]!.name] = component;
      if (component.reason !== undefined) reasons.push(component.reason);
    }
    return reasons.length === 0
      ? { status: 'ok', components }
      : { status: 'unavailable', reason: reasons.join('; '), components };
  };

  const router = express.Router();
  router.get('/health/live', (_req: Request, res: Response) => {
    res.set('Cache-Control', 'no-store').status(200).json({ status: 'ok' });
  });
  router.get('/health/ready', (_req: Request, res: Response) => {
    if (checking === undefined) {
      checking = check().finally(() => {
        checking = undefined;
      });
    }
    checking.then(
      (report) => {
        res.set('Cache-Control', 'no-store');
        if (report.status !== 'ok') res.set('Retry-After', String(retryAfterSeconds));
        res.status(report.status === 'ok' ? 200 : 503).json(report);
      },
      () => {
        // check() does not reject; should it ever, the answer is still "not ready", not a hang.
        res.set('Cache-Control', 'no-store').set('Retry-After', String(retryAfterSeconds));
        res.status(503).json({ status: 'unavailable', reason: 'health check failed', components: {} });
      },
    );
  });
  return router;
}

function poolComponent(name: string, pool: HealthPool): HealthComponent {
  let rows: readonly { readonly state: string; readonly name?: unknown }[];
  try {
    rows = pool.status();
  } catch {
    return { kind: 'pool', status: 'unavailable', upstreams: [], reason: `pool ${name}: status() failed` };
  }
  const upstreams: HealthUpstream[] = [];
  let available = 0;
  for (const row of rows) {
    const state = typeof row?.state === 'string' ? row.state : 'unknown';
    upstreams.push({ name: typeof row?.name === 'string' ? row.name : null, state });
    if (!UNAVAILABLE_STATES.has(state)) available++;
  }
  if (available > 0) return { kind: 'pool', status: 'ok', upstreams };
  const reason =
    upstreams.length === 0
      ? `pool ${name} has no upstream`
      : `every upstream of pool ${name} is cooling or disabled`;
  return { kind: 'pool', status: 'unavailable', upstreams, reason };
}

/** Pings `store`, waiting at most `timeoutMs`; resolves (never rejects) with its component. */
function pingStore(store: HealthStore, timeoutMs: number, clock: () => number): Promise<HealthComponent> {
  const startedAt = clock();
  return new Promise<HealthComponent>((resolve) => {
    let settled = false;
    const finish = (component: HealthComponent): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(component);
    };
    const timer = setTimeout(() => {
      finish({
        kind: 'store',
        status: 'unavailable',
        latencyMs: timeoutMs,
        reason: `store ${store.name} did not answer within ${timeoutMs} ms`,
      });
    }, timeoutMs);
    timer.unref();
    let pinged: Promise<void>;
    try {
      pinged = Promise.resolve(store.ping());
    } catch (error) {
      pinged = Promise.reject(error);
    }
    pinged.then(
      () => finish({ kind: 'store', status: 'ok', latencyMs: elapsed(clock, startedAt) }),
      (error: unknown) => {
        const code = (error as { code?: unknown } | null)?.code;
        finish({
          kind: 'store',
          status: 'unavailable',
          latencyMs: elapsed(clock, startedAt),
          reason: `store ${store.name} is unreachable`,
          ...(typeof code === 'string' && SAFE_ERROR_CODE.test(code) ? { code } : {}),
        });
      },
    );
  });
}

function elapsed(clock: () => number, startedAt: number): number {
  return Math.max(0, Math.round(clock() - startedAt));
}

function resolveOptions(options: HealthRouterOptions): {
  pools: NamedPool[];
  stores: HealthStore[];
  timeoutMs: number;
  retryAfterSeconds: number;
  clock: () => number;
} {
  const read = new OptionReader('healthRouter');
  read.options(options, true);
  const pools: NamedPool[] = [];
  if (options.pool !== undefined) {
    checkPool(read, 'pool', options.pool);
    pools.push({ name: options.pool.name ?? 'upstreams', pool: options.pool });
  }
  if (options.pools !== undefined) {
    if (!Array.isArray(options.pools)) read.fail('pools', 'an array', options.pools);
    options.pools.forEach((pool: HealthPool, i) => {
      checkPool(read, `pools[${i}]`, pool);
      pools.push({ name: pool.name ?? `upstreams#${i}`, pool });
    });
  }
  const stores = options.stores ?? [];
  if (!Array.isArray(stores)) read.fail('stores', 'an array', stores);
  stores.forEach((store: HealthStore, i) => {
    read.implementing(`stores[${i}]`, store, ['ping'], 'an object with a ping() method');
    if (typeof store.name !== 'string' || store.name.length === 0) {
      read.fail(`stores[${i}].name`, 'a non-empty string', store.name);
    }
  });
  const names = new Set<string>();
  for (const name of [...pools.map((p) => p.name), ...stores.map((s) => s.name)]) {
    if (names.has(name)) read.fail('component names', `unique (${JSON.stringify(name)} twice)`, name);
    names.add(name);
  }
  const timeoutMs = read.durationMs('timeoutMs', options.timeoutMs, 1_000);
  const retryAfterSeconds = read.positiveInteger('retryAfterSeconds', options.retryAfterSeconds, 5, 86_400);
  const clock = read.function('clock', options.clock, () => performance.now());
  return { pools, stores: [...stores], timeoutMs, retryAfterSeconds, clock };
}

function checkPool(read: OptionReader, at: string, pool: HealthPool): void {
  read.implementing(at, pool, ['status'], 'an object with a status() method');
  if (pool.name !== undefined && (typeof pool.name !== 'string' || pool.name.length === 0)) {
    read.fail(`${at}.name`, 'a non-empty string', pool.name);
  }
}
