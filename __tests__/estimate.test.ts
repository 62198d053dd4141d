// The prompt estimate: image sizes read from real PNG, GIF, JPEG and WebP headers, the providers'
// image formulas on their published examples, and whole request bodies of every protocol, where
// text counts as text and base64 never does.
import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { crc32, deflateSync } from 'node:zlib';
import {
  anthropicImageTokens,
  estimatePrompt,
  openAiImageTokens,
  textTokens,
  type ImageTokenFormula,
} from '../lib/index.js';
import { base64Bytes, base64Head, imageSizeOf } from '../lib/accounting/image-size.js';
import { countWords } from '../lib/testing/mock/request-fields.js';

// --- Images, byte by byte ---------------------------------------------------------------------

function pngChunk(type: string, data: Buffer): Buffer {
  const typed = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const out = Buffer.alloc(4 + typed.length + 4);
  out.writeUInt32BE(data.length, 0);
  typed.copy(out, 4);
  out.writeUInt32BE(crc32(typed), 4 + typed.length);
  return out;
}

/** A whole, valid 8-bit greyscale PNG; `noise` fills it with random pixels (so it does not compress). */
function png(width: number, height: number, noise = false): Buffer {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 0; // greyscale
  const rows = noise ? randomBytes((width + 1) * height) : Buffer.alloc((width + 1) * height);
  for (let y = 0; y < height; y++) rows[y * (width + 1)] = 0; // filter: none
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', header),
    pngChunk('IDAT', deflateSync(rows)),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A GIF89a: header, a two-colour table, one image descriptor of the whole size, its data, the trailer. */
function gif(width: number, height: number): Buffer {
  const screen = Buffer.alloc(7);
  screen.writeUInt16LE(width, 0);
  screen.writeUInt16LE(height, 2);
  screen[4] = 0x80; // a global colour table of 2 entries
  const descriptor = Buffer.alloc(10);
  descriptor[0] = 0x2c;
  descriptor.writeUInt16LE(width, 5);
  descriptor.writeUInt16LE(height, 7);
  return Buffer.concat([
    Buffer.from('GIF89a', 'latin1'),
    screen,
    Buffer.from([0xff, 0xff, 0xff, 0x00, 0x00, 0x00]),
    descriptor,
    Buffer.from([0x02, 0x02, 0x44, 0x01, 0x00, 0x3b]),
  ]);
}

function segment(marker: number, payload: Buffer): Buffer {
  const head = Buffer.from([0xff, marker, 0, 0]);
  head.writeUInt16BE(payload.length + 2, 2);
  return Buffer.concat([head, payload]);
}

interface JpegShape {
  /** The start-of-frame marker: 0xc0 baseline, 0xc1 extended, 0xc2 progressive. */
  frame?: number;
  /** A Huffman table (0xc4, inside the SOF range) before the frame. */
  huffmanFirst?: boolean;
  /** Bytes of an APP1 (Exif) segment before the frame. */
  exifBytes?: number;
}

/** A JPEG's markers as encoders write them: JFIF, a quantisation table, the frame, Huffman, scan. */
function jpeg(width: number, height: number, shape: JpegShape = {}): Buffer {
  const jfif = Buffer.from([
    0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00,
  ]);
  const quantisation = Buffer.concat([Buffer.from([0x00]), Buffer.alloc(64, 1)]);
  const huffman = segment(
    0xc4,
    Buffer.from([0x00, 0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
  );
  const frame = Buffer.from([0x08, 0, 0, 0, 0, 0x03, 0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01]);
  frame.writeUInt16BE(height, 1);
  frame.writeUInt16BE(width, 3);
  return Buffer.concat([
    Buffer.from([0xff, 0xd8]),
    segment(0xe0, jfif),
    ...(shape.exifBytes === undefined ? [] : [segment(0xe1, Buffer.alloc(shape.exifBytes, 0x45))]),
    segment(0xdb, quantisation),
    ...(shape.huffmanFirst === true ? [huffman] : []),
    segment(shape.frame ?? 0xc0, frame),
    ...(shape.huffmanFirst === true ? [] : [huffman]),
    segment(0xda, Buffer.from([0x03, 0x01, 0x00, 0x02, 0x11, 0x03, 0x11, 0x00, 0x3f, 0x00])),
    Buffer.from([0x12, 0x34, 0xff, 0xd9]),
  ]);
}

function riff(chunk: string, payload: Buffer): Buffer {
  const head = Buffer.alloc(20);
  head.write('RIFF', 0, 'latin1');
  head.writeUInt32LE(12 + payload.length, 4);
  head.write('WEBP', 8, 'latin1');
  head.write(chunk, 12, 'latin1');
  head.writeUInt32LE(payload.length, 16);
  return Buffer.concat([head, payload]);
}

/** A lossy WebP: frame tag, start code, 14-bit width and height (a scale in the top bits). */
function webpLossy(width: number, height: number): Buffer {
  const payload = Buffer.alloc(20);
  payload.set([0x30, 0x01, 0x00, 0x9d, 0x01, 0x2a], 0);
  payload.writeUInt16LE(width | 0x4000, 6); // a horizontal scale of 5/4 that is not the size
  payload.writeUInt16LE(height, 8);
  return riff('VP8 ', payload);
}

/** A lossless WebP: signature, then width−1 and height−1 in 14 bits each. */
function webpLossless(width: number, height: number): Buffer {
  const payload = Buffer.alloc(16);
  payload[0] = 0x2f;
  payload.writeUInt32LE(((width - 1) | ((height - 1) << 14) | (1 << 28)) >>> 0, 1);
  return riff('VP8L', payload);
}

/** An extended WebP: flags, then width−1 and height−1 in 24 bits each. */
function webpExtended(width: number, height: number): Buffer {
  const payload = Buffer.alloc(10);
  payload[0] = 0x10; // alpha
  payload.writeUIntLE(width - 1, 4, 3);
  payload.writeUIntLE(height - 1, 7, 3);
  return riff('VP8X', payload);
}

const dataUrl = (mime: string, bytes: Buffer): string => `data:${mime};base64,${bytes.toString('base64')}`;

/** A PDF with `pages` page objects under one `/Type /Pages` tree. */
function pdf(pages: number): Buffer {
  const objects = [
    `1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj`,
    `2 0 obj << /Type /Pages /Count ${pages} >> endobj`,
  ];
  for (let i = 0; i < pages; i++) objects.push(`${3 + i} 0 obj << /Type /Page /Parent 2 0 R >> endobj`);
  return Buffer.from(`%PDF-1.7\n${objects.join('\n')}\n%%EOF\n`, 'latin1');
}

describe('imageSizeOf', () => {
  it.each<[string, Buffer, { width: number; height: number }]>([
    ['a PNG', png(3, 2), { width: 3, height: 2 }],
    ['a large PNG', png(1024, 768), { width: 1024, height: 768 }],
    ['a GIF', gif(1, 1), { width: 1, height: 1 }],
    ['a wide GIF', gif(640, 48), { width: 640, height: 48 }],
    ['a baseline JPEG (SOF0)', jpeg(800, 600), { width: 800, height: 600 }],
    ['an extended JPEG (SOF1)', jpeg(801, 601, { frame: 0xc1 }), { width: 801, height: 601 }],
    ['a progressive JPEG (SOF2)', jpeg(1920, 1080, { frame: 0xc2 }), { width: 1920, height: 1080 }],
    [
      'a JPEG with its Huffman table first',
      jpeg(320, 240, { huffmanFirst: true }),
      { width: 320, height: 240 },
    ],
    ['a JPEG behind an Exif segment', jpeg(4032, 3024, { exifBytes: 30_000 }), { width: 4032, height: 3024 }],
    ['a lossy WebP (VP8)', webpLossy(550, 368), { width: 550, height: 368 }],
    ['a lossless WebP (VP8L)', webpLossless(386, 395), { width: 386, height: 395 }],
    ['a lossless WebP at its largest', webpLossless(16_384, 16_384), { width: 16_384, height: 16_384 }],
    ['an extended WebP (VP8X)', webpExtended(4000, 3000), { width: 4000, height: 3000 }],
  ])('reads the size of %s', (_what, bytes, size) => {
    expect(imageSizeOf(bytes)).toEqual(size);
  });

  it.each<[string, Buffer]>([
    ['nothing', Buffer.alloc(0)],
    ['text', Buffer.from('hello, this is not an image at all')],
    ['random bytes', Buffer.from('9c1e0f5b2d7a44e1b3c8a9d0e2f4a6b8c0d2e4f6a8b0c2d4', 'hex')],
    ['a PNG cut in its header', png(10, 10).subarray(0, 20)],
    ['a PNG of no width', png(0, 10)],
    ['a GIF cut after its name', Buffer.from('GIF89a\x01', 'latin1')],
    ['a GIF of no height', gif(10, 0)],
    [
      'a JPEG start followed by no marker',
      Buffer.from([0xff, 0xd8, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0, 0, 0, 0]),
    ],
    ['a JPEG cut before its frame', jpeg(800, 600).subarray(0, 40)],
    [
      'a RIFF that is not a WebP',
      Buffer.concat([Buffer.from('RIFF\0\0\0\0WAVEfmt ', 'latin1'), Buffer.alloc(20)]),
    ],
    ['a WebP of an unknown chunk', riff('ALPH', Buffer.alloc(16))],
  ])('knows no size for %s', (_what, bytes) => {
    expect(imageSizeOf(bytes)).toBeUndefined();
  });

  it('reads a size from the head of a base64 payload and of a data URL alike', () => {
    const bytes = png(300, 200);
    expect(imageSizeOf(base64Head(bytes.toString('base64')))).toEqual({ width: 300, height: 200 });
    expect(imageSizeOf(base64Head(dataUrl('image/png', bytes)))).toEqual({ width: 300, height: 200 });
  });

  it.each([0, 1, 2, 3, 4, 5, 1_000, 10_000])(
    'sizes a base64 payload of %d bytes without decoding it',
    (bytes) => {
      const payload = Buffer.alloc(bytes, 7);
      expect(base64Bytes(payload.toString('base64'))).toBe(bytes);
      expect(base64Bytes(dataUrl('audio/wav', payload))).toBe(bytes);
    },
  );
});

// --- The providers' formulas ------------------------------------------------------------------

describe('openAiImageTokens', () => {
  it.each<[string, { width: number; height: number } | undefined, string | undefined, number]>([
    // https://platform.openai.com/docs/guides/images-vision (calculating costs)
    ['a 1024×1024 image in high detail', { width: 1024, height: 1024 }, 'high', 765],
    ['a 1024×1024 image in auto detail', { width: 1024, height: 1024 }, undefined, 765],
    ['a 2048×4096 image in high detail', { width: 2048, height: 4096 }, 'high', 1105],
    ['a 4096×8192 image in low detail', { width: 4096, height: 8192 }, 'low', 85],
    ['a 4096×8192 image in high detail', { width: 4096, height: 8192 }, 'high', 1105],
    ['a 512×512 image, one tile', { width: 512, height: 512 }, 'high', 255],
    ['a 2048×768 image, the widest grid', { width: 2048, height: 768 }, 'high', 1445],
    ['an image of unknown size in low detail', undefined, 'low', 85],
    ['an image of unknown size', undefined, undefined, 1445],
  ])('costs %s as OpenAI publishes', (_what, size, detail, tokens) => {
    expect(openAiImageTokens(size, detail)).toBe(tokens);
  });
});

describe('anthropicImageTokens', () => {
  it.each<[string, { width: number; height: number } | undefined, number]>([
    // https://docs.anthropic.com/en/docs/build-with-claude/vision: tokens = width × height / 750
    ['a 1000×1000 image', { width: 1000, height: 1000 }, 1334],
    ['a 1092×1092 image (the largest 1:1 kept as sent)', { width: 1092, height: 1092 }, 1590],
    ['a 200×200 image', { width: 200, height: 200 }, 54],
    ['a 1568×1568 image, clamped', { width: 1568, height: 1568 }, 1600],
    ['a 6000×4000 image, fitted then clamped', { width: 6000, height: 4000 }, 1600],
    ['a 3136×200 image, fitted in 1568 pixels', { width: 3136, height: 200 }, 210],
    ['an image of unknown size', undefined, 1600],
  ])('costs %s', (_what, size, tokens) => {
    expect(anthropicImageTokens(size, undefined)).toBe(tokens);
  });
});

describe('textTokens', () => {
  it.each([
    ['', 0],
    ['hello', 2],
    ['hello world', 4],
    ['a b c d e f g h i j k l m n o p q r s t', 20],
    ['I a I a', 4],
    ['The quick brown fox jumps over the lazy dog.', 13],
    ['你好世界', 4],
    ['こんにちは、世界', 8],
    ['abc 你好', 4],
    ['😀', 2],
  ])('counts %j as %d tokens', (text, tokens) => {
    expect(textTokens(text)).toBe(tokens);
  });
});

// --- Whole bodies -----------------------------------------------------------------------------

/** A message's framing, counted once per message. */
const MESSAGE = 4;
const PNG_1024 = png(1024, 1024);

function promptOf(body: Record<string, unknown>, formula: ImageTokenFormula = openAiImageTokens): number {
  return estimatePrompt(body, formula).promptTokens;
}

describe('estimatePrompt on OpenAI chat bodies', () => {
  it.each<[string, Record<string, unknown>, number]>([
    ['a string message', { messages: [{ role: 'user', content: 'hello world' }] }, MESSAGE + 4],
    [
      'text parts, without their type',
      {
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'hello world' },
              { type: 'text', text: 'hello' },
            ],
          },
        ],
      },
      MESSAGE + 4 + 2,
    ],
    [
      'every message framed',
      {
        messages: [
          { role: 'system', content: 'hello' },
          { role: 'user', content: 'hello' },
        ],
      },
      2 * (MESSAGE + 2),
    ],
    [
      'an inline PNG by its size',
      {
        messages: [
          {
            role: 'user',
            content: [{ type: 'image_url', image_url: { url: dataUrl('image/png', PNG_1024) } }],
          },
        ],
      },
      MESSAGE + 765,
    ],
    [
      'an inline PNG in low detail',
      {
        messages: [
          {
            role: 'user',
            content: [
              { type: 'image_url', image_url: { url: dataUrl('image/png', PNG_1024), detail: 'low' } },
            ],
          },
        ],
      },
      MESSAGE + 85,
    ],
    [
      'a remote image as the largest',
      {
        messages: [
          {
            role: 'user',
            content: [{ type: 'image_url', image_url: { url: 'https://example.com/cat.png' } }],
          },
        ],
      },
      MESSAGE + 1445,
    ],
    [
      'a remote image in low detail',
      {
        messages: [
          {
            role: 'user',
            content: [
              { type: 'image_url', image_url: { url: 'https://example.com/cat.png', detail: 'low' } },
            ],
          },
        ],
      },
      MESSAGE + 85,
    ],
    [
      'an inline JPEG by its size',
      {
        messages: [
          {
            role: 'user',
            content: [
              {
                type: 'image_url',
                image_url: { url: dataUrl('image/jpeg', jpeg(2048, 4096, { frame: 0xc2 })) },
              },
            ],
          },
        ],
      },
      MESSAGE + 1105,
    ],
    [
      'audio by its bytes',
      {
        messages: [
          {
            role: 'user',
            content: [
              {
                type: 'input_audio',
                input_audio: { data: Buffer.alloc(48_000).toString('base64'), format: 'wav' },
              },
            ],
          },
        ],
      },
      MESSAGE + 48,
    ],
    [
      'a PDF by its pages',
      {
        messages: [
          {
            role: 'user',
            content: [
              {
                type: 'file',
                file: { filename: 'report.pdf', file_data: dataUrl('application/pdf', pdf(3)) },
              },
            ],
          },
        ],
      },
      MESSAGE + 3 * 3_000,
    ],
    [
      'a PDF without a data URL, by its pages',
      {
        messages: [
          {
            role: 'user',
            content: [{ type: 'file', file: { filename: 'a.pdf', file_data: pdf(2).toString('base64') } }],
          },
        ],
      },
      MESSAGE + 2 * 3_000,
    ],
    [
      'another file by its bytes',
      {
        messages: [
          {
            role: 'user',
            content: [
              {
                type: 'file',
                file: { filename: 'a.bin', file_data: Buffer.alloc(4_000).toString('base64') },
              },
            ],
          },
        ],
      },
      MESSAGE + 1_000,
    ],
    [
      'a file by id as nothing',
      { messages: [{ role: 'user', content: [{ type: 'file', file: { file_id: 'file-abc' } }] }] },
      MESSAGE,
    ],
    [
      'tool calls and tool results, not their ids',
      {
        messages: [
          {
            role: 'assistant',
            content: null,
            tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'lookup', arguments: '{}' } }],
          },
          { role: 'tool', tool_call_id: 'call_1', content: 'hello world' },
        ],
      },
      MESSAGE + textTokens('lookup') + textTokens('{}') + MESSAGE + 4,
    ],
    [
      'tools as their JSON',
      {
        messages: [{ role: 'user', content: 'hello' }],
        tools: [{ type: 'function', function: { name: 'f', parameters: {} } }],
      },
      MESSAGE +
        2 +
        Math.ceil(JSON.stringify([{ type: 'function', function: { name: 'f', parameters: {} } }]).length / 3),
    ],
    ['no prompt at all', { model: 'gpt-4o' }, 0],
  ])('counts %s', (_what, body, tokens) => {
    expect(promptOf(body)).toBe(tokens);
  });

  it('reports the audio part of the prompt apart', () => {
    const estimate = estimatePrompt(
      {
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'hello' },
              {
                type: 'input_audio',
                input_audio: { data: Buffer.alloc(10_000).toString('base64'), format: 'mp3' },
              },
            ],
          },
        ],
      },
      openAiImageTokens,
    );
    expect(estimate).toEqual({ promptTokens: MESSAGE + 2 + 10, audioPromptTokens: 10 });
  });

  it('costs a 600 KB base64 image its formula, never its characters as text', () => {
    const big = png(700, 640, true);
    const url = dataUrl('image/png', big);
    expect(url.length).toBeGreaterThan(590_000);
    const tokens = promptOf({
      messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url } }] }],
    });
    expect(tokens).toBe(MESSAGE + openAiImageTokens({ width: 700, height: 640 }, undefined));
    // The same bytes pasted as a string part (a data URL where text goes) still cost the image.
    expect(promptOf({ messages: [{ role: 'user', content: url }] })).toBe(MESSAGE + 765);
  });

  it('never counts JSON keys as text', () => {
    const body = {
      messages: [
        { role: 'user', content: [{ type: 'text', text: 'hi', cache_control: { type: 'ephemeral' } }] },
      ],
    };
    expect(promptOf(body)).toBe(MESSAGE + 1);
  });
});

describe('estimatePrompt on Responses input', () => {
  it.each<[string, Record<string, unknown>, number]>([
    ['a string input', { input: 'hello world' }, 4],
    ['instructions and input', { instructions: 'hello', input: 'hello world' }, 2 + 4],
    [
      'input_text items',
      { input: [{ role: 'user', content: [{ type: 'input_text', text: 'hello world' }] }] },
      MESSAGE + 4,
    ],
    [
      'an inline input_image by its size',
      {
        input: [
          { role: 'user', content: [{ type: 'input_image', image_url: dataUrl('image/png', PNG_1024) }] },
        ],
      },
      MESSAGE + 765,
    ],
    [
      'an input_image in low detail',
      {
        input: [
          {
            role: 'user',
            content: [{ type: 'input_image', image_url: dataUrl('image/png', PNG_1024), detail: 'low' }],
          },
        ],
      },
      MESSAGE + 85,
    ],
    [
      'an input_image by file id as the largest',
      { input: [{ role: 'user', content: [{ type: 'input_image', file_id: 'file-1' }] }] },
      MESSAGE + 1445,
    ],
    [
      'an input_file PDF by its pages',
      {
        input: [
          {
            role: 'user',
            content: [
              { type: 'input_file', filename: 'a.pdf', file_data: dataUrl('application/pdf', pdf(4)) },
            ],
          },
        ],
      },
      MESSAGE + 4 * 3_000,
    ],
    [
      'an input_file image by its size',
      {
        input: [
          {
            role: 'user',
            content: [
              {
                type: 'input_file',
                filename: 'a.webp',
                file_data: dataUrl('image/webp', webpExtended(1024, 1024)),
              },
            ],
          },
        ],
      },
      MESSAGE + 765,
    ],
    [
      'a JSON schema for the output',
      { input: 'hi', text: { format: { type: 'json_schema', name: 'x', schema: {} } } },
      1 + Math.ceil(JSON.stringify({ format: { type: 'json_schema', name: 'x', schema: {} } }).length / 3),
    ],
  ])('counts %s', (_what, body, tokens) => {
    expect(promptOf(body)).toBe(tokens);
  });
});

describe('estimatePrompt on Anthropic bodies', () => {
  it.each<[string, Record<string, unknown>, number]>([
    [
      'a string system',
      { system: 'hello world', messages: [{ role: 'user', content: 'hello' }] },
      4 + MESSAGE + 2,
    ],
    [
      'a system of text blocks',
      {
        system: [{ type: 'text', text: 'hello world', cache_control: { type: 'ephemeral' } }],
        messages: [{ role: 'user', content: 'hello' }],
      },
      4 + MESSAGE + 2,
    ],
    [
      'a base64 image by its size',
      {
        messages: [
          {
            role: 'user',
            content: [
              {
                type: 'image',
                source: { type: 'base64', media_type: 'image/png', data: png(1000, 1000).toString('base64') },
              },
            ],
          },
        ],
      },
      MESSAGE + 1334,
    ],
    [
      'a base64 GIF by its size',
      {
        messages: [
          {
            role: 'user',
            content: [
              {
                type: 'image',
                source: { type: 'base64', media_type: 'image/gif', data: gif(200, 200).toString('base64') },
              },
            ],
          },
        ],
      },
      MESSAGE + 54,
    ],
    [
      'an image by URL as the largest',
      {
        messages: [
          {
            role: 'user',
            content: [{ type: 'image', source: { type: 'url', url: 'https://example.com/a.png' } }],
          },
        ],
      },
      MESSAGE + 1600,
    ],
    [
      'a base64 PDF document by its pages',
      {
        messages: [
          {
            role: 'user',
            content: [
              {
                type: 'document',
                source: { type: 'base64', media_type: 'application/pdf', data: pdf(5).toString('base64') },
              },
            ],
          },
        ],
      },
      MESSAGE + 5 * 3_000,
    ],
    [
      'a plain-text document as its text',
      {
        messages: [
          {
            role: 'user',
            content: [
              { type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'hello world' } },
            ],
          },
        ],
      },
      MESSAGE + 4,
    ],
  ])('counts %s', (_what, body, tokens) => {
    expect(promptOf(body, anthropicImageTokens)).toBe(tokens);
  });
});

describe('estimatePrompt on completions and embeddings', () => {
  it.each<[string, Record<string, unknown>, number]>([
    ['a prompt string', { prompt: 'hello world' }, 4],
    ['a prompt of strings', { prompt: ['hello', 'hello world'] }, 2 + 4],
    ['a prompt of token ids', { prompt: [101, 2023, 2003, 102] }, 4],
    [
      'an input of token arrays',
      {
        input: [
          [1, 2],
          [3, 4, 5],
        ],
      },
      5,
    ],
    ['an input string', { input: 'hello world' }, 4],
  ])('counts %s', (_what, body, tokens) => {
    expect(promptOf(body)).toBe(tokens);
  });
});

describe('the estimate against the mock upstream', () => {
  /** Words as people and the mock write them, short ones (`a`, `I`, `to`) as often as long ones. */
  const word = fc.oneof(
    { arbitrary: fc.stringMatching(/^[A-Za-z0-9.,!?'-]$/), weight: 4 },
    { arbitrary: fc.stringMatching(/^[a-z]{2,3}$/), weight: 2 },
    { arbitrary: fc.stringMatching(/^[A-Za-z0-9.,!?'-]{1,12}$/), weight: 1 },
  );
  const text = fc
    .array(fc.tuple(word, fc.constantFrom(' ', ' ', ' ', '  ', '\n', '\t')), { maxLength: 80, size: 'max' })
    .map((pairs) => pairs.map(([w, space]) => w + space).join(''));

  it('never estimates a chat body below the words of its text (the mock bills a word a token)', () => {
    fc.assert(
      fc.property(fc.array(text, { minLength: 1, maxLength: 5 }), (contents) => {
        const body = { messages: contents.map((content) => ({ role: 'user', content })) };
        const words = contents.reduce((sum, content) => sum + countWords(content), 0);
        expect(promptOf(body)).toBeGreaterThanOrEqual(words);
      }),
    );
  });

  /** A character of a word: mostly ASCII, any grapheme sometimes. */
  const letter = fc.oneof(
    { arbitrary: fc.constantFrom('a', 'I', '.', '\u0001'), weight: 6 },
    { arbitrary: fc.constantFrom('你', 'é'), weight: 1 },
    { arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }), weight: 1 },
  );
  /** Short words of any script, one letter long most often, apart by the spaces of every script. */
  const anyText = fc
    .array(
      fc.tuple(
        fc.oneof(
          { arbitrary: letter, weight: 3 },
          { arbitrary: fc.string({ unit: letter, minLength: 2, maxLength: 3 }), weight: 1 },
        ),
        fc.oneof(
          { arbitrary: fc.constantFrom(' ', '\t', '\n'), weight: 6 },
          { arbitrary: fc.constantFrom('\u00a0', '\u2003', '\u3000'), weight: 1 },
        ),
      ),
      { maxLength: 80, size: 'max' },
    )
    .map((pairs) => pairs.map(([w, space]) => w + space).join(''));

  it('never estimates text below its words, whatever its script', () => {
    fc.assert(
      fc.property(anyText, (content) => {
        expect(textTokens(content)).toBeGreaterThanOrEqual(countWords(content));
      }),
    );
  });
});
