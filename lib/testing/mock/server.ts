// The HTTP side of the mock: one node:http server per mock, its connections counted, and a close()
// that cancels every exchange, cuts every socket and waits until each is gone.
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { ResolvedBehaviour } from './behaviour.js';
import { BehaviourQueue } from './behaviour-queue.js';
import { Exchange, type ExchangeOwner } from './exchange.js';
import { MockRequest, MockResponse } from './http-classes.js';
import type { ResolvedOptions } from './options.js';
import { RequestRecorder } from './recorder.js';
import { ResponseStore } from './response-store.js';
import type {
  MockBehaviour,
  MockBehaviourFactory,
  MockUpstream,
  MockUpstreamEvent,
  RecordedRequest,
} from './types.js';

/** The server behind {@link MockUpstream}; one instance per `createMockUpstream` call, nothing shared. */
export class MockUpstreamServer implements MockUpstream, ExchangeOwner {
  readonly maxBodyBytes: number;
  readonly responses: ResponseStore;
  private readonly config: ResolvedOptions;
  private readonly server: Server<typeof MockRequest, typeof MockResponse>;
  private readonly behaviours = new BehaviourQueue();
  private readonly recorder: RequestRecorder;
  private readonly active = new Set<Exchange>();
  private sockets = 0;
  private onAllSocketsClosed: (() => void) | undefined = undefined;
  private boundPort = 0;
  private closing: Promise<void> | undefined = undefined;

  constructor(config: ResolvedOptions) {
    this.config = config;
    this.maxBodyBytes = config.maxBodyBytes;
    this.recorder = new RequestRecorder(config.maxRecorded);
    this.responses = new ResponseStore(config.maxStoredResponses);
    this.server = createServer(
      {
        IncomingMessage: MockRequest,
        ServerResponse: MockResponse,
        keepAliveTimeout: config.keepAliveTimeoutMs,
      },
      this.onRequest,
    );
    this.server.keepAliveTimeout = config.keepAliveTimeoutMs;
    this.server.on('connection', this.onConnection);
  }

  get url(): string {
    const host = this.config.host.includes(':') ? `[${this.config.host}]` : this.config.host;
    return `http://${host}:${this.boundPort}`;
  }

  get port(): number {
    return this.boundPort;
  }

  get requests(): readonly RecordedRequest[] {
    return this.recorder.requests;
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(
        { port: this.config.port, host: this.config.host, backlog: this.config.backlog },
        () => {
          this.server.off('error', reject);
          this.boundPort = (this.server.address() as AddressInfo).port;
          resolve();
        },
      );
    });
  }

  enqueue(...behaviours: MockBehaviour[]): void {
    this.behaviours.enqueue(behaviours);
  }

  setBehaviour(behaviour: MockBehaviour | MockBehaviourFactory | undefined): void {
    this.behaviours.setDefault(behaviour);
  }

  pendingBehaviours(): number {
    return this.behaviours.pending;
  }

  reset(): void {
    this.behaviours.clear();
    this.recorder.reset();
    this.responses.clear(); // ids restart with seq, so old responses would answer for new ones
  }

  on(event: MockUpstreamEvent, listener: (request: RecordedRequest) => void): this {
    this.recorder.on(event, listener);
    return this;
  }

  off(event: MockUpstreamEvent, listener: (request: RecordedRequest) => void): this {
    this.recorder.off(event, listener);
    return this;
  }

  waitForSettled(count: number, timeoutMs?: number): Promise<RecordedRequest[]> {
    return this.recorder.waitForSettled(count, timeoutMs);
  }

  openConnections(): number {
    return this.sockets;
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  takeQueued(): ResolvedBehaviour | undefined {
    return this.behaviours.take();
  }

  defaultBehaviourFor(record: RecordedRequest): ResolvedBehaviour {
    return this.behaviours.defaultFor(record);
  }

  emitRecord(event: MockUpstreamEvent, record: RecordedRequest): void {
    this.recorder.emit(event, record);
  }

  onSettled(exchange: Exchange): void {
    this.active.delete(exchange);
    this.recorder.settled(exchange.record, exchange.generation);
  }

  private readonly onRequest = (req: MockRequest, res: MockResponse): void => {
    const record = this.recorder.open(req.method ?? 'GET', req.url ?? '/', req.headers);
    const exchange = new Exchange(this, req, res, record, this.recorder.generation);
    this.active.add(exchange);
    exchange.start();
  };

  private readonly onConnection = (socket: Socket): void => {
    this.sockets++;
    socket.once('close', this.onSocketClose);
  };

  private readonly onSocketClose = (): void => {
    this.sockets--;
    if (this.sockets === 0) this.onAllSocketsClosed?.();
  };

  private async shutdown(): Promise<void> {
    this.recorder.refuseNewWaits();
    for (const exchange of this.active) exchange.cancel();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
    // The server may report 'close' before the sockets' own 'close' events ran; wait for them too.
    if (this.sockets > 0) await new Promise<void>((resolve) => (this.onAllSocketsClosed = resolve));
    this.onAllSocketsClosed = undefined;
    for (const exchange of this.active) exchange.settle(); // in case a socket's 'close' has not reached it yet
    this.recorder.rejectWaiters();
  }
}
