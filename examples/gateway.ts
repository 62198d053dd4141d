// The example gateway: an Express app with the llmux preset in front of the built-in mock
// upstream (or a real one from LLMUX_UPSTREAM_URL). `npm start` runs it.
import express from 'express';
import { createServer, llmux, shutdown, type Closable } from '../lib/index.js';
import { createMockUpstream } from '../lib/testing/index.js';

const port = Number(process.env.PORT ?? 8080);
const demoKey = process.env.LLMUX_DEMO_KEY ?? 'sk-llmux-demo';
const upstreamUrl = process.env.LLMUX_UPSTREAM_URL;
const upstreamKeys = (process.env.LLMUX_UPSTREAM_KEYS ?? '')
  .split(',')
  .map((key) => key.trim())
  .filter((key) => key.length > 0);

async function main(): Promise<void> {
  const closables: Closable[] = [];
  let upstream: { url: string; apiKeys: string[] };
  if (upstreamUrl) {
    upstream = { url: upstreamUrl, apiKeys: upstreamKeys };
  } else {
    // Slow the mock's chunks a little so `curl -N` shows the stream arriving.
    const mock = await createMockUpstream();
    mock.setBehaviour({ chunks: 12, chunkDelayMs: 80 });
    closables.push(mock);
    upstream = { url: `${mock.url}/v1`, apiKeys: ['sk-mock-upstream'] };
  }

  const gateway = llmux({ upstream, auth: { keys: [{ id: 'demo', key: demoKey }] } });
  const app = express();
  app.disable('x-powered-by');
  app.use(gateway);
  const server = createServer(app);
  closables.unshift(gateway);

  server.listen(port, () => {
    const base = `http://localhost:${port}`;
    process.stdout.write(
      [
        `llmux example gateway on ${base}, relaying to ${upstreamUrl ?? 'the built-in mock upstream'}`,
        `demo key: ${demoKey}`,
        '',
        'stream a completion:',
        `  curl -N ${base}/v1/chat/completions -H 'Authorization: Bearer ${demoKey}' -H 'Content-Type: application/json' \\`,
        `    -d '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say hello"}]}'`,
        '',
      ].join('\n'),
    );
  });

  const stop = (signal: string) => {
    process.stdout.write(`\n${signal}: draining…\n`);
    shutdown(server, closables, { timeoutMs: 10_000 }).then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`${String((err as Error)?.stack ?? err)}\n`);
  process.exit(1);
});
