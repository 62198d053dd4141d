// The OpenAI wire protocol of the mock: every route outside Anthropic's, and OpenAI's error shape.
import type { RouteHandler, RouteMatch, WireProtocol } from '../route.js';
import { chatCompletion, textCompletion } from './completions.js';
import { embeddings } from './embeddings.js';
import { openAiErrorBody } from './errors.js';
import { listModels, retrieveModel } from './models.js';

function fixed(handler: RouteHandler): RouteMatch {
  return { handler, id: '' };
}

const POST_ROUTES = new Map<string, RouteMatch>([
  ['/v1/chat/completions', fixed(chatCompletion)],
  ['/v1/completions', fixed(textCompletion)],
  ['/v1/embeddings', fixed(embeddings)],
]);
const MODELS = fixed(listModels);
const MODEL_PREFIX = '/v1/models/';

/** A path parameter as the SDKs encode it (`encodeURIComponent`); undefined when empty or malformed. */
function parameter(encoded: string): string | undefined {
  if (encoded === '') return undefined;
  try {
    return decodeURIComponent(encoded);
  } catch {
    return undefined;
  }
}

/** OpenAI Chat/Completions, Embeddings and Models. */
export const openAiProtocol: WireProtocol = {
  errorBody: openAiErrorBody,
  route(method, pathname) {
    if (method === 'POST') {
      const match = POST_ROUTES.get(pathname);
      if (match !== undefined) return match;
    } else if (method === 'GET') {
      if (pathname === '/v1/models') return MODELS;
      if (pathname.startsWith(MODEL_PREFIX)) {
        const id = parameter(pathname.slice(MODEL_PREFIX.length));
        return id === undefined ? undefined : { handler: retrieveModel, id };
      }
    }
    return undefined;
  },
};
