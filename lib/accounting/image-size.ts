// The pixel size of an image sent inline (base64 or a data URL), read from its header bytes
// (PNG, JPEG, GIF, WebP), so an image is estimated by its provider's token formula, not its bytes.

/** An image's width and height in pixels. */
export interface ImageSize {
  width: number;
  height: number;
}

/** Most of a JPEG read to find its size marker: a header never needs more. */
const MAX_HEADER_BYTES = 65_536;

/** The bytes of the start of a base64 payload (a data URL's too), at most `maxBytes`. */
export function base64Head(text: string, maxBytes = MAX_HEADER_BYTES): Buffer {
  const comma = text.startsWith('data:') ? text.indexOf(',') : -1;
  const start = comma === -1 ? 0 : comma + 1;
  // 4 base64 characters make 3 bytes: decode only what the header needs.
  const chars = Math.min(text.length - start, Math.ceil(maxBytes / 3) * 4);
  return Buffer.from(text.slice(start, start + chars), 'base64');
}

/** The decoded size in bytes of a base64 payload (a data URL's too), without decoding it. */
export function base64Bytes(text: string): number {
  const comma = text.startsWith('data:') ? text.indexOf(',') : -1;
  // The `=` padding at the end is not data.
  let end = text.length;
  while (end > comma + 1 && text.charCodeAt(end - 1) === 61 /* = */) end--;
  return Math.floor(((end - comma - 1) * 3) / 4);
}

/** The size of a PNG, JPEG, GIF or WebP from its first bytes, or undefined. */
export function imageSizeOf(head: Buffer): ImageSize | undefined {
  if (head.length >= 24 && head.readUInt32BE(0) === 0x89504e47) {
    return size(head.readUInt32BE(16), head.readUInt32BE(20));
  }
  if (head.length >= 10 && head.toString('latin1', 0, 3) === 'GIF') {
    return size(head.readUInt16LE(6), head.readUInt16LE(8));
  }
  if (
    head.length >= 30 &&
    head.toString('latin1', 0, 4) === 'RIFF' &&
    head.toString('latin1', 8, 12) === 'WEBP'
  ) {
    return webpSize(head);
  }
  if (head.length >= 4 && head[0] === 0xff && head[1] === 0xd8) return jpegSize(head);
  return undefined;
}

function size(width: number, height: number): ImageSize | undefined {
  return width > 0 && height > 0 ? { width, height } : undefined;
}

function webpSize(head: Buffer): ImageSize | undefined {
  const chunk = head.toString('latin1', 12, 16);
  if (chunk === 'VP8X') return size(1 + head.readUIntLE(24, 3), 1 + head.readUIntLE(27, 3));
  if (chunk === 'VP8 ') return size(head.readUInt16LE(26) & 0x3fff, head.readUInt16LE(28) & 0x3fff);
  if (chunk === 'VP8L' && head.length >= 25) {
    const bits = head.readUInt32LE(21);
    return size((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1);
  }
  return undefined;
}

/** Walks the JPEG markers to the first start-of-frame, which holds the size. */
function jpegSize(head: Buffer): ImageSize | undefined {
  let at = 2;
  while (at + 9 < head.length) {
    if (head[at] !== 0xff) return undefined;
    const marker = head[at + 1]!;
    const length = head.readUInt16BE(at + 2);
    const isFrame = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isFrame) return size(head.readUInt16BE(at + 7), head.readUInt16BE(at + 5));
    at += 2 + length;
  }
  return undefined;
}
