// The options of createMockUpstream, validated once with their defaults filled in.
import type { MockUpstreamOptions } from './types.js';
import { fail, integerIn } from './validate.js';

/** {@link MockUpstreamOptions} with every default filled in. */
export interface ResolvedOptions {
  readonly host: string;
  readonly port: number;
  readonly maxRecorded: number;
  readonly maxBodyBytes: number;
  readonly keepAliveTimeoutMs: number;
  readonly maxStoredResponses: number;
  readonly backlog: number;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

/** Fills the defaults of {@link MockUpstreamOptions}; throws a TypeError naming an invalid option. */
export function resolveOptions(options: MockUpstreamOptions): ResolvedOptions {
  const where = 'createMockUpstream';
  const host = options.host ?? '127.0.0.1';
  if (typeof host !== 'string' || host === '') fail(where, 'host', 'a non-empty string', host);
  return {
    host,
    port: integerIn(where, 'port', options.port, 0, 0, 65535),
    maxRecorded: integerIn(where, 'maxRecorded', options.maxRecorded, 1000, 0, Number.MAX_SAFE_INTEGER),
    maxBodyBytes: integerIn(where, 'maxBodyBytes', options.maxBodyBytes, 50 * 1024 * 1024, 1, 2 ** 31 - 1),
    keepAliveTimeoutMs: integerIn(
      where,
      'keepAliveTimeoutMs',
      options.keepAliveTimeoutMs,
      5000,
      1,
      MAX_TIMER_MS,
    ),
    maxStoredResponses: integerIn(
      where,
      'maxStoredResponses',
      options.maxStoredResponses,
      1000,
      0,
      Number.MAX_SAFE_INTEGER,
    ),
    backlog: integerIn(where, 'backlog', options.backlog, 511, 1, 65535),
  };
}
