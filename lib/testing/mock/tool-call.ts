// The tool call a mock answer makes: which tool (the one `tool_choice` names, else the first), and
// arguments the tool's own JSON schema accepts, so SDKs that validate them (the AI SDK does) pass.
import type { ResolvedBehaviour } from './behaviour.js';
import { fieldOf } from './request-fields.js';

/** A tool the request offers, in protocol-neutral terms. */
export interface OfferedTool {
  readonly name: string;
  /** Its JSON schema (`parameters` or `input_schema`), if any. */
  readonly schema: unknown;
}

/** The call the answer makes. */
export interface ToolCall {
  readonly name: string;
  /** The arguments as a JSON object text; streamed in `chunks` fragments. */
  readonly argumentsJson: string;
}

/** What a protocol read from its request: the tools, whether `tool_choice` forbids them, and the name it forces. */
export interface ToolRequest {
  readonly tools: readonly OfferedTool[];
  readonly suppressed: boolean;
  readonly forcedName: string | undefined;
}

const MAX_SCHEMA_DEPTH = 8;
const FALLBACK_TOOL = 'mock_tool';

/** The tool call to answer with, or undefined for a text answer. */
export function planToolCall(behaviour: ResolvedBehaviour, request: ToolRequest): ToolCall | undefined {
  const wanted = behaviour.toolCalls ?? (request.tools.length > 0 && !request.suppressed);
  if (!wanted) return undefined;
  const tool = request.tools.find((candidate) => candidate.name === request.forcedName) ?? request.tools[0];
  let argumentsJson = behaviour.toolArgumentsJson;
  if (argumentsJson === undefined) {
    const sample = sampleOf(tool?.schema, 0);
    // Tool arguments are always an object, whatever the schema's top says.
    argumentsJson = JSON.stringify(
      typeof sample === 'object' && sample !== null && !Array.isArray(sample) ? sample : {},
    );
  }
  return { name: tool?.name ?? request.forcedName ?? FALLBACK_TOOL, argumentsJson };
}

/** Fragment `index` of `count` near-equal slices of `text` (slices may be empty when `count` exceeds its length). */
export function fragmentOf(text: string, index: number, count: number): string {
  return text.slice(
    Math.floor((index * text.length) / count),
    Math.floor(((index + 1) * text.length) / count),
  );
}

/** The smallest value a JSON schema accepts, as far as the mock can tell: required properties only. */
function sampleOf(schema: unknown, depth: number): unknown {
  if (typeof schema !== 'object' || schema === null || depth > MAX_SCHEMA_DEPTH) return undefined;
  const node = schema as Record<string, unknown>;
  if ('const' in node) return node.const;
  if (Array.isArray(node.enum) && node.enum.length > 0) return node.enum[0];
  for (const key of ['anyOf', 'oneOf', 'allOf']) {
    const branches = node[key];
    if (Array.isArray(branches) && branches.length > 0) return sampleOf(branches[0], depth + 1);
  }
  let type = node.type;
  if (Array.isArray(type)) type = type.find((item) => item !== 'null') ?? type[0];
  if (type === undefined && typeof node.properties === 'object') type = 'object';
  switch (type) {
    case 'object':
      return objectSample(node, depth);
    case 'array': {
      const minItems = typeof node.minItems === 'number' ? Math.min(node.minItems, 3) : 0;
      return Array.from({ length: minItems }, () => sampleOf(node.items, depth + 1) ?? 'mock');
    }
    case 'number':
    case 'integer':
      return numberSample(node);
    case 'boolean':
      return true;
    case 'null':
      return null;
    default:
      return stringSample(node);
  }
}

/** Strings in the formats JSON-schema validators check, so a `format` does not fail the arguments. */
const FORMATTED: Readonly<Record<string, string>> = {
  'date-time': '2025-01-01T00:00:00Z',
  date: '2025-01-01',
  time: '00:00:00Z',
  email: 'mock@example.com',
  uri: 'https://example.com/',
  url: 'https://example.com/',
  uuid: '00000000-0000-4000-8000-000000000000',
};

function stringSample(node: Record<string, unknown>): string {
  const formatted = typeof node.format === 'string' ? FORMATTED[node.format] : undefined;
  if (formatted !== undefined) return formatted;
  const minLength = typeof node.minLength === 'number' ? Math.min(node.minLength, 64) : 0;
  return 'mock'.padEnd(minLength, 'k');
}

function objectSample(node: Record<string, unknown>, depth: number): Record<string, unknown> {
  const sample: Record<string, unknown> = {};
  const required = node.required;
  if (!Array.isArray(required)) return sample;
  for (const name of required) {
    if (typeof name !== 'string') continue;
    sample[name] = sampleOf(fieldOf(node.properties, name), depth + 1) ?? 'mock'; // a property without a schema takes anything
  }
  return sample;
}

function numberSample(node: Record<string, unknown>): number {
  let value = 1;
  if (typeof node.minimum === 'number' && value < node.minimum) value = node.minimum;
  if (typeof node.exclusiveMinimum === 'number' && value <= node.exclusiveMinimum)
    value = node.exclusiveMinimum + 1;
  if (typeof node.maximum === 'number' && value > node.maximum) value = node.maximum;
  return node.type === 'integer' ? Math.ceil(value) : value;
}
