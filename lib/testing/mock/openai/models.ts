// OpenAI Models: the list the mock advertises and one model by id. Any model id in a request is
// still answered; only `GET /v1/models/{id}` says 404 for an id it does not list.
import type { RouteContext } from '../route.js';
import { openAiErrorBody } from './errors.js';

interface ModelObject {
  readonly id: string;
  readonly object: 'model';
  readonly created: number;
  readonly owned_by: string;
}

function model(id: string, created: number, ownedBy: string): ModelObject {
  return { id, object: 'model', created, owned_by: ownedBy };
}

/** The models the mock lists: its own two, then real ids clients and relays are configured with. */
const MODELS: readonly ModelObject[] = [
  model('mock-model', 1700000000, 'llmux-mock'),
  model('mock-embedding', 1700000000, 'llmux-mock'),
  model('gpt-4o-mini', 1721172741, 'system'),
  model('gpt-4o', 1715367049, 'system'),
  model('gpt-5', 1754425777, 'system'),
  model('o3', 1744225308, 'system'),
  model('text-embedding-3-small', 1705948997, 'system'),
  model('claude-sonnet-4-5', 1759104000, 'anthropic'),
  model('claude-haiku-4-5', 1760486400, 'anthropic'),
];

const LIST_BODY = JSON.stringify({ object: 'list', data: MODELS });
const MODEL_BODIES = new Map(MODELS.map((entry) => [entry.id, JSON.stringify(entry)]));

/** `GET /v1/models`. */
export function listModels(context: RouteContext): void {
  context.sendJson(200, LIST_BODY);
}

/** `GET /v1/models/{id}`: the model, or OpenAI's `model_not_found` 404. */
export function retrieveModel(context: RouteContext, id: string): void {
  const body = MODEL_BODIES.get(id);
  if (body !== undefined) {
    context.sendJson(200, body);
    return;
  }
  const message = `The model '${id}' does not exist or you do not have access to it.`;
  context.sendJson(404, openAiErrorBody(404, message, 'model_not_found', 'model'));
}
