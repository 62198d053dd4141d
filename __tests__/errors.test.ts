import { describe, expect, it } from '@jest/globals';
import { decodeUpstreamError, LlmuxError, errors } from '../lib/index.js';

describe('decodeUpstreamError', () => {
  it.each([
    [
      400,
      '{"error":{"message":"bad","type":"invalid_request_error","code":"x","param":"messages"}}',
      'invalid_request',
      400,
      'x',
    ],
    [401, '{"error":{"message":"Incorrect API key sk-abcdefgh1234"}}', 'auth', 502, 'upstream_auth_error'],
    [429, '{"error":{"message":"slow down"}}', 'rate_limit', 429, 'rate_limited'],
    [500, '{"error":{"message":"boom"}}', 'server', 502, 'upstream_error'],
    [500, '', 'decode', 502, 'upstream_decode_error'],
    [503, '<html>bad gateway</html>', 'decode', 502, 'upstream_decode_error'],
    [200, '{"error":{"message":"quota","type":"rate_limit_error"}}', 'rate_limit', 429, 'rate_limited'],
    [200, '{"error":"plain string"}', 'server', 502, 'upstream_error'],
  ])('status %i body %s is %s → %i %s', (status, body, category, clientStatus, code) => {
    const decoded = decodeUpstreamError(status, body);
    expect(decoded.category).toBe(category);
    expect(decoded.error.status).toBe(clientStatus);
    expect(decoded.error.code).toBe(code);
  });

  it('keeps the upstream status in a decode error message', () => {
    expect(decodeUpstreamError(503, '').error.message).toContain('503');
  });

  it('never passes an upstream key through to the client', () => {
    const decoded = decodeUpstreamError(400, '{"error":{"message":"key sk-live-abcdefghijkl is bad"}}');
    expect(decoded.error.message).not.toContain('abcdefghijkl');
  });
});

describe('LlmuxError', () => {
  it('renders the OpenAI error shape', () => {
    expect(errors.invalidApiKey().toJSON()).toEqual({
      error: {
        message: 'Invalid API key provided.',
        type: 'authentication_error',
        code: 'invalid_api_key',
        param: null,
      },
    });
  });

  it('sets Retry-After on 429 and 503 by default', () => {
    expect(
      new LlmuxError('x', { status: 429, type: 'rate_limit_error', code: 'rate_limited' }).retryAfterSeconds,
    ).toBe(1);
    expect(errors.overloaded().retryAfterSeconds).toBe(1);
    expect(errors.invalidApiKey().retryAfterSeconds).toBeUndefined();
  });
});
