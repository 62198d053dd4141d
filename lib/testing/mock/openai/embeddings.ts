// OpenAI Embeddings: one deterministic vector per input, so equal inputs embed equally across runs;
// as floats, or as OpenAI's base64 of little-endian float32 (the official SDK's default request).
import { countWords, fieldOf, modelOf } from '../request-fields.js';
import type { RouteContext } from '../route.js';

const EMBEDDING_DIMENSIONS = 8;

/** A deterministic unit-range vector per input (FNV-1a seed, xorshift sequence). */
function embeddingOf(seed: string): number[] {
  let hash = 0x811c9dc5;
  for (let i = 0; i < seed.length; i++) hash = Math.imul(hash ^ seed.charCodeAt(i), 0x01000193);
  hash = hash | 0 || 1;
  const vector = new Array<number>(EMBEDDING_DIMENSIONS);
  for (let i = 0; i < EMBEDDING_DIMENSIONS; i++) {
    hash ^= hash << 13;
    hash ^= hash >>> 17;
    hash ^= hash << 5;
    vector[i] = Math.round(((hash >>> 0) / 0xffffffff) * 2e6 - 1e6) / 1e6;
  }
  return vector;
}

/** The vector as base64 of its little-endian float32 bytes, as OpenAI sends `encoding_format: "base64"`. */
function base64Of(vector: readonly number[]): string {
  const bytes = Buffer.allocUnsafe(vector.length * 4);
  for (let i = 0; i < vector.length; i++) bytes.writeFloatLE(vector[i] as number, i * 4);
  return bytes.toString('base64');
}

/** `POST /v1/embeddings`. */
export function embeddings(context: RouteContext): void {
  const behaviour = context.behaviour;
  const body = context.record.body;
  const input = fieldOf(body, 'input');
  const seeds: string[] = [];
  let words = 0;
  if (typeof input === 'string') {
    seeds.push(input);
    words = countWords(input);
  } else if (Array.isArray(input) && input.length > 0 && input.every((item) => typeof item === 'number')) {
    seeds.push(input.join(','));
    words = input.length;
  } else if (Array.isArray(input)) {
    for (const item of input) {
      if (typeof item === 'string') {
        seeds.push(item);
        words += countWords(item);
      } else {
        seeds.push(Array.isArray(item) ? item.join(',') : String(item));
        words += Array.isArray(item) ? item.length : 1;
      }
    }
  }
  if (seeds.length === 0) seeds.push('');
  const base64 = fieldOf(body, 'encoding_format') === 'base64';
  const data = seeds.map((seed, index) => {
    const vector = embeddingOf(seed);
    return { object: 'embedding', index, embedding: base64 ? base64Of(vector) : vector };
  });
  const response: Record<string, unknown> = {
    object: 'list',
    data,
    model: modelOf(body, 'mock-embedding'),
  };
  const prompt = Math.max(words, 1);
  if (!behaviour.omitUsage) response.usage = { prompt_tokens: prompt, total_tokens: prompt };
  context.sendJson(behaviour.status, JSON.stringify(response));
}
