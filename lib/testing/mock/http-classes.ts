// Node's request and response classes with a slot each, so the listeners shared by every exchange
// reach their exchange or stream writer through `this` instead of a closure per request.
import { IncomingMessage, ServerResponse } from 'node:http';
import type { Exchange } from './exchange.js';
import type { SseWriter } from './sse-writer.js';

/** The request of one exchange. */
export class MockRequest extends IncomingMessage {
  exchange: Exchange | undefined = undefined;
}

/** The response of one exchange; `writer` is set while it streams. */
export class MockResponse extends ServerResponse<MockRequest> {
  writer: SseWriter | undefined = undefined;
}
