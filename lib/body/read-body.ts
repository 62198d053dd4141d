// Reads a request body into memory with a hard byte bound that holds for chunked bodies, lying
// Content-Length headers and compressed bodies (the bound applies after decompression).
import type { IncomingMessage } from 'node:http';
import type { Readable, Transform } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { errors, LlmuxError, llmuxError } from '../errors/llmux-error.js';

/** How {@link readBody} ended when it did not produce the bytes. */
export type ReadBodyFailure = LlmuxError | 'aborted';

/** Resolved settings of a body read. */
export interface ReadBodySettings {
  maxBytes: number;
  decompress: boolean;
}

/**
 * Reads `req` fully, never holding more than `maxBytes` (+ one chunk): past the bound it stops
 * reading and rejects with a 413 {@link LlmuxError}. Rejects with `'aborted'` when the client
 * left. Listeners it adds are removed on every exit path.
 */
export function readBody(req: IncomingMessage, settings: ReadBodySettings): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const declared = req.headers['content-length'];
    if (declared !== undefined) {
      const declaredBytes = Number(declared);
      if (Number.isFinite(declaredBytes) && declaredBytes > settings.maxBytes && isIdentity(req)) {
        reject(errors.bodyTooLarge(settings.maxBytes));
        return;
      }
    }
    if (req.readableEnded) {
      // Someone drained the stream before us: waiting for 'end' would hang the request.
      reject(
        llmuxError('internal_error', {
          message: 'the request body was already read by an earlier middleware',
        }),
      );
      return;
    }
    let source: Readable = req;
    let decoder: Transform | undefined;
    const encoding = contentEncoding(req);
    if (encoding !== 'identity') {
      if (!settings.decompress) {
        reject(errors.unsupportedEncoding(encoding));
        return;
      }
      decoder = decoderFor(encoding);
      if (decoder === undefined) {
        reject(errors.unsupportedEncoding(encoding));
        return;
      }
      source = decoder;
      req.pipe(decoder);
    }

    const chunks: Buffer[] = [];
    let received = 0;
    let settled = false;

    const cleanup = () => {
      settled = true;
      source.off('data', onData);
      source.off('end', onEnd);
      source.off('error', onError);
      req.off('aborted', onAborted);
      req.off('close', onClose);
      if (decoder !== undefined) {
        req.unpipe(decoder);
        decoder.destroy();
      }
    };
    const onData = (chunk: Buffer) => {
      received += chunk.length;
      if (received > settings.maxBytes) {
        cleanup();
        chunks.length = 0;
        // Stop pulling bytes: the 413 goes out with `Connection: close`, so the rest is never read.
        req.pause();
        reject(errors.bodyTooLarge(settings.maxBytes));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, received));
    };
    const onError = (err: Error) => {
      cleanup();
      // The decoder fails on bad compressed bytes; the request itself fails only when the client left.
      if (decoder !== undefined && (req.complete || !req.destroyed)) {
        reject(
          llmuxError('invalid_encoding', {
            message: `request body could not be decompressed (${encoding})`,
            cause: err,
          }),
        );
      } else {
        reject('aborted');
      }
    };
    const onAborted = () => {
      if (settled) return;
      cleanup();
      reject('aborted');
    };
    const onClose = () => {
      // 'close' before 'end' means the client went away mid-body.
      if (!settled && !req.complete) onAborted();
    };
    source.on('data', onData);
    source.on('end', onEnd);
    source.on('error', onError);
    req.on('aborted', onAborted);
    req.on('close', onClose);
  });
}

function contentEncoding(req: IncomingMessage): string {
  const value = req.headers['content-encoding'];
  if (value === undefined || value === '') return 'identity';
  return value.trim().toLowerCase();
}

function isIdentity(req: IncomingMessage): boolean {
  return contentEncoding(req) === 'identity';
}

function decoderFor(encoding: string): Transform | undefined {
  switch (encoding) {
    case 'gzip':
    case 'x-gzip':
      return createGunzip();
    case 'deflate':
      return createInflate();
    case 'br':
      return createBrotliDecompress();
    default:
      return undefined;
  }
}
