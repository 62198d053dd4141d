// Which wire protocol answers a path: Anthropic's under /v1/messages, OpenAI's everywhere else
// (so an unknown route gets OpenAI's 404, as an OpenAI-compatible upstream sends).
import { anthropicProtocol } from './anthropic/protocol.js';
import { openAiProtocol } from './openai/protocol.js';
import type { WireProtocol } from './route.js';

/** The protocol whose routes and error shape apply to `pathname`. */
export function protocolFor(pathname: string): WireProtocol {
  return pathname === '/v1/messages' || pathname.startsWith('/v1/messages/')
    ? anthropicProtocol
    : openAiProtocol;
}
