// One server of the relay benchmark, run in its own child process by bench/relay.ts:
// `mock` (the shipped mock upstream) or a relay scenario (S1, S1u, S2, S3, S4) in front of it.
// It reports `{ port }` over IPC once listening and exits when the parent goes away.
import type { AddressInfo } from 'node:net';
import { createMockUpstream, type RecordedRequest } from '../lib/testing/index.js';
import { SSE_CHUNKS } from './relay-config.js';
import { KEEP_ALIVE_MS, listen, RELAYS } from './scenarios.js';

async function main(): Promise<void> {
  const [scenario, upstream] = process.argv.slice(2);
  let port: number;
  if (scenario === 'mock') {
    const mock = await createMockUpstream({ maxRecorded: 0, keepAliveTimeoutMs: KEEP_ALIVE_MS });
    mock.setBehaviour((req: RecordedRequest) =>
      (req.body as { stream?: unknown } | undefined)?.stream === true ? { chunks: SSE_CHUNKS } : {},
    );
    port = mock.port;
  } else {
    const make = scenario === undefined ? undefined : RELAYS[scenario];
    if (make === undefined || upstream === undefined)
      throw new Error(`relay-server: unknown scenario ${scenario}`);
    port = ((await listen(make(upstream))).address() as AddressInfo).port;
  }
  process.send?.({ port });
}

process.on('disconnect', () => process.exit(0));
main().catch((err: unknown) => {
  process.stderr.write(`${String((err as Error)?.stack ?? err)}\n`);
  process.exit(1);
});
