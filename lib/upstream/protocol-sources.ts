// One UpstreamSource that sends each protocol's requests to its own upstream (Anthropic Messages
// to Anthropic, the rest to an OpenAI-compatible one): the relay stays one, the routing is here.
import type { RequestContext } from '../context.js';
import type { ProtocolName } from '../protocol/types.js';
import type { AttemptOutcome, UpstreamEndpoint, UpstreamSource } from './source.js';

/** An {@link UpstreamSource} choosing among sources by the request's protocol. */
export class ProtocolSources implements UpstreamSource {
  /** Which source handed out an endpoint, so its release goes back there. */
  private readonly owners = new WeakMap<UpstreamEndpoint, UpstreamSource>();

  constructor(
    private readonly fallback: UpstreamSource,
    private readonly byProtocol: ReadonlyMap<ProtocolName, UpstreamSource>,
  ) {}

  /** Every distinct source, the fallback first. */
  get sources(): readonly UpstreamSource[] {
    return [...new Set([this.fallback, ...this.byProtocol.values()])];
  }

  acquire(ctx: RequestContext, exclude?: UpstreamEndpoint): UpstreamEndpoint {
    const source = this.byProtocol.get(ctx.protocol.name) ?? this.fallback;
    const endpoint = source.acquire(ctx, exclude);
    this.owners.set(endpoint, source);
    return endpoint;
  }

  release(endpoint: UpstreamEndpoint, outcome: AttemptOutcome): void {
    (this.owners.get(endpoint) ?? this.fallback).release(endpoint, outcome);
  }
}
