// OpenAI Models: the list the mock advertises. Any model id in a request is still answered.
import type { RouteContext } from '../route.js';

const MODELS_BODY = JSON.stringify({
  object: 'list',
  data: [
    { id: 'mock-model', object: 'model', created: 1700000000, owned_by: 'llmux-mock' },
    { id: 'mock-embedding', object: 'model', created: 1700000000, owned_by: 'llmux-mock' },
  ],
});

/** `GET /v1/models`. */
export function listModels(context: RouteContext): void {
  context.sendJson(200, MODELS_BODY);
}
