// One UpstreamSource that sends each protocol's requests to its own upstream (Anthropic Messages
// to Anthropic, the rest to an OpenAI-compatible one): the relay stays one, the routing is here.
import type { RequestContext } from '../context.js';
import type { LlmuxError } from '../errors/llmux-error.js';
import type { ProtocolName } from '../protocol/types.js';
import type { AttemptOutcome, ServedModel, UpstreamEndpoint, UpstreamSource } from './source.js';

/** An {@link UpstreamSource} choosing among sources by the request's protocol. */
export class ProtocolSources implements UpstreamSource {
  /** Which source handed out an endpoint, so its release goes back there. */
  private readonly owners = new WeakMap<UpstreamEndpoint, UpstreamSource>();

  constructor(
    private readonly defaultSource: UpstreamSource,
    private readonly byProtocol: ReadonlyMap<ProtocolName, UpstreamSource>,
  ) {}

  /** Every distinct source, the default first. */
  get sources(): readonly UpstreamSource[] {
    return [...new Set([this.defaultSource, ...this.byProtocol.values()])];
  }

  acquire(ctx: RequestContext, exclude?: UpstreamEndpoint): UpstreamEndpoint {
    const source = this.sourceOf(ctx);
    const endpoint = source.acquire(ctx, exclude);
    this.owners.set(endpoint, source);
    return endpoint;
  }

  fallback(ctx: RequestContext, outcome: AttemptOutcome, error: LlmuxError): boolean {
    return this.sourceOf(ctx).fallback?.(ctx, outcome, error) ?? false;
  }

  servedModels(ctx: RequestContext): readonly ServedModel[] {
    const source = this.sourceOf(ctx);
    if (source.servedModels !== undefined) return source.servedModels(ctx);
    return ctx.model === undefined ? [] : [{ model: ctx.model, price: undefined }];
  }

  hasAlternative(ctx: RequestContext, endpoint: UpstreamEndpoint): boolean {
    return this.sourceOf(ctx).hasAlternative?.(ctx, endpoint) ?? false;
  }

  private sourceOf(ctx: RequestContext): UpstreamSource {
    return this.byProtocol.get(ctx.protocol.name) ?? this.defaultSource;
  }

  release(endpoint: UpstreamEndpoint, outcome: AttemptOutcome): void {
    (this.owners.get(endpoint) ?? this.defaultSource).release(endpoint, outcome);
  }
}
