// The OpenAI wire protocol of the mock: every route outside Anthropic's, and OpenAI's error shape.
import type { RouteMatch, WireProtocol } from '../route.js';
import { chatCompletion, textCompletion } from './completions.js';
import { embeddings } from './embeddings.js';
import { openAiErrorBody } from './errors.js';
import { listModels } from './models.js';

const CHAT: RouteMatch = { handler: chatCompletion, id: '' };
const TEXT: RouteMatch = { handler: textCompletion, id: '' };
const EMBEDDINGS: RouteMatch = { handler: embeddings, id: '' };
const MODELS: RouteMatch = { handler: listModels, id: '' };

/** OpenAI Chat/Completions, Embeddings and Models. */
export const openAiProtocol: WireProtocol = {
  errorBody: openAiErrorBody,
  route(method, pathname) {
    if (method === 'POST') {
      if (pathname === '/v1/chat/completions') return CHAT;
      if (pathname === '/v1/completions') return TEXT;
      if (pathname === '/v1/embeddings') return EMBEDDINGS;
    } else if (method === 'GET' && pathname === '/v1/models') {
      return MODELS;
    }
    return undefined;
  },
};
