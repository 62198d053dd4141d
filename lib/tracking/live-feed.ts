// The live feed behind `GET /live`: SSE clients, request events, rollup snapshots and heartbeats.
// Broadcast never waits on a client: one whose buffer passes the bound is dropped and counted.
import type { ServerResponse } from 'node:http';
import { LlmuxError, sendError, llmuxError } from '../errors/llmux-error.js';
import type { RequestRecord } from './record.js';
import type { RequestTracker } from './tracker.js';
import type { StatsWindow } from './windows.js';

/** Resolved settings of a {@link LiveFeed}; see `TrackerRouterOptions` for their meaning. */
export interface LiveFeedSettings {
  maxLiveClients: number;
  heartbeatMs: number;
  snapshotMs: number;
  maxBufferedBytes: number;
  snapshotWindow: StatsWindow;
}

const SSE_HEADERS = Object.freeze({
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-cache, no-transform',
  Connection: 'keep-alive',
  // nginx would otherwise hold events back in its buffer.
  'X-Accel-Buffering': 'no',
});

const HEARTBEAT_FRAME = ': heartbeat\n\n';

/**
 * Server-sent events for a set of clients, fed by one {@link RequestTracker}: `event: request`
 * for each finished request, `event: snapshot` with every model's stats each `snapshotMs`, and
 * `: heartbeat` comments each `heartbeatMs`. Each frame is serialized once and written to every
 * client without waiting: a client whose unsent bytes (`res.writableLength`) pass
 * `maxBufferedBytes` is destroyed and counted in {@link droppedSlowClients}. One shared, unref'd
 * timer serves every client; it and the tracker subscription exist only while a client is
 * connected.
 *
 * @example
 * const feed = new LiveFeed(tracker, settings);
 * router.get('/live', (req, res) => feed.join(res));
 * feed.close();
 */
export class LiveFeed {
  private readonly clients = new Set<ServerResponse>();
  private timer: NodeJS.Timeout | undefined = undefined;
  private unsubscribe: (() => void) | undefined = undefined;
  /** Time since the timer started, advanced by the timer's own delays (no clock read). */
  private elapsedMs = 0;
  private nextSnapshotAtMs = 0;
  private nextHeartbeatAtMs = 0;
  private closed = false;
  private dropped = 0;

  constructor(
    private readonly tracker: RequestTracker,
    private readonly settings: LiveFeedSettings,
  ) {}

  /** Clients connected now. */
  get clientCount(): number {
    return this.clients.size;
  }

  /** Clients dropped because their unsent bytes passed `maxBufferedBytes`. */
  get droppedSlowClients(): number {
    return this.dropped;
  }

  /**
   * Starts the event stream on `res`, with a first snapshot; 503 `too_many_live_clients` when
   * `maxLiveClients` are connected, 503 `live_feed_closed` after {@link close}.
   */
  join(res: ServerResponse): void {
    if ((res as { closed?: boolean }).closed === true || res.destroyed) return;
    if (this.closed) {
      sendError(res, refusal('the live feed is closed', 'live_feed_closed'));
      return;
    }
    if (this.clients.size >= this.settings.maxLiveClients) {
      sendError(
        res,
        refusal(`too many live clients (at most ${this.settings.maxLiveClients})`, 'too_many_live_clients'),
      );
      return;
    }
    res.writeHead(200, SSE_HEADERS);
    res.write(`: connected\n\n${this.snapshotFrame()}`);
    this.clients.add(res);
    res.once('close', () => this.leave(res));
    if (this.clients.size === 1) this.start();
  }

  /** Ends every client's stream and stops the timer. Later joins get 503. Idempotent. */
  close(): void {
    this.closed = true;
    for (const res of this.clients) res.end();
    this.clients.clear();
    this.stop();
  }

  private readonly onRecord = (record: Readonly<RequestRecord>): void => {
    this.broadcast(`event: request\ndata: ${JSON.stringify(record)}\n\n`);
  };

  private readonly onTick = (): void => {
    this.timer = undefined;
    this.elapsedMs = Math.min(this.nextSnapshotAtMs, this.nextHeartbeatAtMs);
    if (this.elapsedMs >= this.nextSnapshotAtMs) {
      this.nextSnapshotAtMs += this.settings.snapshotMs;
      this.broadcast(this.snapshotFrame());
    }
    if (this.elapsedMs >= this.nextHeartbeatAtMs) {
      this.nextHeartbeatAtMs += this.settings.heartbeatMs;
      this.broadcast(HEARTBEAT_FRAME);
    }
    if (this.clients.size > 0) this.schedule();
  };

  private broadcast(frame: string): void {
    const limit = this.settings.maxBufferedBytes;
    for (const res of this.clients) {
      if (res.destroyed) {
        this.leave(res);
        continue;
      }
      res.write(frame);
      if (res.writableLength > limit) this.drop(res);
    }
  }

  private snapshotFrame(): string {
    return `event: snapshot\ndata: ${JSON.stringify(this.tracker.snapshot(this.settings.snapshotWindow))}\n\n`;
  }

  private drop(res: ServerResponse): void {
    this.dropped++;
    this.leave(res);
    res.destroy();
  }

  private leave(res: ServerResponse): void {
    if (this.clients.delete(res) && this.clients.size === 0) this.stop();
  }

  private start(): void {
    this.unsubscribe = this.tracker.subscribe(this.onRecord);
    this.elapsedMs = 0;
    this.nextSnapshotAtMs = this.settings.snapshotMs;
    this.nextHeartbeatAtMs = this.settings.heartbeatMs;
    this.schedule();
  }

  private schedule(): void {
    const delayMs = Math.min(this.nextSnapshotAtMs, this.nextHeartbeatAtMs) - this.elapsedMs;
    this.timer = setTimeout(this.onTick, delayMs);
    this.timer.unref();
  }

  private stop(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.unsubscribe !== undefined) {
      this.unsubscribe();
      this.unsubscribe = undefined;
    }
  }
}

function refusal(message: string, code: 'live_feed_closed' | 'too_many_live_clients'): LlmuxError {
  return llmuxError(code, { message, retryAfterSeconds: 5 });
}
