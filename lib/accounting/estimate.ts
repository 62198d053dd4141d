// The prompt of a request in tokens, estimated from what it says rather than how many bytes it
// takes: message text (not JSON keys, not base64), images by their provider's token formula, audio
// and files by size rules, tool schemas. Documented bounds in README ("Accounting").

import { base64Bytes, base64Head, imageSizeOf, type ImageSize } from './image-size.js';

/** How a provider turns an image into tokens, given its size (unknown for a remote image). */
export type ImageTokenFormula = (size: ImageSize | undefined, detail: string | undefined) => number;

/**
 * OpenAI's tile formula (GPT-4o family): `low` detail is 85 tokens; otherwise the image is fitted in
 * 2048×2048, its short side scaled to 768, and each 512-pixel tile costs 170 tokens on top of 85.
 * An image of unknown size counts as the largest a tile grid can be: 8 tiles, 1 445 tokens.
 */
export const openAiImageTokens: ImageTokenFormula = (size, detail) => {
  if (detail === 'low') return 85;
  if (size === undefined) return 85 + 170 * 8;
  let { width, height } = size;
  const fit = Math.min(1, 2048 / Math.max(width, height));
  width *= fit;
  height *= fit;
  const shrink = Math.min(1, 768 / Math.min(width, height));
  width *= shrink;
  height *= shrink;
  return 85 + 170 * Math.ceil(width / 512) * Math.ceil(height / 512);
};

/**
 * Anthropic's formula: about width × height / 750 tokens, after the image is fitted in 1568 pixels
 * on its long side; an image of unknown size counts as the largest, about 1 600 tokens.
 */
export const anthropicImageTokens: ImageTokenFormula = (size) => {
  if (size === undefined) return 1_600;
  const fit = Math.min(1, 1_568 / Math.max(size.width, size.height));
  return Math.min(1_600, Math.ceil((size.width * fit * (size.height * fit)) / 750));
};

/**
 * Tokens of plain text: ASCII at 3.5 characters a token (English runs higher), but never fewer than
 * its words (a tokenizer splits at spaces, so `a b c` is 3 tokens), anything else one each.
 */
export function textTokens(text: string): number {
  let ascii = 0;
  let words = 0;
  let inWord = false;
  const length = text.length;
  for (let i = 0; i < length; i++) {
    const code = text.charCodeAt(i);
    if (code >= 0x80) {
      inWord = false;
      continue;
    }
    ascii++;
    if (code === 32 || (code >= 9 && code <= 13)) inWord = false;
    else if (!inWord) {
      inWord = true;
      words++;
    }
  }
  return Math.max(Math.ceil(ascii / 3.5), words) + (length - ascii);
}

/** Tokens of a JSON schema or other structure a model reads as text: 3 characters a token. */
function structureTokens(value: unknown): number {
  try {
    return Math.ceil((JSON.stringify(value)?.length ?? 0) / 3);
  } catch {
    return 0;
  }
}

/** Tokens a message's framing costs (role, separators). */
const MESSAGE_OVERHEAD_TOKENS = 4;
/** Audio: one token per this many bytes of encoded audio (WAV at 16 kHz runs a third of it). */
const AUDIO_BYTES_PER_TOKEN = 1_000;
/** A PDF page: text and its picture, as providers count it, at the high end. */
const PDF_PAGE_TOKENS = 3_000;
/** Any other file: one token per this many bytes. */
const FILE_BYTES_PER_TOKEN = 4;

/** The fields of a request body that hold its prompt, on every protocol. */
const PROMPT_FIELDS = ['messages', 'input', 'prompt', 'system', 'instructions'] as const;
/** The fields a model reads as structure (tool and output schemas). */
const SCHEMA_FIELDS = ['tools', 'functions', 'response_format', 'text', 'tool_choice'] as const;
/** Keys whose strings are not text a model reads. */
const NOT_TEXT_KEYS: ReadonlySet<string> = new Set([
  'type',
  'role',
  'id',
  'detail',
  'format',
  'media_type',
  'mime_type',
  'call_id',
  'tool_call_id',
  'file_id',
  'filename',
  'url',
  'cache_control',
  'status',
]);
/** Keys whose strings are base64 payloads. */
const BINARY_KEYS: ReadonlySet<string> = new Set(['data', 'file_data', 'b64_json']);

/** What a request's prompt holds, in tokens by kind. */
export interface PromptEstimate {
  /** Every prompt token: text, images, files, audio and schemas. */
  promptTokens: number;
  /** The part of it that is audio. */
  audioPromptTokens: number;
}

/** Estimates the prompt of a parsed body, with the provider's image formula. */
export function estimatePrompt(
  body: Record<string, unknown>,
  imageTokens: ImageTokenFormula,
): PromptEstimate {
  const walk = new PromptWalk(imageTokens);
  for (const field of PROMPT_FIELDS) walk.visit(body[field], field);
  let schema = 0;
  for (const field of SCHEMA_FIELDS) if (body[field] !== undefined) schema += structureTokens(body[field]);
  return { promptTokens: walk.tokens + schema, audioPromptTokens: walk.audioTokens };
}

/** One walk over a prompt, adding up its tokens. */
class PromptWalk {
  tokens = 0;
  audioTokens = 0;

  constructor(private readonly imageTokens: ImageTokenFormula) {}

  visit(value: unknown, key: string): void {
    if (typeof value === 'string') {
      if (BINARY_KEYS.has(key) || value.startsWith('data:')) this.binary(value, undefined);
      else if (!NOT_TEXT_KEYS.has(key)) this.tokens += textTokens(value);
    } else if (typeof value === 'number') {
      // A token id (completions and embeddings take arrays of them).
      this.tokens += 1;
    } else if (Array.isArray(value)) {
      for (const item of value) this.visit(item, key);
    } else if (typeof value === 'object' && value !== null) {
      this.part(value as Record<string, unknown>);
    }
  }

  /** A content part or message: images, audio and files by their rules, the rest by its fields. */
  private part(part: Record<string, unknown>): void {
    if (typeof part.role === 'string') this.tokens += MESSAGE_OVERHEAD_TOKENS;
    switch (part.type) {
      case 'image_url':
      case 'input_image':
      case 'image':
        this.image(part);
        return;
      case 'input_audio':
        this.audio(part);
        return;
      case 'file':
      case 'input_file':
      case 'document':
        this.file(part);
        return;
    }
    for (const key of Object.keys(part)) this.visit(part[key], key);
  }

  private image(part: Record<string, unknown>): void {
    const nested = part.image_url;
    const source = part.source as Record<string, unknown> | undefined;
    const url =
      typeof nested === 'string'
        ? nested
        : typeof (nested as { url?: unknown } | undefined)?.url === 'string'
          ? (nested as { url: string }).url
          : typeof source?.data === 'string'
            ? source.data
            : undefined;
    const detail = (part.detail ?? (nested as { detail?: unknown } | undefined)?.detail) as
      string | undefined;
    const inline = url !== undefined && (url.startsWith('data:') || source?.type === 'base64');
    this.tokens += this.imageTokens(inline ? imageSizeOf(base64Head(url)) : undefined, detail);
  }

  private audio(part: Record<string, unknown>): void {
    const data = (part.input_audio as { data?: unknown } | undefined)?.data;
    const tokens = typeof data === 'string' ? Math.ceil(base64Bytes(data) / AUDIO_BYTES_PER_TOKEN) : 0;
    this.tokens += tokens;
    this.audioTokens += tokens;
  }

  private file(part: Record<string, unknown>): void {
    const nested = (part.file ?? part.source ?? part) as Record<string, unknown>;
    const data = nested.file_data ?? nested.data;
    if (typeof data !== 'string') {
      // Text sources are read as text; a file by id or URL has no size to go by here.
      if (typeof nested.text === 'string') this.tokens += textTokens(nested.text);
      return;
    }
    if (nested.type === 'text') {
      this.tokens += textTokens(data);
      return;
    }
    this.binary(data, (nested.media_type ?? nested.mime_type) as string | undefined);
  }

  /** A base64 payload: a PDF by its pages, an image by its size, anything else by its bytes. */
  private binary(data: string, mediaType: string | undefined): void {
    const head = base64Head(data, 16);
    if (mediaType === 'application/pdf' || head.toString('latin1', 0, 4) === '%PDF') {
      this.tokens += pdfPages(data) * PDF_PAGE_TOKENS;
      return;
    }
    const size = imageSizeOf(base64Head(data));
    if (size !== undefined) {
      this.tokens += this.imageTokens(size, undefined);
      return;
    }
    this.tokens += Math.ceil(base64Bytes(data) / FILE_BYTES_PER_TOKEN);
  }
}

/** The pages of a base64 PDF, counted by their `/Type /Page` objects (at least one). */
function pdfPages(data: string): number {
  const comma = data.startsWith('data:') ? data.indexOf(',') : -1;
  const text = Buffer.from(data.slice(comma + 1), 'base64').toString('latin1');
  const pages = text.match(/\/Type\s*\/Page(?!s)/g)?.length ?? 0;
  return Math.max(1, pages);
}
