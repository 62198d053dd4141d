// An incremental Server-Sent Events splitter: finds complete events in a byte stream split at any
// point, so the relay forwards whole events only and can read the data of each one.

/** Receives each complete event found by {@link SseSplitter.push}. */
export interface SseVisitor {
  /**
   * One complete event (or comment block): `frame.subarray(start, end)` are its raw bytes,
   * terminator included; `data` its joined `data:` lines (undefined when it had none), `event`
   * its `event:` name.
   */
  onEvent(
    frame: Buffer,
    start: number,
    end: number,
    data: string | undefined,
    event: string | undefined,
  ): void;
}

const LF = 10;
const CR = 13;
const COLON = 58;
const SPACE = 32;

/**
 * Splits an SSE byte stream into events, per the WHATWG rules for line endings (LF, CRLF, CR)
 * and fields. Holds at most one incomplete event (bounded by `maxEventBytes`), never the stream.
 */
export class SseSplitter {
  private pending: Buffer | undefined = undefined;
  /**
   * Chunks after `pending` that hold no line break, so complete nothing: kept apart and joined
   * once a line break comes, so an event read in many chunks is copied once, not once a chunk.
   */
  private readonly held: Buffer[] = [];
  private heldBytes = 0;
  private scanFrom = 0;
  private lineStart = 0;
  private skipLf = false;
  private data: string | undefined = undefined;
  private event: string | undefined = undefined;
  private readonly maxEventBytes: number;

  /** @param maxEventBytes largest single event accepted; a longer one makes `push` return false. */
  constructor(maxEventBytes = 1_048_576) {
    this.maxEventBytes = maxEventBytes;
  }

  /** Bytes of an incomplete event held back, waiting for its end. */
  get pendingBytes(): number {
    return this.pending === undefined ? 0 : this.pending.length + this.heldBytes;
  }

  /** True when the held-back bytes hold anything other than line breaks. */
  hasIncompleteEvent(): boolean {
    const pending = this.pending;
    if (pending === undefined) return false;
    // Held chunks are not empty and hold no line break: something other than line breaks.
    if (this.heldBytes > 0) return true;
    for (let i = 0; i < pending.length; i++) {
      const c = pending[i]!;
      if (c !== LF && c !== CR) return true;
    }
    return false;
  }

  /**
   * Feeds bytes; calls `visitor.onEvent` for every event completed by them, in order. Returns
   * false when an event grew past `maxEventBytes` (the stream should be failed).
   */
  push(chunk: Buffer, visitor: SseVisitor): boolean {
    let buf: Buffer;
    const pending = this.pending;
    if (pending === undefined) {
      buf = chunk;
    } else if (chunk.indexOf(LF) === -1 && chunk.indexOf(CR) === -1) {
      // Nothing completes without a line break: hold the chunk (the scan resumes at `scanFrom`,
      // its first byte, once they are joined).
      this.held.push(chunk);
      this.heldBytes += chunk.length;
      return pending.length + this.heldBytes <= this.maxEventBytes;
    } else {
      buf = Buffer.concat(this.held.length === 0 ? [pending, chunk] : [pending, ...this.held, chunk]);
      this.held.length = 0;
      this.heldBytes = 0;
    }
    let eventStart = 0;
    let lineStart = this.lineStart;
    let i = this.scanFrom;
    const length = buf.length;
    // The next LF and CR at or after `i` (`length` when none): found by native search, not by
    // looking at every byte, and searched again only once passed.
    let nextLf = -1;
    let nextCr = -1;
    for (; i < length; i++) {
      if (this.skipLf) {
        this.skipLf = false;
        if (buf[i] === LF) {
          lineStart = i + 1;
          if (eventStart === i) eventStart = i + 1;
          continue;
        }
      }
      if (nextLf < i) nextLf = indexOrEnd(buf, LF, i);
      if (nextCr < i) nextCr = indexOrEnd(buf, CR, i);
      i = nextLf < nextCr ? nextLf : nextCr;
      if (i === length) break;
      const c = buf[i]!;
      if (c === CR) this.skipLf = true;
      if (i === lineStart) {
        // A blank line: the event is complete.
        const end = c === CR && i + 1 < length && buf[i + 1] === LF ? i + 2 : i + 1;
        if (end === i + 2) this.skipLf = false;
        if (i > eventStart) {
          visitor.onEvent(buf, eventStart, end, this.data, this.event);
        }
        this.data = undefined;
        this.event = undefined;
        eventStart = end;
        lineStart = end;
        i = end - 1;
        continue;
      }
      this.readField(buf, lineStart, i);
      lineStart = i + 1;
    }
    if (eventStart >= length) {
      this.pending = undefined;
      this.scanFrom = 0;
      this.lineStart = 0;
      return true;
    }
    this.pending = eventStart === 0 ? buf : buf.subarray(eventStart);
    this.scanFrom = length - eventStart;
    this.lineStart = lineStart - eventStart;
    return this.pending.length <= this.maxEventBytes;
  }

  private readField(buf: Buffer, start: number, end: number): void {
    if (buf[start] === COLON) return; // a comment line
    let colon = -1;
    for (let j = start; j < end; j++) {
      if (buf[j] === COLON) {
        colon = j;
        break;
      }
    }
    const nameEnd = colon === -1 ? end : colon;
    let valueStart = colon === -1 ? end : colon + 1;
    if (valueStart < end && buf[valueStart] === SPACE) valueStart++;
    const nameLength = nameEnd - start;
    if (
      nameLength === 4 &&
      buf[start] === 100 &&
      buf[start + 1] === 97 &&
      buf[start + 2] === 116 &&
      buf[start + 3] === 97
    ) {
      // "data"
      const value = buf.toString('utf8', valueStart, end);
      this.data = this.data === undefined ? value : `${this.data}\n${value}`;
    } else if (nameLength === 5 && buf.toString('latin1', start, nameEnd) === 'event') {
      this.event = buf.toString('utf8', valueStart, end);
    }
  }
}

/** Where `byte` next occurs in `buf` from `from`, or `buf.length`. */
function indexOrEnd(buf: Buffer, byte: number, from: number): number {
  const at = buf.indexOf(byte, from);
  return at === -1 ? buf.length : at;
}
