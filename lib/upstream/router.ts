// Model groups behind one UpstreamSource: the model a client asks for (exact, alias or glob) picks
// a group of deployments, the group's pool picks one by health and strategy, and when a group
// cannot serve (every member cooling, or an attempt failed before its first byte) the request
// falls back to the next group of an ordered list. One UpstreamPool holds every deployment, so
// health pages, metrics and `sharePoolState` see one pool.
import { FALLBACKS_HEADER, type RequestContext } from '../context.js';
import { LlmuxError, llmuxError } from '../errors/llmux-error.js';
import { globMatches } from '../keys/glob.js';
import { OptionReader } from '../options.js';
import type { ModelPrice } from '../pricing/price.js';
import type { UpstreamHealth } from './endpoint-health.js';
import {
  UpstreamPool,
  type PooledUpstreamOptions,
  type UpstreamPoolCooldownOptions,
  type UpstreamStatus,
} from './pool.js';
import type { AttemptOutcome, ServedModel, UpstreamEndpoint, UpstreamSource } from './source.js';
import type { UpstreamStrategy, UpstreamStrategyName } from './strategies.js';

/** One deployment of a group: an upstream, its key, the model it is asked for, its limits. */
export type ModelDeployment = PooledUpstreamOptions;

/** A group of deployments that serve the same model, and where to go when they cannot. */
export interface ModelGroup {
  /** The group's name: a model clients may ask for, and what `fallbacks` name. Unique. */
  name: string;
  /**
   * Other model names that route here: exact names (aliases, matched in any case) and globs
   * where `*` matches any run of characters (`gpt-4o-*`). Exact names of every group win over
   * globs; globs are tried in group order. Default: none.
   */
  models?: readonly string[];
  /** The deployments, at least one. Names unique over the router; default `<group>#<index>`. */
  deployments: readonly ModelDeployment[];
  /**
   * Groups tried in order when this one cannot serve: every member cooling or at a limit, an
   * attempt that failed before the first byte reached the client and that no retry in this group
   * follows (429, 5xx, timeout, network, a refused relay key, an unreadable answer), or a prompt
   * over the model's context window. Never on the request's own error. Default: none.
   */
  fallbacks?: readonly string[];
}

/** Options of {@link modelRouter}. */
export interface ModelRouterOptions {
  /** The groups, at least one. */
  groups: readonly ModelGroup[];
  /**
   * The group serving requests that name no model (`GET /v1/models`, a stored response) or a
   * model no group matches. Default: none: such a model is refused (404 `model_not_found`) and a
   * request without a model goes to the first group.
   */
  defaultGroup?: string;
  /**
   * Let clients choose, per request, which of the group's configured `fallbacks` to try and in
   * what order: the `x-llmux-fallbacks` header lists group names (comma separated), or `none`.
   * A name outside the group's `fallbacks` is refused (400), so a client can never reach a model
   * its key was not admitted for. Default false: the header is ignored.
   */
  clientFallbacks?: boolean;
  /** How each group's pool chooses among its healthy deployments. Default `'round-robin'`. */
  strategy?: UpstreamStrategyName | UpstreamStrategy;
  /** Cooldowns after failures, as `UpstreamPoolOptions.cooldown`. */
  cooldown?: UpstreamPoolCooldownOptions;
  /** The current time in epoch ms; injectable for tests. Default `Date.now`. */
  clock?: () => number;
  /** A number in `[0, 1)` for random picks; injectable for tests. Default `Math.random`. */
  random?: () => number;
}

/** One model of {@link ModelRouter.listModels}, in OpenAI's shape. */
export interface RoutedModelEntry {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
}

interface ResolvedGroup {
  readonly name: string;
  readonly members: readonly UpstreamHealth[];
  readonly fallbacks: readonly ResolvedGroup[];
  /** Every model its deployments may be asked for; undefined entries mean "the client's model". */
  readonly served: readonly { model: string | undefined; price: ModelPrice | undefined }[];
}

/** One request's route: the groups in the order to try, and the one being tried. */
interface Plan {
  readonly groups: readonly ResolvedGroup[];
  step: number;
  /** The request matched its group by a glob: its deployments get the client's model, not the group's name. */
  readonly byGlob: boolean;
}

const OWNER = 'modelRouter';

/**
 * An {@link UpstreamSource} that routes by model. Each group is served by its own deployments;
 * a deployment's `model` is written into the request in place of the client's, and the request is
 * billed, tracked and answered (`x-llmux-model`) as that model. Give the same router to `keyAuth`
 * (`router` option) so the reservation covers the dearest model a request may be served by.
 *
 * @example
 * const router = modelRouter({
 *   groups: [
 *     { name: 'gpt-4o', models: ['gpt-4o-2024-*'], fallbacks: ['claude-sonnet'],
 *       deployments: [
 *         { url: 'https://api.openai.com/v1', apiKey: process.env.OPENAI_KEY },
 *         { url: 'https://my.openai.azure.com/openai/v1', apiKey: process.env.AZURE_KEY, model: 'gpt-4o-prod' },
 *       ] },
 *     { name: 'claude-sonnet', deployments: [
 *         { url: 'https://api.anthropic.com/v1', apiKey: process.env.ANTHROPIC_KEY, model: 'claude-sonnet-4-5' },
 *       ] },
 *   ],
 * });
 */
export class ModelRouter implements UpstreamSource {
  /** The one pool of every deployment: for `status()`, `enable()`, metrics and `sharePoolState`. */
  readonly pool: UpstreamPool;
  private readonly groups: readonly ResolvedGroup[];
  private readonly exact = new Map<string, ResolvedGroup>();
  /** Group names and exact aliases as written, in option order. */
  private readonly exactNames = new Set<string>();
  private readonly globs: { pattern: string; group: ResolvedGroup }[] = [];
  private readonly defaultGroup: ResolvedGroup | undefined;
  private readonly clientFallbacks: boolean;
  private readonly plans = new WeakMap<RequestContext, Plan>();

  constructor(options: ModelRouterOptions) {
    const read: OptionReader = new OptionReader(OWNER);
    read.options(options, true);
    if (!Array.isArray(options.groups) || options.groups.length === 0) {
      read.fail('groups', 'a non-empty array', options.groups);
    }
    const specs = options.groups.map((group, i) => checkGroup(read, group, i));
    const names = new Set<string>();
    for (const spec of specs) {
      if (names.has(spec.name)) read.fail('groups[].name', 'unique', spec.name);
      names.add(spec.name);
    }
    this.pool = new UpstreamPool({
      upstreams: specs.flatMap((spec) =>
        spec.deployments.map((d, i) => ({ ...d, name: d.name ?? `${spec.name}#${i}` })),
      ),
      strategy: options.strategy,
      cooldown: options.cooldown,
      clock: options.clock,
      random: options.random,
    });
    const built = new Map<
      string,
      {
        name: string;
        members: readonly UpstreamHealth[];
        fallbacks: ResolvedGroup[];
        served: ResolvedGroup['served'];
      }
    >();
    for (const spec of specs) {
      const members = this.pool.membersNamed(spec.deployments.map((d, i) => d.name ?? `${spec.name}#${i}`));
      built.set(spec.name, {
        name: spec.name,
        members,
        fallbacks: [],
        served: members.map((h) => ({ model: h.endpoint.model, price: h.endpoint.price })),
      });
    }
    for (const spec of specs) {
      const group = built.get(spec.name)!;
      for (const fallback of spec.fallbacks) {
        const target = built.get(fallback);
        if (target === undefined) read.fail(`groups.${spec.name}.fallbacks`, 'names of groups', fallback);
        if (target === group)
          read.fail(`groups.${spec.name}.fallbacks`, 'other groups than itself', fallback);
        group.fallbacks.push(target);
      }
    }
    this.groups = specs.map((spec) => built.get(spec.name)!);
    for (const [i, spec] of specs.entries()) {
      const group = this.groups[i]!;
      for (const model of [spec.name, ...spec.models]) {
        if (model.includes('*')) {
          this.globs.push({ pattern: model.toLowerCase(), group });
          continue;
        }
        const key = model.toLowerCase();
        const owner = this.exact.get(key);
        if (owner !== undefined && owner !== group) {
          read.fail(`groups.${spec.name}.models`, `names no other group has (${owner.name} has it)`, model);
        }
        this.exact.set(key, group);
        this.exactNames.add(model);
      }
    }
    this.defaultGroup =
      options.defaultGroup === undefined
        ? undefined
        : (built.get(read.oneOf('defaultGroup', options.defaultGroup, [...built.keys()])) as ResolvedGroup);
    this.clientFallbacks = read.boolean('clientFallbacks', options.clientFallbacks, false);
  }

  /**
   * The models a request may be served by (its group's and its fallbacks'), each with its
   * deployment's own price when it has one: what key auth reserves for, at the dearest.
   *
   * @throws LlmuxError 404 `model_not_found` when no group serves the model; 400 for a bad
   *   `x-llmux-fallbacks`.
   */
  servedModels(ctx: RequestContext): readonly ServedModel[] {
    const served: ServedModel[] = [];
    const plan = this.planOf(ctx);
    for (let step = 0; step < plan.groups.length; step++) {
      for (const s of plan.groups[step]!.served) {
        const model = s.model ?? this.modelOf(ctx, plan, step);
        if (model === undefined) continue;
        if (!served.some((m) => m.model === model && m.price === s.price))
          served.push({ model, price: s.price });
      }
    }
    return served;
  }

  /**
   * The next endpoint of the request's group; when the group has none that can serve, the first
   * fallback group that has one (the request then stays there).
   */
  acquire(ctx: RequestContext, exclude?: UpstreamEndpoint): UpstreamEndpoint {
    const plan = this.planOf(ctx);
    let firstError: unknown;
    for (; plan.step < plan.groups.length; plan.step++) {
      try {
        const endpoint = this.pool.acquireAmong(plan.groups[plan.step]!.members, exclude);
        ctx.routedModel = this.modelOf(ctx, plan, plan.step);
        return endpoint;
      } catch (err) {
        if (!(err instanceof LlmuxError) || err.code !== 'no_upstream_available') throw err;
        firstError ??= err;
      }
    }
    plan.step = plan.groups.length - 1;
    throw firstError;
  }

  /** Whether the request's group, or a fallback after it, has an endpoint besides `endpoint` that can serve now. */
  hasAlternative(ctx: RequestContext, endpoint: UpstreamEndpoint): boolean {
    const plan = this.planOf(ctx);
    for (let step = plan.step; step < plan.groups.length; step++) {
      if (this.pool.anyServable(plan.groups[step]!.members, endpoint)) return true;
    }
    return false;
  }

  release(endpoint: UpstreamEndpoint, outcome: AttemptOutcome): void {
    this.pool.release(endpoint, outcome);
  }

  /**
   * Moves the request to its next fallback group after a failed attempt, when the failure allows
   * it (nothing reached the client, and it was the upstream's: a 429, 5xx, timeout or network
   * failure; or a prompt over the context window). Returns false when it does not move.
   */
  fallback(ctx: RequestContext, outcome: AttemptOutcome, error: LlmuxError): boolean {
    if (outcome.ok || outcome.category === 'cancelled') return false;
    if (outcome.category === 'invalid_request' && error.code !== 'context_length_exceeded') return false;
    const plan = this.planOf(ctx);
    if (plan.step + 1 >= plan.groups.length) return false;
    plan.step++;
    return true;
  }

  /**
   * The models this router serves, as OpenAI's `GET /v1/models` lists them: each group's name and
   * its exact aliases (globs are not models). With `id`, that one model, or undefined.
   */
  listModels(): { object: 'list'; data: RoutedModelEntry[] };
  listModels(id: string): RoutedModelEntry | undefined;
  listModels(id?: string): { object: 'list'; data: RoutedModelEntry[] } | RoutedModelEntry | undefined {
    const entry = (name: string): RoutedModelEntry => ({
      id: name,
      object: 'model',
      created: 0,
      owned_by: 'llmux',
    });
    if (id !== undefined) return this.exact.has(id.toLowerCase()) ? entry(id) : undefined;
    return { object: 'list', data: [...this.exactNames].map(entry) };
  }

  /** Every deployment, as `UpstreamPool.status()`. */
  status(): UpstreamStatus[] {
    return this.pool.status();
  }

  /** Same as {@link status}. */
  toJSON(): UpstreamStatus[] {
    return this.pool.status();
  }

  /** The group names, in option order. */
  get groupNames(): readonly string[] {
    return this.groups.map((g) => g.name);
  }

  private planOf(ctx: RequestContext): Plan {
    let plan = this.plans.get(ctx);
    if (plan === undefined) {
      const { group, byGlob } = this.groupFor(ctx.model);
      plan = { groups: [group, ...this.fallbacksOf(group, ctx.fallbacksHeader)], step: 0, byGlob };
      this.plans.set(ctx, plan);
    }
    return plan;
  }

  /**
   * The model asked of a deployment of the plan's group `step` that names none: the group's name
   * (an alias is never sent upstream), or the client's model when a glob matched it (`gpt-4o-*`
   * routes a family, each member by its own name). A request without a model keeps none.
   */
  private modelOf(ctx: RequestContext, plan: Plan, step: number): string | undefined {
    if (ctx.model === undefined || (step === 0 && plan.byGlob)) return ctx.model;
    return plan.groups[step]!.name;
  }

  private groupFor(model: string | undefined): { group: ResolvedGroup; byGlob: boolean } {
    if (model === undefined) return { group: this.defaultGroup ?? this.groups[0]!, byGlob: true };
    const key = model.toLowerCase();
    const exact = this.exact.get(key);
    if (exact !== undefined) return { group: exact, byGlob: false };
    for (const { pattern, group } of this.globs)
      if (globMatches(pattern, key)) return { group, byGlob: true };
    // The default group serves a model it does not name as that model.
    if (this.defaultGroup !== undefined) return { group: this.defaultGroup, byGlob: true };
    throw llmuxError('model_not_found', {
      message: `model ${JSON.stringify(model)} is not served here`,
      param: 'model',
    });
  }

  private fallbacksOf(group: ResolvedGroup, header: string | undefined): readonly ResolvedGroup[] {
    if (!this.clientFallbacks || header === undefined) return group.fallbacks;
    const text = header.trim();
    if (text.toLowerCase() === 'none') return [];
    const chosen: ResolvedGroup[] = [];
    for (const name of text.split(',')) {
      const wanted = name.trim();
      const fallback = group.fallbacks.find((g) => g.name === wanted);
      if (fallback === undefined) {
        throw llmuxError('invalid_request', {
          message: `${FALLBACKS_HEADER}: ${JSON.stringify(wanted.slice(0, 64))} is not a fallback of ${group.name} (allowed: ${group.fallbacks.map((g) => g.name).join(', ') || 'none'})`,
          param: FALLBACKS_HEADER,
        });
      }
      if (!chosen.includes(fallback)) chosen.push(fallback);
    }
    return chosen;
  }
}

/**
 * Creates a {@link ModelRouter}; see there for the behaviour and an example.
 */
export function modelRouter(options: ModelRouterOptions): ModelRouter {
  return new ModelRouter(options);
}

interface GroupSpec {
  name: string;
  models: readonly string[];
  deployments: readonly ModelDeployment[];
  fallbacks: readonly string[];
}

function checkGroup(read: OptionReader, group: ModelGroup, index: number): GroupSpec {
  const at = `groups[${index}]`;
  if (typeof group !== 'object' || group === null) read.fail(at, 'an object', group);
  const name = read.string(`${at}.name`, group.name);
  if (name.length === 0 || name.includes('*') || name.includes(',')) {
    read.fail(`${at}.name`, 'a non-empty name without * or ,', name);
  }
  const list = (field: 'models' | 'fallbacks'): readonly string[] => {
    const value = group[field] ?? [];
    if (!Array.isArray(value) || !value.every((v) => typeof v === 'string' && v.length > 0)) {
      read.fail(`${at}.${field}`, 'an array of non-empty strings', value);
    }
    return value;
  };
  if (!Array.isArray(group.deployments) || group.deployments.length === 0) {
    read.fail(`${at}.deployments`, 'a non-empty array', group.deployments);
  }
  return { name, models: list('models'), deployments: group.deployments, fallbacks: list('fallbacks') };
}
