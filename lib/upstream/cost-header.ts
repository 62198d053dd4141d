// The cost of a request as the client may see it (`keyAuth({ exposeCost })`): one header name and
// one number format for the JSON header, the stream's trailer and its last comment.

/** The header (and trailer) that carries a request's cost in USD. */
export const COST_HEADER = 'x-llmux-cost-usd';

/** A cost in USD as the header shows it: fixed, 10 decimals, never in exponent form. */
export function formatUsd(usd: number): string {
  return Number.isFinite(usd) && usd > 0 ? usd.toFixed(10) : '0';
}
