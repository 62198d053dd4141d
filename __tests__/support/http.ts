// The plumbing HTTP tests share: a loopback server for an app, a chat-completions body, an SSE
// parser, a client that leaves mid-stream, a bounded wait that always asserts, a fake-clock bound
// for "fails within its timeout", and a watch over the handles and timers a test itself makes.
import { jest } from '@jest/globals';
import { createHook } from 'node:async_hooks';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
// Node's own timers and clock, which jest's fake timers leave alone (they replace the test's
// globals): waits and their deadlines pass in real time.
import { clearTimeout as clearRealTimeout, setTimeout as setRealTimeout } from 'node:timers';
import { setImmediate as nextTurn, setTimeout as delay } from 'node:timers/promises';

/** Above 0 while this module makes a timer of its own, which {@link watchResources} then ignores. */
let makingOwnTimer = 0;

/** Runs `make` (which creates a timer) so that no watch counts the timer as the test's. */
function ownTimer<T>(make: () => T): T {
  makingOwnTimer++;
  try {
    return make();
  } finally {
    makingOwnTimer--;
  }
}

// --- Servers and requests ---

/** A server listening on an ephemeral loopback port. */
export interface Listening {
  readonly server: http.Server;
  readonly port: number;
  /** `http://127.0.0.1:<port>`, without a trailing slash. */
  readonly url: string;
  /** Cuts every connection it still holds and stops listening. Idempotent. */
  close(): Promise<void>;
}

/**
 * Listens on `127.0.0.1:0` with `target`: a request handler (an Express app) or a server made
 * elsewhere (then its own options, such as llmux's `createServer`, stay as they are).
 *
 * @example
 * const { port, close } = await listen(app);
 */
export async function listen(target: http.RequestListener | http.Server): Promise<Listening> {
  const server = target instanceof http.Server ? target : http.createServer(target);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    server,
    port,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.closeAllConnections();
        // An error only says the server was not running: closed is what the caller wants.
        server.close(() => resolve());
      })),
  };
}

/** A loopback port that was just free (opened, then closed): nothing listens on it. */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A chat-completions request body: one short user message, `extra` fields merged over it. */
export const chat = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'hi' }],
  ...extra,
});

/** How {@link postAndLeave} sends its request and when it leaves. */
export interface LeaveOptions {
  /** Request path. Default `/v1/chat/completions`. */
  path?: string;
  /** Extra request headers; `content-type: application/json` is always sent. */
  headers?: http.OutgoingHttpHeaders;
  /** Called with everything received so far on each chunk; the client leaves once it is true. Default: at the first chunk. */
  leaveWhen?: (received: string) => boolean;
  /** Fails when the client has not left after this long. Default 5000. */
  timeoutMs?: number;
}

/**
 * POSTs `body` as JSON and destroys the request, as a client that gives up mid-response does, once
 * `leaveWhen` holds. Resolves with what was received by then; rejects when the response ends or
 * fails first, or when nothing made the client leave within `timeoutMs`.
 *
 * @example
 * await postAndLeave(port, chat({ stream: true })); // leaves at the first chunk
 */
export function postAndLeave(port: number, body: unknown, options: LeaveOptions = {}): Promise<string> {
  const { path = '/v1/chat/completions', headers = {}, leaveWhen = () => true, timeoutMs = 5_000 } = options;
  return new Promise<string>((resolve, reject) => {
    let received = '';
    let left = false;
    const timer = ownTimer(() =>
      setRealTimeout(() => {
        req.destroy();
        reject(new Error(`postAndLeave: still in the response after ${timeoutMs} ms: ${received}`));
      }, timeoutMs),
    );
    const req = http.request(
      {
        port,
        host: '127.0.0.1',
        method: 'POST',
        path,
        agent: false,
        headers: { 'content-type': 'application/json', ...headers },
      },
      (res) => {
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          received += chunk;
          if (left || !leaveWhen(received)) return;
          left = true;
          clearRealTimeout(timer);
          req.destroy();
          resolve(received);
        });
        res.on('end', () => {
          if (left) return;
          clearRealTimeout(timer);
          reject(new Error(`postAndLeave: the response ended before the client left: ${received}`));
        });
      },
    );
    req.on('error', (error) => {
      if (left) return; // destroying our own request
      clearRealTimeout(timer);
      reject(error);
    });
    req.end(JSON.stringify(body));
  });
}

// --- Server-sent events ---

/** One dispatched server-sent event. */
export interface SseEvent {
  /** The `event:` field; `'message'` when there was none. */
  event: string;
  /** The `data:` lines joined with `\n`. */
  data: string;
}

/**
 * The events a WHATWG EventSource would dispatch from `text`: LF, CRLF and CR line endings,
 * comments skipped, multi-line data joined, and a block without data not dispatched.
 */
export function sseEvents(text: string): SseEvent[] {
  const events: SseEvent[] = [];
  let data: string[] = [];
  let event = '';
  for (const line of text.split(/\r\n|\r|\n/)) {
    if (line === '') {
      if (data.length > 0) events.push({ event: event || 'message', data: data.join('\n') });
      data = [];
      event = '';
      continue;
    }
    if (line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const name = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (name === 'data') data.push(value);
    else if (name === 'event') event = value;
  }
  return events;
}

// --- Waiting ---

/** What {@link waitFor} waits for, and how long. */
export interface WaitOptions {
  /** Names what is awaited, for the failure message ("the upstream socket to close"). */
  what: string;
  /** Fails after this long. Default 2000 (socket teardown across the loopback on a loaded machine). */
  timeoutMs?: number;
  /** The state to show when it fails (serialised as JSON). */
  detail?: () => unknown;
  /**
   * Pause between two checks, for a condition that costs something (a request). Default: every
   * turn of the event loop at first, then every 5 ms.
   */
  intervalMs?: number;
}

/**
 * Resolves once `condition` holds; throws `timed out after … waiting for <what>` when it never
 * does within `timeoutMs` — it never returns silently. For state that has no event of its own
 * (a socket closed, a Redis key written); where an event exists (`whenRecorded()`, `whenSettled()`,
 * `waitForSettled(n)`), await that instead. It polls on real time, so it also works under fake
 * timers.
 *
 * @example
 * await waitFor(() => mock.openConnections() === 0, { what: 'the upstream connections to close' });
 */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  { what, timeoutMs = 2_000, detail, intervalMs }: WaitOptions,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (let turn = 0; !(await condition()); turn++) {
    if (performance.now() > deadline) {
      const state = detail === undefined ? '' : `: ${JSON.stringify(detail())}`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${state}`);
    }
    if (intervalMs === undefined && turn < 50) await nextTurn();
    else await ownTimer(() => delay(intervalMs ?? 5));
  }
}

/** How a promise ended, and how much of jest's fake clock it needed. */
export type SettledOnFakeClock<T> = PromiseSettledResult<T> & { fakeMs: number };

/**
 * Advances jest's fake clock in 5 ms steps, letting real I/O run between the steps, until the
 * promise `call()` returns has settled; throws when it needs more than `budgetMs` of fake time (or
 * more than 2 s of real time once the budget is spent). For "fails within its timeout" checks: the
 * code's own timers decide, so a loaded machine cannot make a quick answer look slow, and a wait
 * on a longer timer (a connect timeout, a reconnection) cannot pass as quick. Turn fake timers on
 * (`setImmediate` and `nextTick` left real) before the code under test is built.
 *
 * @example
 * jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
 * const store = new RedisKeyStore({ url, commandTimeoutMs: 200 });
 * const outcome = await settleOnFakeClock(() => store.ping(), 400);
 * expect(outcome).toMatchObject({ status: 'rejected' });
 */
export async function settleOnFakeClock<T>(
  call: () => Promise<T>,
  budgetMs: number,
): Promise<SettledOnFakeClock<T>> {
  let outcome: PromiseSettledResult<T> | undefined;
  call().then(
    (value) => (outcome = { status: 'fulfilled', value }),
    (reason: unknown) => (outcome = { status: 'rejected', reason }),
  );
  let fakeMs = 0;
  for (; outcome === undefined && fakeMs < budgetMs; fakeMs += 5) {
    for (let turn = 0; turn < 3; turn++) await nextTurn();
    await jest.advanceTimersByTimeAsync(5);
  }
  await waitFor(() => outcome !== undefined, {
    what: `the call to settle within ${budgetMs} ms of the fake clock`,
  });
  return { ...outcome!, fakeMs };
}

// --- Handles and timers a test creates ---

/** async_hooks resource types: `'Timeout'`, `'TCPWRAP'` (a socket), `'TCPSERVERWRAP'` (a listening server). */
export type ResourceType = 'Timeout' | 'TCPWRAP' | 'TCPSERVERWRAP';

/** The resources of the watched types created since {@link watchResources}, until destroyed. */
export interface ResourceWatch {
  /**
   * How many are alive: every one, or only those that keep the process alive (`refed: true`), or
   * only those with a frame under the directory `from` in their creating stack (the library's own).
   */
  live(type: ResourceType, options?: { refed?: boolean; from?: string }): number;
  /** The live ones, each with the frames that created it, for a failure message. */
  describe(): string[];
  /** Stops watching (the counts are frozen). */
  stop(): void;
}

interface Watched {
  type: ResourceType;
  resource: { hasRef?: () => boolean };
  origin: Error;
}

/** The first frame of `stack` outside Node and the hook below: the code that made the resource. */
function creatorFrame(stack: string): string | undefined {
  return stack
    .split('\n')
    .slice(1)
    .find((line) => !line.includes('(node:') && !line.includes(' node:') && !line.includes('AsyncHook.init'));
}

/** Jest's own code (its reporters debounce with timers) is never what a test is about. */
const JEST_CODE = /[\\/]node_modules[\\/](?:@jest[\\/]|jest-)/;

/**
 * Records every resource of `types` created from now on, and forgets it when Node destroys it, so
 * a test counts only the handles and timers made while it runs — not those the worker, earlier
 * files or earlier tests had open, nor jest's (its reporter arms timers whenever it likes) or this
 * module's own (the polls of {@link waitFor}) — and can wait, bounded, for every one of them to be
 * gone. Node reports a destruction a turn or more late: read counts with {@link waitFor}.
 *
 * @example
 * const watch = watchResources(['Timeout', 'TCPWRAP']);
 * // … start and close what the test is about …
 * await waitFor(() => watch.live('TCPWRAP') === 0, { what: 'every socket to close', detail: watch.describe });
 * watch.stop();
 */
export function watchResources(types: readonly ResourceType[]): ResourceWatch {
  const wanted = new Set<string>(types);
  const alive = new Map<number, Watched>();
  const hook = createHook({
    init(asyncId, type, _trigger, resource) {
      if (!wanted.has(type) || makingOwnTimer > 0) return;
      const origin = new Error(type);
      const creator = creatorFrame(origin.stack ?? '');
      if (creator !== undefined && JEST_CODE.test(creator)) return;
      alive.set(asyncId, { type: type as ResourceType, resource: resource as Watched['resource'], origin });
    },
    destroy(asyncId) {
      alive.delete(asyncId);
    },
  }).enable();
  return {
    live(type, { refed = false, from } = {}) {
      let count = 0;
      for (const entry of alive.values()) {
        if (entry.type !== type) continue;
        if (refed && entry.resource.hasRef?.() === false) continue;
        if (from !== undefined && !(entry.origin.stack ?? '').includes(from)) continue;
        count++;
      }
      return count;
    },
    describe() {
      return [...alive.values()].map(({ type, resource, origin }) => {
        const ref = resource.hasRef?.() === false ? 'unref' : 'ref';
        const frames = (origin.stack ?? '')
          .split('\n')
          .slice(1)
          .filter((line) => !line.includes('AsyncHook.init') && !line.includes('async_hooks'));
        return `${type} (${ref}) from ${frames.slice(0, 10).join(' <')}`;
      });
    },
    stop() {
      hook.disable();
    },
  };
}
