// Finds the protocol and route of a request by its method and path, exactly (as the providers'
// APIs match): one map lookup for fixed paths, a prefix and suffix test for `{id}` ones.
import type { ProtocolRoute, WireProtocol } from './types.js';

/** A request's protocol and the route of it that matched. */
export interface RouteMatch {
  readonly protocol: WireProtocol;
  readonly route: ProtocolRoute;
}

interface Pattern {
  readonly method: string;
  readonly prefix: string;
  readonly suffix: string;
  readonly match: RouteMatch;
}

/** The routes of some protocols, ready to match requests. Immutable once built. */
export class RouteTable {
  /** `METHOD path` → match, for routes without an `{id}` segment. */
  private readonly fixed = new Map<string, RouteMatch>();
  private readonly patterns: Pattern[] = [];

  constructor(readonly protocols: readonly WireProtocol[]) {
    for (const protocol of protocols) {
      for (const route of protocol.routes) {
        const match = { protocol, route };
        const at = route.path.indexOf('{id}');
        if (at === -1) {
          this.fixed.set(`${route.method} ${route.path}`, match);
        } else {
          this.patterns.push({
            method: route.method,
            prefix: route.path.slice(0, at),
            suffix: route.path.slice(at + 4),
            match,
          });
        }
      }
    }
  }

  /** The match for `method` and `path` (no query string), or undefined. */
  match(method: string | undefined, path: string): RouteMatch | undefined {
    const fixed = this.fixed.get(`${method} ${path}`);
    if (fixed !== undefined) return fixed;
    for (const pattern of this.patterns) {
      if (pattern.method !== method) continue;
      if (!path.startsWith(pattern.prefix) || !path.endsWith(pattern.suffix)) continue;
      const id = path.slice(pattern.prefix.length, path.length - pattern.suffix.length);
      if (id.length > 0 && !id.includes('/')) return pattern.match;
    }
    return undefined;
  }

  /** The route with `path`, whatever its method (a label for metrics), or undefined. */
  routeOf(path: string): ProtocolRoute | undefined {
    return (this.match('POST', path) ?? this.match('GET', path) ?? this.match('DELETE', path))?.route;
  }
}

/**
 * The path of a request target, as Express routes on it: without the query string, and without
 * the scheme and authority of an absolute-form target (`POST http://host/v1/…`, sent through
 * proxies; RFC 9112 §3.2.2).
 */
export function pathOf(url: string): string {
  let start = 0;
  if (url.charCodeAt(0) !== 47 /* / */) {
    const scheme = url.indexOf('://');
    if (scheme !== -1) {
      const slash = url.indexOf('/', scheme + 3);
      start = slash === -1 ? url.length : slash;
    }
  }
  const query = url.indexOf('?', start);
  return query === -1 ? url.slice(start) : url.slice(start, query);
}
