// The Responses API routes around a created response: retrieve, delete, cancel and its input items,
// answered from the mock's bounded store (404 in OpenAI's shape for an id it does not hold).
import type { RouteContext } from '../route.js';
import { openAiErrorBody } from './errors.js';

const MAX_PAGE = 100;
const DEFAULT_PAGE = 20;

function notFound(context: RouteContext, id: string): void {
  context.sendJson(404, openAiErrorBody(404, `Response with id '${id}' not found.`, 'not_found', null));
}

/** `GET /v1/responses/{id}`. */
export function retrieveResponse(context: RouteContext, id: string): void {
  const stored = context.responses.get(id);
  if (stored === undefined) notFound(context, id);
  else context.sendJson(200, JSON.stringify(stored.response));
}

/** `DELETE /v1/responses/{id}`. */
export function deleteResponse(context: RouteContext, id: string): void {
  if (!context.responses.delete(id)) notFound(context, id);
  else context.sendJson(200, JSON.stringify({ id, object: 'response', deleted: true }));
}

/** `POST /v1/responses/{id}/cancel`: the response, now `cancelled`. */
export function cancelResponse(context: RouteContext, id: string): void {
  const stored = context.responses.get(id);
  if (stored === undefined) {
    notFound(context, id);
    return;
  }
  stored.response.status = 'cancelled';
  stored.response.completed_at = null;
  context.sendJson(context.behaviour.status, JSON.stringify(stored.response));
}

/** `GET /v1/responses/{id}/input_items`: a cursor page, newest first unless `order=asc`. */
export function listInputItems(context: RouteContext, id: string): void {
  const stored = context.responses.get(id);
  if (stored === undefined) {
    notFound(context, id);
    return;
  }
  const query = new URLSearchParams(context.search);
  const limitParam = Number(query.get('limit') ?? DEFAULT_PAGE);
  const limit = Number.isInteger(limitParam) ? Math.min(Math.max(limitParam, 1), MAX_PAGE) : DEFAULT_PAGE;
  let items = query.get('order') === 'asc' ? [...stored.inputItems] : [...stored.inputItems].reverse();
  const after = query.get('after');
  if (after !== null) {
    const at = items.findIndex((item) => item.id === after);
    items = at === -1 ? [] : items.slice(at + 1);
  }
  const data = items.slice(0, limit);
  context.sendJson(
    200,
    JSON.stringify({
      object: 'list',
      data,
      first_id: data.length > 0 ? data[0]?.id : null,
      last_id: data.length > 0 ? data[data.length - 1]?.id : null,
      has_more: items.length > limit,
    }),
  );
}
