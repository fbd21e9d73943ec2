// Server discovery (server-server-api.md "Resolving server names"): a server name becomes the address
// and port to connect to, the Host header to send and the name the TLS certificate must carry.
//
//  1. IP literal: that address, the given port or 8448; Host is the server name.
//  2. Hostname with an explicit port: that hostname and port.
//  3. Otherwise /.well-known/matrix/server (cached), and for the delegated name: IP literal, explicit
//     port, SRV _matrix-fed._tcp then the deprecated _matrix._tcp, else port 8448.
//  4–6. No usable .well-known: SRV _matrix-fed._tcp / _matrix._tcp on the hostname, else port 8448.
//
// An operator (or a test) can map server names straight to base URLs (`federation.server_overrides`),
// which skips discovery entirely; such URLs are trusted as configured.
import { parseServerName } from '../spec/identifiers.ts';

export const DEFAULT_FEDERATION_PORT = 8448;

export type Destination =
  | {
      kind: 'override';
      /** Where to send requests, e.g. http://127.0.0.1:8008 (paths are appended). */
      baseUrl: string;
    }
  | {
      kind: 'matrix';
      /** What to connect to: a DNS name to resolve, or an IP address (IPv6 without brackets). */
      connectHost: string;
      port: number;
      /** The Host header. */
      hostHeader: string;
      /** The name the certificate must match and to send as SNI; null for IP addresses (no SNI). */
      tlsServerName: string | null;
    };

export interface SrvRecord {
  name: string;
  port: number;
  priority: number;
  weight: number;
}

export interface WellKnownResult {
  /** The `m.server` value, or null when the response was an error or invalid. */
  server: string | null;
  /** How long to remember this result. */
  cacheMs: number;
}

export interface ResolverDeps {
  /** Server name → base URL mappings that bypass discovery. */
  overrides: () => ReadonlyMap<string, string> | Record<string, string>;
  /** SRV lookup; an empty list (or a rejection) when there is no record. */
  resolveSrv: (name: string) => Promise<SrvRecord[]>;
  /** GET https://<hostname>/.well-known/matrix/server, following redirects, parsed. */
  fetchWellKnown: (hostname: string) => Promise<WellKnownResult>;
  now: () => number;
}

/** Spec: default 24 hours, at most 48; errors up to an hour. */
export const WELL_KNOWN_DEFAULT_CACHE_MS = 24 * 3600 * 1000;
export const WELL_KNOWN_MAX_CACHE_MS = 48 * 3600 * 1000;
export const WELL_KNOWN_ERROR_CACHE_MS = 3600 * 1000;

function bare(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

/** RFC 2782 selection: lowest priority first, weighted random among equals. Null for "no service". */
export function pickSrv(records: SrvRecord[], random: () => number = Math.random): SrvRecord | null {
  const usable = records.filter((r) => r.name && r.name !== '.');
  if (usable.length === 0) return null;
  const best = Math.min(...usable.map((r) => r.priority));
  const group = usable.filter((r) => r.priority === best);
  const total = group.reduce((n, r) => n + r.weight, 0);
  if (total === 0) return group[Math.floor(random() * group.length)]!;
  let x = random() * total;
  for (const r of group) {
    x -= r.weight;
    if (x < 0) return r;
  }
  return group[group.length - 1]!;
}

export class ServerResolver {
  private readonly deps: ResolverDeps;
  private readonly wellKnownCache = new Map<string, { result: WellKnownResult; expires: number }>();

  constructor(deps: ResolverDeps) {
    this.deps = deps;
  }

  private override(serverName: string): string | undefined {
    const o = this.deps.overrides();
    if (o instanceof Map) return o.get(serverName);
    return Object.hasOwn(o, serverName) ? (o as Record<string, string>)[serverName] : undefined;
  }

  async resolve(serverName: string): Promise<Destination> {
    const override = this.override(serverName);
    if (override) return { kind: 'override', baseUrl: override.replace(/\/+$/, '') };
    const parsed = parseServerName(serverName);
    if (!parsed) throw new Error(`${JSON.stringify(serverName)} is not a server name`);
    const host = bare(parsed.host);
    // Step 1: an IP literal.
    if (parsed.kind !== 'dns') return { kind: 'matrix', connectHost: host, port: parsed.port ?? DEFAULT_FEDERATION_PORT, hostHeader: serverName, tlsServerName: null };
    // Step 2: a hostname with a port.
    if (parsed.port !== undefined) return { kind: 'matrix', connectHost: host, port: parsed.port, hostHeader: serverName, tlsServerName: host };
    // Step 3: delegation through .well-known.
    const wk = await this.wellKnown(host);
    if (wk.server) {
      const delegated = parseServerName(wk.server);
      if (delegated) {
        const dhost = bare(delegated.host);
        if (delegated.kind !== 'dns') {
          return { kind: 'matrix', connectHost: dhost, port: delegated.port ?? DEFAULT_FEDERATION_PORT, hostHeader: wk.server, tlsServerName: null };
        }
        if (delegated.port !== undefined) return { kind: 'matrix', connectHost: dhost, port: delegated.port, hostHeader: wk.server, tlsServerName: dhost };
        const srv = await this.srv(dhost);
        if (srv) return { kind: 'matrix', connectHost: srv.name, port: srv.port, hostHeader: dhost, tlsServerName: dhost };
        return { kind: 'matrix', connectHost: dhost, port: DEFAULT_FEDERATION_PORT, hostHeader: dhost, tlsServerName: dhost };
      }
    }
    // Steps 4–6.
    const srv = await this.srv(host);
    if (srv) return { kind: 'matrix', connectHost: srv.name, port: srv.port, hostHeader: host, tlsServerName: host };
    return { kind: 'matrix', connectHost: host, port: DEFAULT_FEDERATION_PORT, hostHeader: host, tlsServerName: host };
  }

  private async srv(hostname: string): Promise<SrvRecord | null> {
    for (const service of ['_matrix-fed._tcp', '_matrix._tcp']) {
      const records = await this.deps.resolveSrv(`${service}.${hostname}`).catch(() => []);
      const pick = pickSrv(records);
      if (pick) return { ...pick, name: pick.name.replace(/\.$/, '') };
    }
    return null;
  }

  private async wellKnown(hostname: string): Promise<WellKnownResult> {
    const now = this.deps.now();
    const hit = this.wellKnownCache.get(hostname);
    if (hit && hit.expires > now) return hit.result;
    let result: WellKnownResult;
    try {
      result = await this.deps.fetchWellKnown(hostname);
    } catch {
      result = { server: null, cacheMs: WELL_KNOWN_ERROR_CACHE_MS };
    }
    const cacheMs = Math.min(Math.max(0, result.cacheMs), result.server ? WELL_KNOWN_MAX_CACHE_MS : WELL_KNOWN_ERROR_CACHE_MS);
    if (this.wellKnownCache.size >= 10_000) this.wellKnownCache.delete(this.wellKnownCache.keys().next().value!);
    this.wellKnownCache.set(hostname, { result, expires: now + cacheMs });
    return result;
  }
}

/** The cache lifetime a .well-known response asks for (Cache-Control max-age / no-store), else the default. */
export function wellKnownCacheMs(cacheControl: string | undefined | null): number {
  if (cacheControl) {
    if (/\bno-store\b/i.test(cacheControl)) return 0;
    const m = /\bmax-age\s*=\s*"?(\d+)"?/i.exec(cacheControl);
    if (m) return Math.min(Number(m[1]) * 1000, WELL_KNOWN_MAX_CACHE_MS);
  }
  return WELL_KNOWN_DEFAULT_CACHE_MS;
}

/** Parses a .well-known/matrix/server body: the `m.server` value if it is a valid server name. */
export function parseWellKnown(body: string): string | null {
  try {
    const j = JSON.parse(body) as unknown;
    if (j === null || typeof j !== 'object' || Array.isArray(j)) return null;
    const s = (j as Record<string, unknown>)['m.server'];
    return typeof s === 'string' && parseServerName(s) ? s : null;
  } catch {
    return null;
  }
}
