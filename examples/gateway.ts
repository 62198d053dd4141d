// The example gateway: `npm start` runs it. Environment: HOST, PORT, LLMUX_UPSTREAM_URL,
// LLMUX_UPSTREAM_KEYS, LLMUX_DEMO_KEY, LLMUX_ADMIN_KEY, REDIS_URL, LLMUX_USAGE_LOG (see README).
import type { AddressInfo } from 'node:net';
import { shutdown } from '../lib/index.js';
import { buildGateway, configFromEnv, GatewayStartError, type GatewayConfig } from './gateway-app.js';

/** Loopback unless told otherwise: the demo key is public and `/llmux/*` is open without an admin key. */
const DEFAULT_HOST = '127.0.0.1';

async function main(): Promise<void> {
  const host = process.env.HOST || DEFAULT_HOST;
  const port = Number(process.env.PORT || 8080);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new GatewayStartError(`PORT must be a port number (0 to 65535), got ${process.env.PORT}`);
  }
  const config = { ...configFromEnv(process.env), mockChunkDelayMs: 80 };
  const { server, closables, beforeDrain, upstreamLabel } = await buildGateway(config);

  server.once('error', (err: NodeJS.ErrnoException) => {
    const where = `${host}:${port}`;
    exitWith(
      err.code === 'EADDRINUSE'
        ? `port ${port} is already in use on ${host}: stop what holds it, or choose another port (PORT=8081 npm start)`
        : `cannot listen on ${where} (${err.code ?? err.message}): check HOST and PORT`,
    );
  });
  server.listen(port, host, () => {
    process.stdout.write(banner(config, server.address() as AddressInfo, upstreamLabel));
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

/** What a user can paste: every `curl` line runs as printed (once `LLMUX_ADMIN_KEY` is exported). */
function banner(config: GatewayConfig, address: AddressInfo, upstreamLabel: string): string {
  const base = `http://${reachableHost(address)}:${address.port}`;
  const everywhere = isWildcard(address.address);
  const admin = config.adminKey ? ` -H "Authorization: Bearer $LLMUX_ADMIN_KEY"` : '';
  const lines = [
    `llmux example gateway listening on ${everywhere ? `every interface, port ${address.port}` : base}, relaying to ${upstreamLabel}`,
    everywhere
      ? 'Anyone who reaches this port can use it: set your own LLMUX_DEMO_KEY and an LLMUX_ADMIN_KEY.'
      : `Only this machine can reach it. To expose it, set your own LLMUX_DEMO_KEY and an LLMUX_ADMIN_KEY, then HOST=0.0.0.0 (every interface).`,
    `demo key: ${config.demoKey}`,
    '',
    'stream a completion:',
    `  curl -N ${base}/v1/chat/completions -H 'Authorization: Bearer ${config.demoKey}' -H 'Content-Type: application/json' \\`,
    `    -d '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say hello"}]}'`,
    '',
    'metrics and health:',
    `  curl ${base}/metrics`,
    `  curl ${base}/health/ready`,
    '',
    config.adminKey
      ? 'request stats and the live feed (admin key required; first `export LLMUX_ADMIN_KEY=<the key this gateway runs with>` in your shell):'
      : 'request stats and the live feed (open to anyone who reaches the port; set LLMUX_ADMIN_KEY, 16+ characters, to guard them):',
    `  curl ${base}/llmux/stats${admin}`,
    `  curl -N ${base}/llmux/live${admin}`,
    '',
  ];
  if (config.adminKey) {
    lines.push(
      'create a key (management API; the key is shown once):',
      `  curl ${base}/admin/keys${admin} -H 'Content-Type: application/json' -d '{"name":"alice","budgetUsd":5}'`,
      '',
    );
  } else {
    lines.push('set LLMUX_ADMIN_KEY (16+ characters) to mount the management API under /admin', '');
  }
  lines.push('Ctrl-C drains the requests in flight, then stops.', '');
  return lines.join('\n');
}

/** An address `curl` can connect to: loopback for a wildcard bind, brackets around IPv6. */
function reachableHost({ address, family }: AddressInfo): string {
  if (isWildcard(address)) return family === 'IPv6' ? '[::1]' : '127.0.0.1';
  return family === 'IPv6' ? `[${address}]` : address;
}

function isWildcard(address: string): boolean {
  return address === '0.0.0.0' || address === '::';
}

/** One line on stderr, no stack, exit code 1: for failures the user fixes in their environment. */
function exitWith(message: string): void {
  process.stderr.write(`llmux example gateway: ${message}\n`, () => process.exit(1));
}

main().catch((err: unknown) => {
  if (err instanceof GatewayStartError) exitWith(err.message);
  else {
    process.stderr.write(`${String((err as Error)?.stack ?? err)}\n`);
    process.exit(1);
  }
});
