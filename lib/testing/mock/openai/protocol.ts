// The OpenAI wire protocol of the mock: every route outside Anthropic's, and OpenAI's error shape.
import type { RouteHandler, RouteMatch, WireProtocol } from '../route.js';
import { chatCompletion, textCompletion } from './completions.js';
import { embeddings } from './embeddings.js';
import { openAiErrorBody } from './errors.js';
import { listModels, retrieveModel } from './models.js';
import { cancelResponse, deleteResponse, listInputItems, retrieveResponse } from './responses-admin.js';
import { createResponse } from './responses.js';

function fixed(handler: RouteHandler): RouteMatch {
  return { handler, id: '' };
}

const POST_ROUTES = new Map<string, RouteMatch>([
  ['/v1/chat/completions', fixed(chatCompletion)],
  ['/v1/completions', fixed(textCompletion)],
  ['/v1/embeddings', fixed(embeddings)],
  ['/v1/responses', fixed(createResponse)],
]);
const MODELS = fixed(listModels);
const MODEL_PREFIX = '/v1/models/';
const RESPONSE_PREFIX = '/v1/responses/';

/** A path parameter as the SDKs encode it (`encodeURIComponent`); undefined when empty or malformed. */
function parameter(encoded: string): string | undefined {
  if (encoded === '') return undefined;
  try {
    return decodeURIComponent(encoded);
  } catch {
    return undefined;
  }
}

/** The routes under `/v1/responses/{id}`. */
function responseRoute(method: string, rest: string): RouteMatch | undefined {
  const slash = rest.indexOf('/');
  const id = parameter(slash === -1 ? rest : rest.slice(0, slash));
  if (id === undefined) return undefined;
  const action = slash === -1 ? '' : rest.slice(slash + 1);
  if (action === '' && method === 'GET') return { handler: retrieveResponse, id };
  if (action === '' && method === 'DELETE') return { handler: deleteResponse, id };
  if (action === 'cancel' && method === 'POST') return { handler: cancelResponse, id };
  if (action === 'input_items' && method === 'GET') return { handler: listInputItems, id };
  return undefined;
}

/** OpenAI Chat/Completions, Embeddings, Models and Responses. */
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
    if (pathname.startsWith(RESPONSE_PREFIX))
      return responseRoute(method, pathname.slice(RESPONSE_PREFIX.length));
    return undefined;
  },
};
