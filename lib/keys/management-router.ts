// The management API: REST over JSON for keys, teams, users and spend reports, behind an admin key
// compared in constant time. Bodies are bounded and validated strictly; secrets never leave it twice.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import express from 'express';
import type { Request, Response } from 'express';
import { ensureContext, getContext, socketAddress } from '../context.js';
import { OptionReader } from '../options.js';
import { errors, LlmuxError, sendError, llmuxError } from '../errors/llmux-error.js';
import { bodyLimit } from '../middleware/body-limit.js';
import { asyncHandler, recovery } from '../middleware/recovery.js';
import { stderrLogger, type Logger } from '../log.js';
import { redactSecrets } from '../redact.js';
import { isStoreUnavailableError } from '../errors/store.js';
import { isKeyStoreError } from './errors.js';
import { generateApiKey } from './generate.js';
import { hashApiKey } from './hash.js';
import { RECORD_FIELDS } from './validate.js';
import type {
  ApiKey,
  KeyStore,
  NewApiKey,
  NewTeam,
  NewUser,
  SpendQuery,
  SpendRow,
  Team,
  User,
} from './types.js';

type Next = (err?: unknown) => void;

/** Options of {@link managementRouter}. */
export interface ManagementRouterOptions {
  /** Where keys, teams, users and spend live. */
  store: KeyStore;
  /** The admin secret expected in `Authorization: Bearer …`; at least 16 characters. */
  adminKey: string;
  /**
   * Secret for HMAC-SHA-256 key hashes; must be the pepper `keyAuth` and the store use, or the
   * keys created here will never authenticate. Default: none (plain SHA-256).
   */
  pepper?: string;
  /** Current time in ms since the epoch; used to refuse keys created already expired. Default `Date.now`. */
  clock?: () => number;
  /** Receives one event per unexpected (5xx) failure. Default: JSON lines on stderr. */
  logger?: Logger;
  /**
   * After too many wrong admin keys from one address (the store's failed-auth limiter, counted
   * apart from client keys), further failures from it get 429 `too_many_auth_failures`; the right
   * admin key is always let in. Default true.
   */
  limitFailedAuth?: boolean;
  /** The address the limiter counts by. Default: the socket's remote address. */
  clientAddress?: (req: IncomingMessage) => string;
}

/** A key as the management API shows it: never its hash, never its secret. */
export interface PublicApiKey {
  id: string;
  name: string;
  /** The first characters of the secret (`sk-llmux-AbCd`). */
  prefix: string;
  /** Team id, or null. */
  team: string | null;
  /** User id, or null. */
  user: string | null;
  /** Model allow-list, or null for every model. */
  models: string[] | null;
  budgetUsd: number | null;
  spendUsd: number;
  spendByModel: Record<string, number>;
  rpm: number | null;
  tpm: number | null;
  maxParallel: number | null;
  dailyRequests: number | null;
  dailyTokens: number | null;
  /** ISO 8601 (UTC), or null when the key never expires. */
  expiresAt: string | null;
  revoked: boolean;
  /** ISO 8601 (UTC). */
  createdAt: string;
  metadata: Record<string, unknown> | null;
}

/** The answer to `POST /keys`: the public view plus the plaintext `key`, shown this once only. */
export interface CreatedApiKey extends PublicApiKey {
  /** The secret (`sk-llmux-…`). Only its hash is stored; it cannot be shown again. */
  key: string;
}

/** A team as the management API shows it. */
export interface PublicTeam {
  id: string;
  name: string;
  models: string[] | null;
  budgetUsd: number | null;
  spendUsd: number;
  spendByModel: Record<string, number>;
  rpm: number | null;
  tpm: number | null;
  /** ISO 8601 (UTC). */
  createdAt: string;
  metadata: Record<string, unknown> | null;
}

/** A user as the management API shows it. */
export interface PublicUser extends PublicTeam {
  /** Team id, or null. */
  team: string | null;
}

/** The answer to `GET /spend`. */
export interface SpendReport {
  groupBy: SpendQuery['groupBy'];
  /** The `from` asked for, as ISO 8601 (UTC), or null. */
  from: string | null;
  /** The `to` asked for, as ISO 8601 (UTC), or null. */
  to: string | null;
  data: SpendRow[];
}

/** Largest management request body: 64 KiB. */
export const MANAGEMENT_MAX_BODY_BYTES = 64 * 1024;

const MIN_ADMIN_KEY_LENGTH = 16;
/** Longer Authorization headers are malformed; no admin key needs more. */
const MAX_AUTHORIZATION_LENGTH = 4096;
/** Field names echoed in errors are cut to this length. */
const MAX_ECHOED_FIELD_LENGTH = 100;
/** `YYYY-MM-DD`, or a date-time with seconds and fraction optional and an explicit zone. */
const ISO_INSTANT_PATTERN =
  /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(?:Z|([+-])(\d{2}):(\d{2})))?$/;
const GROUP_BYS: readonly SpendQuery['groupBy'][] = ['key', 'team', 'user', 'model'];
const MANAGED_PATHS = ['/keys', '/teams', '/users', '/spend'];

/** The API's names of store fields (`team` is the store's `teamId`). */
const API_NAMES: Readonly<Record<string, string>> = { teamId: 'team', userId: 'user' };
const STORE_NAMES: Readonly<Record<string, string>> = { team: 'teamId', user: 'userId' };
/** Store fields the API makes itself (the key's secret): never read from a body. */
const GENERATED_FIELDS: ReadonlySet<string> = new Set(['hash', 'prefix']);

/**
 * An Express Router serving the management API, guarded by `adminKey`:
 *
 * - `POST /keys` → 201 with the key's public view and the plaintext `key` (shown this once);
 *   `GET /keys`, `GET /keys/:id`, `PATCH /keys/:id`, `DELETE /keys/:id` (revokes; 200 with the view).
 * - The same for `/teams` and `/users`; their DELETE removes them and answers `{ id, deleted: true }`.
 * - `GET /spend?groupBy=key|team|user|model&from=&to=` (ISO 8601 dates, UTC days, inclusive).
 *
 * No or a malformed `Authorization: Bearer` header gets 401 `invalid_api_key`; any other bearer
 * (a client key, say) gets 403 `admin_required`. Bodies are JSON of at most 64 KiB and are read
 * strictly: an unknown field or a wrong type is 400 `invalid_request` with `param` naming the
 * field; `null` in a PATCH clears a limit. A new key's `expiresAt` must be in the future; a PATCH
 * may set a past one, which suspends the key without the permanence of a revocation. Unknown ids
 * are 404 `not_found`, duplicate ids 409 `duplicate_id`, deleting a team or user that keys or
 * users still reference 409 `in_use`, anything unexpected 500 `internal_error`: always the
 * OpenAI error shape.
 * Answers carry `Cache-Control: no-store`. The guard covers only the paths above, so mounting the
 * router at `/` does not lock the host's other routes.
 *
 * @example
 * app.use('/admin', managementRouter({ store, adminKey: process.env.LLMUX_ADMIN_KEY!, pepper }));
 * // curl -X POST localhost:3000/admin/keys -H "Authorization: Bearer $LLMUX_ADMIN_KEY" \
 * //   -H 'Content-Type: application/json' -d '{"name":"ci","models":["gpt-4o*"],"budgetUsd":5}'
 */
export function managementRouter(options: ManagementRouterOptions): express.Router {
  const settings = resolveOptions(options);
  const { store, pepper, clock } = settings;
  const readBody = bodyLimit({ maxBytes: MANAGEMENT_MAX_BODY_BYTES, parse: 'json' });
  const adminDigest = sha256(settings.adminKey);
  const router = express.Router();

  const guard = async (req: Request, res: Response, next: Next): Promise<void> => {
    const ctx = ensureContext(req, res);
    res.setHeader('Cache-Control', 'no-store');
    const token = bearerToken(req.headers.authorization);
    // Both sides hashed to 32 bytes: the comparison takes the same time whatever was presented.
    if (token !== undefined && timingSafeEqual(sha256(token), adminDigest)) {
      next();
      return;
    }
    if (settings.limitFailedAuth) {
      const address = `admin:${settings.clientAddress(req)}`;
      const now = clock();
      if ((await store.authFailureState(address, now)).blocked) {
        ctx.errorCode = 'too_many_auth_failures';
        sendError(res, llmuxError('too_many_auth_failures'));
        return;
      }
      await store.recordAuthFailure(address, now);
    }
    if (token === undefined) {
      ctx.errorCode = 'invalid_api_key';
      res.setHeader('WWW-Authenticate', 'Bearer');
      sendError(res, errors.invalidApiKey());
      return;
    }
    ctx.errorCode = 'admin_required';
    sendError(res, adminRequired());
  };
  router.use(MANAGED_PATHS, asyncHandler(guard));

  // Keys: the secret is generated here, hashed, and shown once; DELETE revokes (kept, for audit).
  router
    .route('/keys')
    .get(asyncHandler(async (_req: Request, res: Response) => listOf(res, await store.listKeys(), keyView)))
    .post(
      readBody,
      asyncHandler(async (req: Request, res: Response) => {
        const input = readBodyFields(bodyOf(res), 'key', 'create');
        if (input.expiresAt !== undefined && (input.expiresAt as number) <= clock()) {
          throw errors.invalidRequest('expiresAt must be in the future', 'expiresAt');
        }
        const generated = generateApiKey();
        const created = await store.createKey({
          ...input,
          hash: hashApiKey(generated.key, pepper),
          prefix: generated.prefix,
        } as NewApiKey);
        const answer: CreatedApiKey = { ...keyView(created), key: generated.key };
        res.location(`${req.baseUrl}/keys/${encodeURIComponent(created.id)}`);
        res.status(201).json(answer);
      }),
    )
    .all(methodNotAllowed('GET, POST'));
  router
    .route('/keys/:id')
    .get(
      asyncHandler(async (req: Request, res: Response) =>
        oneOf(res, await store.getKey(idParam(req)), 'key', keyView),
      ),
    )
    .patch(
      readBody,
      asyncHandler(async (req: Request, res: Response) => {
        const patch = readBodyFields(bodyOf(res), 'key', 'patch');
        oneOf(res, await store.updateKey(idParam(req), patch), 'key', keyView);
      }),
    )
    .delete(
      asyncHandler(async (req: Request, res: Response) => {
        const id = idParam(req);
        if (!(await store.revokeKey(id))) throw errors.notFound('key');
        oneOf(res, await store.getKey(id), 'key', keyView);
      }),
    )
    .all(methodNotAllowed('GET, PATCH, DELETE'));

  // Teams and users: plain records with the same five routes; DELETE removes them.
  recordRoutes(router, readBody, {
    path: '/teams',
    what: 'team',
    view: teamView,
    list: () => store.listTeams(),
    get: (id) => store.getTeam(id),
    create: (fields) => store.createTeam(fields as NewTeam),
    update: (id, patch) => store.updateTeam(id, patch),
    remove: (id) => store.deleteTeam(id),
  });
  recordRoutes(router, readBody, {
    path: '/users',
    what: 'user',
    view: userView,
    list: () => store.listUsers(),
    get: (id) => store.getUser(id),
    create: (fields) => store.createUser(fields as NewUser),
    update: (id, patch) => store.updateUser(id, patch),
    remove: (id) => store.deleteUser(id),
  });

  router
    .route('/spend')
    .get(
      asyncHandler(async (req: Request, res: Response) => {
        const query = readSpendQuery(req.url);
        const rows = await store.spend(query);
        const report: SpendReport = {
          groupBy: query.groupBy,
          from: query.fromMs === undefined ? null : new Date(query.fromMs).toISOString(),
          to: query.toMs === undefined ? null : new Date(query.toMs).toISOString(),
          data: rows.map(spendRowView),
        };
        res.json(report);
      }),
    )
    .all(methodNotAllowed('GET'));

  // Deeper paths under ours (`/keys/a/b`) get a JSON 404 rather than the host's HTML page.
  router.use(MANAGED_PATHS, function llmuxManagementNotFound(req: Request, res: Response): void {
    ensureContext(req, res).errorCode = 'not_found';
    sendError(res, errors.notFound(`route ${req.method} ${req.baseUrl}${req.path}`));
  });

  const recover = recovery({ logger: settings.logger });
  router.use(function llmuxManagementErrors(err: unknown, req: Request, res: Response, next: Next): void {
    recover(fromStoreError(err), req, res, next);
  });
  return router;
}

interface ResolvedOptions {
  store: KeyStore;
  adminKey: string;
  pepper: string | undefined;
  clock: () => number;
  limitFailedAuth: boolean;
  clientAddress: (req: IncomingMessage) => string;
  logger: Logger;
}

const STORE_METHODS = [
  'createKey',
  'getKey',
  'listKeys',
  'updateKey',
  'revokeKey',
  'createTeam',
  'getTeam',
  'listTeams',
  'updateTeam',
  'deleteTeam',
  'createUser',
  'getUser',
  'listUsers',
  'updateUser',
  'deleteUser',
  'spend',
] as const;

function resolveOptions(options: ManagementRouterOptions): ResolvedOptions {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError('managementRouter: options are required');
  }
  const { store, adminKey, pepper, clock, logger } = options;
  if (typeof store !== 'object' || store === null) {
    throw new TypeError(`managementRouter: store must be a KeyStore, got ${String(store)}`);
  }
  for (const method of STORE_METHODS) {
    if (typeof store[method] !== 'function') {
      throw new TypeError(`managementRouter: store must be a KeyStore (it has no ${method} method)`);
    }
  }
  // The value itself is never echoed: it is a secret.
  if (typeof adminKey !== 'string' || adminKey.length < MIN_ADMIN_KEY_LENGTH) {
    throw new TypeError(
      `managementRouter: adminKey must be a string of at least ${MIN_ADMIN_KEY_LENGTH} characters, got ${
        typeof adminKey === 'string' ? `${adminKey.length} characters` : typeof adminKey
      }`,
    );
  }
  // A bearer token never holds white space or control characters: such a key could never match.
  if (/\s/.test(adminKey) || [...adminKey].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f)) {
    throw new TypeError('managementRouter: adminKey must not hold white space or control characters');
  }
  if (pepper !== undefined && (typeof pepper !== 'string' || pepper.length === 0)) {
    throw new TypeError(`managementRouter: pepper must be a non-empty string, got ${typeof pepper}`);
  }
  if (clock !== undefined && typeof clock !== 'function') {
    throw new TypeError(`managementRouter: clock must be a function, got ${typeof clock}`);
  }
  if (
    logger !== undefined &&
    (typeof logger !== 'object' || logger === null || typeof logger.error !== 'function')
  ) {
    throw new TypeError(`managementRouter: logger must have an error(message, fields) method`);
  }
  const read = new OptionReader('managementRouter');
  return {
    store,
    adminKey,
    pepper,
    clock: clock ?? Date.now,
    logger: logger ?? stderrLogger,
    limitFailedAuth: read.boolean('limitFailedAuth', options.limitFailedAuth, true),
    clientAddress: read.function('clientAddress', options.clientAddress, socketAddress),
  };
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** The token of `Authorization: Bearer <token>`, or undefined when absent or malformed. */
function bearerToken(header: string | undefined): string | undefined {
  if (typeof header !== 'string' || header.length > MAX_AUTHORIZATION_LENGTH) return undefined;
  if (header.length <= 7 || header.slice(0, 7).toLowerCase() !== 'bearer ') return undefined;
  const token = header.slice(7).trim();
  return token.length > 0 && !/\s/.test(token) ? token : undefined;
}

function adminRequired(): LlmuxError {
  return llmuxError('admin_required');
}

/** One kind of plain record (teams, users) and the store operations behind its routes. */
interface RecordRoutes<T> {
  path: string;
  what: 'team' | 'user';
  view: (record: T) => object;
  list(): Promise<T[]>;
  get(id: string): Promise<T | undefined>;
  create(fields: Record<string, unknown>): Promise<T & { id: string }>;
  update(id: string, patch: Record<string, unknown>): Promise<T | undefined>;
  remove(id: string): Promise<boolean>;
}

/** Mounts list, create, get, patch and delete for one kind of record. */
function recordRoutes<T>(
  router: express.Router,
  readBody: express.RequestHandler,
  spec: RecordRoutes<T>,
): void {
  router
    .route(spec.path)
    .get(asyncHandler(async (_req: Request, res: Response) => listOf(res, await spec.list(), spec.view)))
    .post(
      readBody,
      asyncHandler(async (req: Request, res: Response) => {
        const created = await spec.create(readBodyFields(bodyOf(res), spec.what, 'create'));
        res.location(`${req.baseUrl}${spec.path}/${encodeURIComponent(created.id)}`);
        res.status(201).json(spec.view(created));
      }),
    )
    .all(methodNotAllowed('GET, POST'));
  router
    .route(`${spec.path}/:id`)
    .get(
      asyncHandler(async (req: Request, res: Response) =>
        oneOf(res, await spec.get(idParam(req)), spec.what, spec.view),
      ),
    )
    .patch(
      readBody,
      asyncHandler(async (req: Request, res: Response) => {
        const patch = readBodyFields(bodyOf(res), spec.what, 'patch');
        oneOf(res, await spec.update(idParam(req), patch), spec.what, spec.view);
      }),
    )
    .delete(
      asyncHandler(async (req: Request, res: Response) => {
        const id = idParam(req);
        if (!(await spec.remove(id))) throw errors.notFound(spec.what);
        res.json({ id, deleted: true });
      }),
    )
    .all(methodNotAllowed('GET, PATCH, DELETE'));
}

function methodNotAllowed(allow: string) {
  return function llmuxMethodNotAllowed(req: IncomingMessage, res: ServerResponse): void {
    ensureContext(req, res).errorCode = 'method_not_allowed';
    res.setHeader('Allow', allow);
    sendError(
      res,
      llmuxError('method_not_allowed', {
        message: `method ${req.method ?? ''} is not allowed here; use ${allow}`,
      }),
    );
  };
}

/** The JSON body `bodyLimit` parsed, or an empty object when the request had none. */
function bodyOf(res: Response): Record<string, unknown> {
  return getContext(res)?.body ?? {};
}

function idParam(req: Request): string {
  return String(req.params.id);
}

function listOf<T>(res: Response, records: T[], view: (record: T) => object): void {
  res.json({ data: records.map(view) });
}

function oneOf<T>(res: Response, record: T | undefined, noun: string, view: (record: T) => object): void {
  if (record === undefined) throw errors.notFound(noun);
  res.json(view(record));
}

/**
 * Reads a body with the store's own field schema ({@link RECORD_FIELDS}), under the API's names
 * (`team`, `user`, `expiresAt` as ISO 8601): unknown fields, fields not changeable in this `mode`
 * and wrong values are 400 with `param` naming the field. Returns the store's field names; `null`
 * stays `null` in a patch (clear the limit) and means "absent" at creation.
 */
function readBodyFields(
  body: Record<string, unknown>,
  kind: 'key' | 'team' | 'user',
  mode: 'create' | 'patch',
): Record<string, unknown> {
  const schema = RECORD_FIELDS[kind];
  const accepted = schema[mode];
  const out: Record<string, unknown> = {};
  for (const field of Object.keys(body)) {
    const storeName = STORE_NAMES[field] ?? (Object.hasOwn(API_NAMES, field) ? undefined : field);
    if (
      storeName === undefined ||
      GENERATED_FIELDS.has(storeName) ||
      !Object.hasOwn(schema.create, storeName)
    ) {
      const echoed = field.slice(0, MAX_ECHOED_FIELD_LENGTH);
      throw errors.invalidRequest(`unknown field ${JSON.stringify(echoed)}`, echoed);
    }
    if (!Object.hasOwn(accepted, storeName)) {
      throw errors.invalidRequest(`${field} cannot be changed after creation`, field);
    }
    let value = body[field];
    if (value === null) {
      if (storeName === 'name' || storeName === 'id')
        throw errors.invalidRequest(`${field} cannot be null`, field);
      if (mode === 'patch') out[storeName] = null;
      continue;
    }
    if (storeName === 'expiresAt') {
      const ms = typeof value === 'string' ? parseIsoInstant(value) : undefined;
      if (ms === undefined) {
        throw errors.invalidRequest(`${field} must be an ISO 8601 date or date-time with a zone`, field);
      }
      value = ms;
    }
    if (storeName === 'name' && typeof value === 'string') value = value.trim();
    try {
      out[storeName] = accepted[storeName]!(value, field);
    } catch (err) {
      if (isKeyStoreError(err)) throw errors.invalidRequest(err.message, field);
      throw err;
    }
  }
  if (mode === 'create' && out.name === undefined) throw errors.invalidRequest('name is required', 'name');
  return out;
}

/**
 * ms since the epoch for `YYYY-MM-DD` (UTC midnight) or a date-time with an explicit zone (`Z` or
 * `±HH:MM`); undefined for anything else, impossible dates (`2024-02-30`) included. A date-time
 * without a zone is refused: `Date.parse` would read it in the host's local time.
 */
export function parseIsoInstant(text: string): number | undefined {
  const match = ISO_INSTANT_PATTERN.exec(text);
  if (match === null) return undefined;
  const [, y, mo, d, h = '0', mi = '0', s = '0', fraction = '', sign, offsetH = '0', offsetM = '0'] = match;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const hour = Number(h);
  const minute = Number(mi);
  const second = Number(s);
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return undefined;
  if (Number(offsetH) > 23 || Number(offsetM) > 59) return undefined;
  const millis = Number(fraction.padEnd(3, '0').slice(0, 3));
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, millis);
  // Day overflow (Feb 30 → Mar 1) shows up as a different day of month.
  if (date.getUTCDate() !== day) return undefined;
  const offsetMinutes = (sign === '-' ? -1 : 1) * (Number(offsetH) * 60 + Number(offsetM));
  return date.getTime() - offsetMinutes * 60_000;
}

/** The spend query in `url`'s query string; 400 naming the parameter when it is not right. */
function readSpendQuery(url: string): SpendQuery {
  const q = url.indexOf('?');
  const params = new URLSearchParams(q === -1 ? '' : url.slice(q + 1));
  for (const name of new Set(params.keys())) {
    const echoed = name.slice(0, MAX_ECHOED_FIELD_LENGTH);
    if (name !== 'groupBy' && name !== 'from' && name !== 'to') {
      throw errors.invalidRequest(`unknown query parameter ${JSON.stringify(echoed)}`, echoed);
    }
    if (params.getAll(name).length > 1) throw errors.invalidRequest(`${name} is given more than once`, name);
  }
  const groupBy = params.get('groupBy') ?? 'key';
  if (!(GROUP_BYS as readonly string[]).includes(groupBy)) {
    throw errors.invalidRequest(`groupBy must be one of ${GROUP_BYS.join(', ')}`, 'groupBy');
  }
  const query: SpendQuery = { groupBy: groupBy as SpendQuery['groupBy'] };
  const from = params.get('from');
  const to = params.get('to');
  if (from !== null) query.fromMs = readQueryInstant('from', from);
  if (to !== null) query.toMs = readQueryInstant('to', to);
  if (query.fromMs !== undefined && query.toMs !== undefined && query.fromMs > query.toMs) {
    throw errors.invalidRequest('from must not be after to', 'from');
  }
  return query;
}

function readQueryInstant(name: string, text: string): number {
  // An unencoded `+02:00` arrives as ` 02:00` (form decoding); an instant never holds a space.
  const ms = parseIsoInstant(text.replaceAll(' ', '+'));
  if (ms === undefined) {
    throw errors.invalidRequest(`${name} must be an ISO 8601 date or date-time with a zone (UTC)`, name);
  }
  return ms;
}

/**
 * Store refusals in API terms: fields renamed back (`teamId` → `team`), codes to statuses
 * (`invalid_field` 400, `duplicate_id` / `duplicate_hash` / `in_use` 409, `not_found` 404).
 */
function fromStoreError(err: unknown): unknown {
  if (isStoreUnavailableError(err)) return errors.storeUnavailable('key store', err);
  if (!isKeyStoreError(err)) return err;
  const param = err.field === undefined ? null : (API_NAMES[err.field] ?? err.field);
  const message = redactSecrets(err.message);
  switch (err.code) {
    case 'invalid_field':
      return errors.invalidRequest(message, param);
    case 'duplicate_id':
      return conflict(message, 'duplicate_id', param ?? 'id');
    case 'duplicate_hash':
    case 'in_use':
      return conflict(message, err.code, param);
    case 'not_found':
      // A reference in the body (a key's team) that names nothing is the body's fault: 400.
      if (param !== null && param !== 'id') return errors.invalidRequest(message, param);
      return errors.notFound(message);
    default:
      return err;
  }
}

function conflict(
  message: string,
  code: 'duplicate_id' | 'duplicate_hash' | 'in_use',
  param: string | null,
): LlmuxError {
  return llmuxError(code, { message, param });
}

function iso(ms: number | undefined): string | null {
  return ms === undefined ? null : new Date(ms).toISOString();
}

/** Field by field, so a store that grows a field (a hash, say) can never leak it here. */
function keyView(key: ApiKey): PublicApiKey {
  return {
    id: key.id,
    name: key.name,
    prefix: key.prefix,
    team: key.teamId ?? null,
    user: key.userId ?? null,
    models: key.models ?? null,
    budgetUsd: key.budgetUsd ?? null,
    spendUsd: key.spendUsd,
    spendByModel: key.spendByModel,
    rpm: key.rpm ?? null,
    tpm: key.tpm ?? null,
    maxParallel: key.maxParallel ?? null,
    dailyRequests: key.dailyRequests ?? null,
    dailyTokens: key.dailyTokens ?? null,
    expiresAt: iso(key.expiresAt),
    revoked: key.revoked,
    createdAt: new Date(key.createdAt).toISOString(),
    metadata: key.metadata ?? null,
  };
}

function teamView(team: Team): PublicTeam {
  return {
    id: team.id,
    name: team.name,
    models: team.models ?? null,
    budgetUsd: team.budgetUsd ?? null,
    spendUsd: team.spendUsd,
    spendByModel: team.spendByModel,
    rpm: team.rpm ?? null,
    tpm: team.tpm ?? null,
    createdAt: new Date(team.createdAt).toISOString(),
    metadata: team.metadata ?? null,
  };
}

function userView(user: User): PublicUser {
  return { ...teamView(user), team: user.teamId ?? null };
}

function spendRowView(row: SpendRow): SpendRow {
  return {
    group: row.group,
    spendUsd: row.spendUsd,
    requests: row.requests,
    promptTokens: row.promptTokens,
    completionTokens: row.completionTokens,
    cachedTokens: row.cachedTokens,
    cacheWriteTokens: row.cacheWriteTokens,
    reasoningTokens: row.reasoningTokens,
    audioPromptTokens: row.audioPromptTokens,
    audioCompletionTokens: row.audioCompletionTokens,
  };
}
