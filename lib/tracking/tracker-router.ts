// The tracker's HTTP face: `GET /stats` and `GET /recent` as JSON, `GET /live` as server-sent
// events. Mount it behind your own admin auth: it shows key, team and user ids (never secrets).
import { OptionReader } from '../options.js';
import type { ServerResponse } from 'node:http';
import express from 'express';
import type { Request, Response } from 'express';
import { errors, sendError } from '../errors/llmux-error.js';
import { LiveFeed, type LiveFeedSettings } from './live-feed.js';
import { RequestTracker } from './tracker.js';
import { isStatsWindow, STATS_WINDOWS, type StatsWindow } from './windows.js';

/** Options of {@link trackerRouter}. */
export interface TrackerRouterOptions {
  /** Live clients connected at once; the next one gets 503 `too_many_live_clients`. Default `100`. */
  maxLiveClients?: number;
  /** Interval of the `: heartbeat` comment that keeps proxies from closing idle streams. Default `15_000`. */
  heartbeatMs?: number;
  /** Interval of `event: snapshot` frames. Default `5_000`. */
  snapshotMs?: number;
  /**
   * Unsent bytes a live client may have queued before it is dropped (and counted in
   * `droppedSlowClients`). Default `1_048_576` (1 MiB).
   */
  maxBufferedBytes?: number;
  /** The window of the stats in `event: snapshot` frames. Default `'15m'`. */
  snapshotWindow?: StatsWindow;
  /** The most records `GET /recent` returns; a larger `n` is cut to it. Default `1000`. */
  maxRecent?: number;
}

/** The router of {@link trackerRouter}, with its live feed's state and `close()`. */
export interface TrackerRouter extends express.Router {
  /** Ends every live client and stops the feed's timer; later `/live` requests get 503. Idempotent. */
  close(): void;
  /** Live clients connected now. */
  readonly liveClients: number;
  /** Live clients dropped because they did not read fast enough. */
  readonly droppedSlowClients: number;
}

const DEFAULT_RECENT = 50;
const MAX_MODEL_QUERY_LENGTH = 256;
const POSITIVE_DECIMAL = /^[0-9]{1,9}$/;

/**
 * An Express Router over a {@link RequestTracker}:
 *
 * - `GET /stats?model=&window=` → the tracker's `TrackerStats` (`model` defaults to `'*'`, every model;
 *   `window` to `'1h'`, one of {@link STATS_WINDOWS}); anything else is a 400 `invalid_request`
 *   naming the `param`.
 * - `GET /recent?n=` → `{"object":"list","data":[…]}`, the `n` (default 50, at most `maxRecent`)
 *   most recent records, newest first; `n` must be a positive integer.
 * - `GET /live` → `text/event-stream`: a first `event: snapshot`, then `event: request` for each
 *   finished request, `event: snapshot` each `snapshotMs`, `: heartbeat` each `heartbeatMs`. A
 *   client that falls `maxBufferedBytes` behind is dropped; past `maxLiveClients`, 503.
 *
 * Its own requests are left out of the tracker's records. Call `close()` on shutdown.
 *
 * @example
 * const tracker = new RequestTracker({ capacity: 5000 });
 * app.use('/v1', tracker.middleware());
 * const dashboard = trackerRouter(tracker, { maxLiveClients: 20 });
 * app.use('/llmux', requireAdmin, dashboard);
 * // curl 'localhost:3000/llmux/stats?model=gpt-4o&window=24h'
 * // curl -N localhost:3000/llmux/live
 * onShutdown(() => dashboard.close());
 */
export function trackerRouter(tracker: RequestTracker, options: TrackerRouterOptions = {}): TrackerRouter {
  if (!(tracker instanceof RequestTracker)) {
    throw new TypeError(`trackerRouter: tracker must be a RequestTracker, got ${String(tracker)}`);
  }
  const settings = resolveOptions(options);
  const feed = new LiveFeed(tracker, settings);
  const router = express.Router() as TrackerRouter;

  router.use(function llmuxTrackerExclude(_req: Request, res: Response, next: () => void): void {
    tracker.exclude(res);
    res.setHeader('Cache-Control', 'no-store');
    next();
  });
  router.get('/stats', function llmuxTrackerStats(req: Request, res: Response): void {
    const model = req.query.model ?? '*';
    const window = req.query.window ?? '1h';
    if (typeof model !== 'string' || model.length === 0 || model.length > MAX_MODEL_QUERY_LENGTH) {
      sendError(
        res,
        errors.invalidRequest(
          `model must be a model name of 1 to ${MAX_MODEL_QUERY_LENGTH} characters`,
          'model',
        ),
      );
      return;
    }
    if (!isStatsWindow(window)) {
      sendError(res, errors.invalidRequest(`window must be one of ${STATS_WINDOWS.join(', ')}`, 'window'));
      return;
    }
    sendJson(res, tracker.stats({ model, window }));
  });
  router.get('/recent', function llmuxTrackerRecent(req: Request, res: Response): void {
    const raw = req.query.n;
    let n = DEFAULT_RECENT;
    if (raw !== undefined) {
      n = typeof raw === 'string' && POSITIVE_DECIMAL.test(raw) ? Number(raw) : 0;
      if (n < 1) {
        sendError(res, errors.invalidRequest('n must be a positive integer', 'n'));
        return;
      }
    }
    sendJson(res, { object: 'list', data: tracker.recent(Math.min(n, settings.maxRecent)) });
  });
  router.get('/live', function llmuxTrackerLive(_req: Request, res: Response): void {
    feed.join(res);
  });

  Object.defineProperties(router, {
    close: { value: () => feed.close() },
    liveClients: { get: () => feed.clientCount },
    droppedSlowClients: { get: () => feed.droppedSlowClients },
  });
  return router;
}

function sendJson(res: ServerResponse, body: unknown): void {
  const text = JSON.stringify(body);
  res.statusCode = 200;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.end(text);
}

function resolveOptions(options: TrackerRouterOptions): LiveFeedSettings & { maxRecent: number } {
  const read = new OptionReader('trackerRouter');
  read.options(options);
  return {
    maxLiveClients: read.positiveInteger('maxLiveClients', options.maxLiveClients, 100),
    heartbeatMs: read.durationMs('heartbeatMs', options.heartbeatMs, 15_000),
    snapshotMs: read.durationMs('snapshotMs', options.snapshotMs, 5_000),
    maxBufferedBytes: read.positiveInteger('maxBufferedBytes', options.maxBufferedBytes, 1_048_576),
    snapshotWindow: read.oneOf('snapshotWindow', options.snapshotWindow, STATS_WINDOWS, '15m'),
    maxRecent: read.positiveInteger('maxRecent', options.maxRecent, 1000),
  };
}
