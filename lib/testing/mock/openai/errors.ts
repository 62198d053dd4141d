// OpenAI's error body `{"error":{"message","type","code","param"}}` with the type and code OpenAI
// uses for each status.

function errorTypeAndCode(status: number): [type: string, code: string] {
  switch (status) {
    case 401:
      return ['authentication_error', 'invalid_api_key'];
    case 403:
      return ['permission_error', 'permission_denied'];
    case 404:
      return ['invalid_request_error', 'not_found'];
    case 408:
      return ['timeout_error', 'request_timeout'];
    case 413:
      return ['invalid_request_error', 'body_too_large'];
    case 429:
      return ['rate_limit_error', 'rate_limit_exceeded'];
    case 503:
      return ['server_error', 'service_unavailable'];
    case 504:
      return ['timeout_error', 'gateway_timeout'];
    default:
      return status < 500 ? ['invalid_request_error', 'invalid_request'] : ['server_error', 'server_error'];
  }
}

/** The OpenAI error body for `status`; `code` and `param` override the status's defaults. */
export function openAiErrorBody(
  status: number,
  message: string,
  code?: string,
  param: string | null = null,
): string {
  const [type, defaultCode] = errorTypeAndCode(status);
  return JSON.stringify({ error: { message, type, code: code ?? defaultCode, param } });
}
