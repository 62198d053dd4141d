// A bound on a client that stops reading: while the relay waits for it to drain what was written
// (a paused stream, an answer not yet flushed), one unref'd timer runs; past the bound the
// client is cut, so it can hold no gate permit, pool slot or upstream socket for ever.
import type { ServerResponse } from 'node:http';

/**
 * Calls `onStall` once if `res` is still waiting to drain after `timeoutMs`; the returned function
 * cancels the watch (idempotent). The watch also ends by itself when the response drains or closes.
 */
export function watchDrain(res: ServerResponse, timeoutMs: number, onStall: () => void): () => void {
  return watch(res, 'drain', timeoutMs, onStall);
}

/**
 * Calls `onStall` once if the ended `res` has not finished writing after `timeoutMs` (the client
 * is not reading the tail of the answer); the watch ends when it finishes or closes.
 */
export function watchFinish(res: ServerResponse, timeoutMs: number, onStall: () => void): () => void {
  if (res.writableFinished || res.destroyed) return noop;
  return watch(res, 'finish', timeoutMs, onStall);
}

function watch(
  res: ServerResponse,
  until: 'drain' | 'finish',
  timeoutMs: number,
  onStall: () => void,
): () => void {
  let done = false;
  const cancel = (): void => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    res.off(until, cancel);
    res.off('close', cancel);
  };
  const timer = setTimeout(() => {
    cancel();
    onStall();
  }, timeoutMs);
  timer.unref();
  res.once(until, cancel);
  res.once('close', cancel);
  return cancel;
}

function noop(): void {}
