// The embedded usage sink: each record becomes one JSON line appended to a file, a batch per
// append. Batching, retries, bounds and close() come from UsageSink.
import { appendFile, mkdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { RequestRecord } from './record.js';
import { UsageSink, type UsageSinkOptions } from './sink.js';

/** Options of {@link JsonlFileSink}. */
export interface JsonlFileSinkOptions extends UsageSinkOptions {
  /**
   * The file records are appended to, one JSON object per line; created on the first write with
   * its directory. Relative paths resolve against the working directory at construction. Required.
   */
  path: string;
}

/**
 * A {@link UsageSink} that appends records to a JSON Lines file: one `RequestRecord` object per
 * line, in the order they were written, a batch per `appendFile`. Missing directories are
 * created. A failed append (full disk, missing permission) is retried with backoff like any
 * flush. The file is never rotated or truncated by the sink: rotate it with the host's tools
 * (a rename is safe; the next append creates a new file).
 *
 * @example
 * const sink = new JsonlFileSink({ path: './data/usage.jsonl' });
 * sink.write(record); // once per finished request: a RequestRecord
 * // later: jq -s 'map(.costUsd) | add' data/usage.jsonl
 * await sink.close();
 */
export class JsonlFileSink extends UsageSink {
  /** The absolute path of the file. */
  readonly path: string;
  private directoryReady = false;

  /** @throws TypeError when `path` is missing or empty, or another option is invalid. */
  constructor(options: JsonlFileSinkOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new TypeError(`JsonlFileSink: options must be an object, got ${String(options)}`);
    }
    if (typeof options.path !== 'string' || options.path.length === 0) {
      const got = typeof options.path === 'string' ? '""' : String(options.path);
      throw new TypeError(`JsonlFileSink: path must be a non-empty string, got ${got}`);
    }
    super(options, 'JsonlFileSink');
    this.path = resolve(options.path);
  }

  protected override async flushBatch(batch: RequestRecord[]): Promise<void> {
    let text = '';
    for (const record of batch) text += `${JSON.stringify(record)}\n`;
    if (!this.directoryReady) {
      await mkdir(dirname(this.path), { recursive: true });
      this.directoryReady = true;
    }
    // One append per batch: a failed one wrote nothing or, rarely, a prefix; a retry may then
    // repeat lines, which readers dedupe by `id`.
    try {
      await appendFile(this.path, text, 'utf8');
    } catch (error) {
      // The directory may have been removed since: make it again on the retry.
      if ((error as { code?: unknown }).code === 'ENOENT') this.directoryReady = false;
      throw error;
    }
  }
}
