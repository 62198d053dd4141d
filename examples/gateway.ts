// The example gateway: `npm start` runs it. Environment: PORT, LLMUX_UPSTREAM_URL,
// LLMUX_UPSTREAM_KEYS, LLMUX_DEMO_KEY, LLMUX_ADMIN_KEY (see README).
import { shutdown } from '../lib/index.js';
import { buildGateway, configFromEnv } from './gateway-app.js';

async function main(): Promise<void> {
  const port = Number(process.env.PORT ?? 8080);
  const config = { ...configFromEnv(process.env), mockChunkDelayMs: 80 };
  const { server, closables, beforeDrain, upstreamLabel } = await buildGateway(config);

  server.listen(port, () => {
    const base = `http://localhost:${port}`;
    const lines = [
      `llmux example gateway on ${base}, relaying to ${upstreamLabel}`,
      `demo key: ${config.demoKey}`,
      '',
      'stream a completion:',
      `  curl -N ${base}/v1/chat/completions -H 'Authorization: Bearer ${config.demoKey}' -H 'Content-Type: application/json' \\`,
      `    -d '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say hello"}]}'`,
      '',
      `metrics: ${base}/metrics   health: ${base}/health/ready   stats: ${base}/llmux/stats   live: ${base}/llmux/live`,
      '',
    ];
    if (config.adminKey) {
      lines.push(
        'create a key (management API, shown once):',
        `  curl ${base}/admin/keys -H 'Authorization: Bearer <LLMUX_ADMIN_KEY>' -H 'Content-Type: application/json' -d '{"name":"alice","budgetUsd":5}'`,
        '',
      );
    } else {
      lines.push('set LLMUX_ADMIN_KEY (16+ characters) to mount the management API under /admin', '');
    }
    process.stdout.write(lines.join('\n'));
  });

  const stop = (signal: string) => {
    process.stdout.write(`\n${signal}: draining…\n`);
    Promise.all(beforeDrain.map((piece) => piece.close()))
      .then(() => shutdown(server, closables, { timeoutMs: 10_000 }))
      .then(
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
