// The Anthropic wire protocol of the mock: the routes under /v1/messages and Anthropic's error shape.
import type { RouteMatch, WireProtocol } from '../route.js';
import { anthropicErrorBody } from './errors.js';
import { countMessageTokens, createMessage } from './messages.js';

const MESSAGES: RouteMatch = { handler: createMessage, id: '' };
const COUNT_TOKENS: RouteMatch = { handler: countMessageTokens, id: '' };

/** Anthropic Messages and token counting. */
export const anthropicProtocol: WireProtocol = {
  errorBody: anthropicErrorBody,
  route(method, pathname) {
    if (method !== 'POST') return undefined;
    if (pathname === '/v1/messages') return MESSAGES;
    if (pathname === '/v1/messages/count_tokens') return COUNT_TOKENS;
    return undefined;
  },
};
