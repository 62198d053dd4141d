// One undici connection pool per upstream origin, created on first use and closed with the relay.
import { Pool } from 'undici';

/** Connection settings for the upstream pools. */
export interface UpstreamClientOptions {
  /** Most sockets per upstream origin. Default 256. */
  connectionsPerOrigin?: number;
  /** How long an idle upstream socket is kept for reuse, in ms. Default 30_000. */
  keepAliveTimeoutMs?: number;
  /** TCP connect timeout in ms. Default 10_000. */
  connectTimeoutMs?: number;
}

/** Keeps one undici {@link Pool} per origin; `close()` closes all of them, and may be called twice. */
export class UpstreamClients {
  private readonly pools = new Map<string, Pool>();
  private readonly options: Pool.Options;
  private closing: Promise<void> | undefined = undefined;

  constructor(options: UpstreamClientOptions = {}) {
    const connections = options.connectionsPerOrigin ?? 256;
    if (!Number.isSafeInteger(connections) || connections <= 0) {
      throw new TypeError(
        `streamRelay: connectionsPerOrigin must be a positive integer, got ${String(connections)}`,
      );
    }
    this.options = {
      connections,
      pipelining: 1,
      keepAliveTimeout: options.keepAliveTimeoutMs ?? 30_000,
      connectTimeout: options.connectTimeoutMs ?? 10_000,
    };
  }

  /** The pool for `origin`, created on first use. */
  get(origin: string): Pool {
    let pool = this.pools.get(origin);
    if (pool === undefined) {
      if (this.closing !== undefined) throw new Error('upstream clients are closed');
      pool = new Pool(origin, this.options);
      this.pools.set(origin, pool);
    }
    return pool;
  }

  /** Closes every pool after its in-flight requests end. Idempotent. */
  close(): Promise<void> {
    this.closing ??= Promise.all([...this.pools.values()].map((pool) => pool.close())).then(() => {
      this.pools.clear();
    });
    return this.closing;
  }
}
