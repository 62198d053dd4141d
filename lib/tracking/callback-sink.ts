// A usage sink that hands each batch to a function of the host: its database writer, a queue
// producer, an HTTP exporter. Batching, retries, bounds and close() come from UsageSink.
import type { RequestRecord } from './record.js';
import { UsageSink, type UsageSinkOptions } from './sink.js';

/**
 * Stores one batch of records; resolves once they are stored, rejects (or throws) when they were
 * not, and then gets the same records again on the retry. Never called twice at once. `signal`
 * aborts when `close()` stops waiting for it.
 */
export type UsageBatchWriter = (batch: RequestRecord[], signal: AbortSignal) => Promise<void> | void;

/**
 * A {@link UsageSink} whose target is `writeBatch`, typically an insert into the host's database.
 * Each batch holds up to `batchSize` records, oldest first; see {@link UsageSink} for batching,
 * retries with backoff, the buffer bound and `close()`.
 *
 * @example
 * const sink = new CallbackSink(async (batch) => {
 *   await db.insertInto('usage').values(batch.map(toRow)).execute();
 * }, { batchSize: 500, flushIntervalMs: 2_000 });
 * sink.write(record); // once per finished request: a RequestRecord
 * // on shutdown
 * await sink.close();
 */
export class CallbackSink extends UsageSink {
  private readonly writeBatch: UsageBatchWriter;

  /**
   * @param writeBatch - stores one batch; see {@link UsageBatchWriter}.
   * @param options - see {@link UsageSinkOptions}; every default applies.
   * @throws TypeError when `writeBatch` is not a function or an option is invalid.
   */
  constructor(writeBatch: UsageBatchWriter, options: UsageSinkOptions = {}) {
    super(options, 'CallbackSink');
    if (typeof writeBatch !== 'function') {
      throw new TypeError(`CallbackSink: writeBatch must be a function, got ${typeof writeBatch}`);
    }
    this.writeBatch = writeBatch;
  }

  protected override async flushBatch(batch: RequestRecord[], signal: AbortSignal): Promise<void> {
    await this.writeBatch(batch, signal);
  }
}
