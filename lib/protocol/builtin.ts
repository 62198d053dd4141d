// The protocols llmux speaks out of the box, and how a request finds its own when no router said.
import { ANTHROPIC_MESSAGES } from './anthropic-messages.js';
import { OPENAI } from './openai.js';
import { OPENAI_RESPONSES } from './openai-responses.js';
import { RouteTable, pathOf, type RouteMatch } from './routes.js';
import type { ProtocolRoute, WireProtocol } from './types.js';

/** Every protocol llmux speaks. */
export const BUILTIN_PROTOCOLS: readonly WireProtocol[] = Object.freeze([
  OPENAI,
  OPENAI_RESPONSES,
  ANTHROPIC_MESSAGES,
]);

/** The routes of every built-in protocol. */
export const BUILTIN_ROUTES = new RouteTable(BUILTIN_PROTOCOLS);

/**
 * The protocol and route of a request by its method and target: an exact route of a built-in
 * protocol, else (for the shape of errors) the protocol whose paths it lies under, else OpenAI's.
 */
export function protocolOf(
  method: string | undefined,
  url: string | undefined,
): { protocol: WireProtocol; route: ProtocolRoute | undefined } {
  const path = pathOf(url ?? '/');
  const match: RouteMatch | undefined = BUILTIN_ROUTES.match(method, path);
  if (match !== undefined) return match;
  // An unknown path under a protocol's own (a wrong method, a typo) still answers in its shape.
  const protocol = path.startsWith('/v1/messages') ? ANTHROPIC_MESSAGES : OPENAI;
  return { protocol, route: undefined };
}
