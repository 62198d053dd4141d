// What a request reserves at admission and what it is billed when it ends: the prompt as its
// protocol estimates it, the output up to the request's own cap (or the model's maximum), priced by
// class; the bill is the usage the upstream reported, never a silent zero for an answer served.
import type { RequestContext } from '../context.js';
import { costOf, type ModelPrice } from '../pricing/price.js';
import { usageOf, type Usage } from '../usage.js';

/** How a request without a cap on its output is reserved for. */
export interface OutputReserve {
  /** Output tokens reserved per model (names lower-cased, as pricing matches them), over the model's maximum. */
  readonly perModel: ReadonlyMap<string, number>;
  /** Reserved when neither the request nor the catalog says how much the model may write. */
  readonly fallbackTokens: number;
}

/** A request's reservation: the tokens it may use at most (as estimated), and what they cost. */
export interface Reservation {
  /** The prompt, estimated. */
  promptTokens: number;
  /** The part of the prompt that is audio. */
  audioPromptTokens: number;
  /** The most output the request can produce: its own cap, else the reserve (times `n`). */
  outputTokens: number;
  /** True when the request set no cap of its own (the reserve stood in). */
  uncapped: boolean;
  /** The cost of all of it at the model's prices. */
  costUsd: number;
}

/** The reservation of the request in `ctx` if served as `model` at `price`. */
export function reservationOf(
  ctx: RequestContext,
  model: string | undefined,
  price: ModelPrice,
  reserve: OutputReserve,
): Reservation {
  const body = ctx.body;
  if (body === undefined)
    return { promptTokens: 0, audioPromptTokens: 0, outputTokens: 0, uncapped: false, costUsd: 0 };
  const protocol = ctx.protocol;
  const prompt = protocol.estimatePrompt(body);
  let outputTokens = 0;
  let uncapped = false;
  if (generates(ctx, body)) {
    const cap = protocol.outputCap(body);
    uncapped = cap === undefined;
    const perOutput =
      cap ??
      (model === undefined || reserve.perModel.size === 0
        ? undefined
        : reserve.perModel.get(model.toLowerCase())) ??
      price.maxOutputTokens ??
      reserve.fallbackTokens;
    outputTokens = perOutput * protocol.outputCount(body);
  }
  const usage = usageOf(prompt.promptTokens, outputTokens, { audioPromptTokens: prompt.audioPromptTokens });
  return { ...prompt, outputTokens, uncapped, costUsd: costOf(price, usage) };
}

/** Whether the request writes output: its route says so, or (a route llmux does not know) its body looks it. */
function generates(ctx: RequestContext, body: Record<string, unknown>): boolean {
  const operation = ctx.route?.operation;
  if (operation !== undefined) return operation === 'generate';
  return body.messages !== undefined || body.prompt !== undefined;
}

/**
 * What to bill a request that ended: the usage the upstream reported; for an answer that will not
 * carry it (a background response) or did not (an upstream that reports no usage on a JSON
 * answer it served), the whole reservation; for a stream that ended without it
 * (the client left, the upstream cut it), the prompt estimate plus the chunks relayed, at most the
 * output reserved; nothing when no byte of an answer reached the client.
 */
export function billOf(ctx: RequestContext, reservation: Reservation, status: number): Usage {
  const usage = ctx.usage;
  if (usage !== undefined && !ctx.usagePartial) return usage;
  const body = ctx.body;
  // Only an answer that reached the client is billed without its usage (a response's status is
  // 200 until one is sent, even for a request that never went upstream).
  const answered = ctx.firstByteAt !== undefined;
  const served = answered && status >= 200 && status < 300;
  // A JSON answer went out whole without usage: what it cost is unknown, so it is billed as
  // reserved, never a silent zero.
  if (body !== undefined && served && (!ctx.stream || ctx.protocol.deferredUsage(body))) {
    return usageOf(reservation.promptTokens, reservation.outputTokens, {
      audioPromptTokens: reservation.audioPromptTokens,
    });
  }
  if (answered && ctx.stream) {
    // Frames are not tokens (OpenAI's role-only first chunk, its empty finish chunk): no answer
    // holds more output than its cap, so the count never bills past what was reserved. A route
    // llmux does not know reserved no output: its count stands, never a silent zero.
    const reserved = reservation.outputTokens;
    const output = reserved > 0 ? Math.min(ctx.streamedChunks, reserved) : ctx.streamedChunks;
    // A stream cut after its input counts (Anthropic's message_start) but before its output ones:
    // those input counts, and at least the output relayed.
    if (usage !== undefined)
      return usageOf(usage.promptTokens, Math.max(usage.completionTokens, output), usage);
    return usageOf(reservation.promptTokens, output, {
      audioPromptTokens: reservation.audioPromptTokens,
    });
  }
  return usage ?? usageOf(0, 0);
}
