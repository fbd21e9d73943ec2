// The federation layer's place in the running server: builds the outbound FederationClient (server
// discovery, address checks, X-Matrix signing), the cache of other servers' keys and the inbound
// request authenticator, and installs them where feature modules find them:
//   hs.services.federation            the pieces themselves (other federation endpoints use them)
//   hs.services.federationRequestAuth X-Matrix verification for inbound routes (401 M_UNAUTHORIZED)
//   hs.services.remoteMediaFetcher    remote media through the signed federation client
import { resolveSrv } from 'node:dns/promises';
import { FederationAuthError, RequestAuthenticator } from '../../../federation/auth.ts';
import { FederationClient } from '../../../federation/client.ts';
import { ServerKeyRing } from '../../../federation/keys.ts';
import { ServerResolver } from '../../../federation/resolve.ts';
import type { Homeserver, Module } from '../../homeserver.ts';
import type { Next } from 'koa';
import type { ApiContext } from '../../http/api.ts';
import { readJsonObject } from '../../http/body.ts';
import { MatrixError } from '../../errors.ts';
import { IpPolicy, resolveChecked } from '../../services/media/outbound.ts';
import { HttpRemoteMediaFetcher } from '../../services/media/remote.ts';
import { DbServerKeyStore } from '../../storage/server-keys.ts';

export interface Federation {
  client: FederationClient;
  resolver: ServerResolver;
  serverKeys: ServerKeyRing;
  requestAuth: RequestAuthenticator;
  /** Server name → base URL, bypassing discovery. Starts as federation.server_overrides; tests add to it. */
  overrides: Map<string, string>;
  /** Addresses outbound federation may connect to (overrides aside). */
  ipPolicy: IpPolicy;
}

declare module '../../homeserver.ts' {
  interface Services {
    federation: Federation;
  }
}

/** Verifies ctx's X-Matrix header; `content` is the parsed JSON body for requests that have one. */
export async function authenticateFederationRequest(hs: Homeserver, ctx: ApiContext, content?: unknown): Promise<string> {
  try {
    const { origin } = await hs.services.federation.requestAuth.authenticate({
      method: ctx.method,
      uri: ctx.originalUrl,
      authorization: ctx.req.headers.authorization,
      ...(content !== undefined ? { content } : {}),
    });
    return origin;
  } catch (err) {
    if (err instanceof FederationAuthError) throw new MatrixError(401, 'M_UNAUTHORIZED', err.message);
    throw err;
  }
}

/**
 * Middleware for server-server routes: verifies the X-Matrix signature over the method, target and
 * JSON body (read and cached for the handler) and puts the origin in ctx.state.origin.
 */
export function requireServerAuth(hs: Homeserver) {
  return async (ctx: ApiContext, next: Next) => {
    let content: unknown;
    const hasBody = ctx.method !== 'GET' && ctx.method !== 'HEAD' && ctx.method !== 'DELETE' && ctx.get('content-length') !== '0' && (ctx.get('content-length') !== '' || ctx.get('transfer-encoding') !== '');
    if (hasBody) content = await readJsonObject(ctx);
    ctx.state.origin = await authenticateFederationRequest(hs, ctx, content);
    await next();
  };
}

export const federationModule: Module = {
  name: 'federation',
  init(hs) {
    const cfg = hs.config.federation;
    const overrides = new Map(Object.entries(cfg.server_overrides));
    const ipPolicy = new IpPolicy(cfg.denied_ip_ranges, cfg.allowed_ip_ranges);
    let client: FederationClient;
    const resolver = new ServerResolver({
      overrides: () => overrides,
      resolveSrv: (name) => resolveSrv(name),
      fetchWellKnown: (hostname) => client.fetchWellKnown(hostname),
      now: () => hs.now(),
    });
    client = new FederationClient({
      serverName: hs.serverName,
      signingKey: () => hs.keys.current,
      resolver,
      checkAddress: (host) => resolveChecked(host, ipPolicy),
      userAgent: 'Axon (Matrix homeserver)',
      rejectUnauthorized: cfg.verify_tls_certificates,
    });
    const serverKeys = new ServerKeyRing({
      source: client,
      store: new DbServerKeyStore(hs.db),
      now: () => hs.now(),
      onFetchError: (serverName, err) => hs.logger.info({ serverName, err: (err as Error).message }, 'federation: fetching server keys failed'),
    });
    const requestAuth = new RequestAuthenticator(hs.serverName, serverKeys);
    hs.services.federation = { client, resolver, serverKeys, requestAuth, overrides, ipPolicy };
    hs.services.federationRequestAuth = { authenticate: (ctx) => authenticateFederationRequest(hs, ctx) };
    hs.services.remoteMediaFetcher = new HttpRemoteMediaFetcher({ federation: client, locationPolicy: ipPolicy, userAgent: 'Axon (Matrix homeserver)' });
    hs.onShutdown(() => client.close());
  },
};
