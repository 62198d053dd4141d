// Anthropic's error body `{"type":"error","error":{"type","message"}}` with the error type Anthropic
// uses for each status (the library's own table: one place knows Anthropic's error types).
import { anthropicErrorType } from '../../../protocol/anthropic-messages.js';

/** The Anthropic error body for `status`. Anthropic has no error codes, so the mock's code is not sent. */
export function anthropicErrorBody(status: number, message: string): string {
  return JSON.stringify({ type: 'error', error: { type: anthropicErrorType(status), message } });
}
