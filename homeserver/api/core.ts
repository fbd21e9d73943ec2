// Endpoints every deployment serves: versions, .well-known, health, and the server's signing keys.
import { encodeBase64 } from '../../spec/base64.ts';
import { signJson } from '../../spec/signing.ts';
import type { Homeserver, Module } from '../homeserver.ts';
import type { ApiContext } from '../http/api.ts';
import { notFound } from '../errors.ts';

/** The client-server spec versions Axon implements (client-server-api "GET /_matrix/client/versions"). */
// Every version up to the one implemented is listed (as other servers do): clients gate features on an
// exact entry (matrix-js-sdk uses server-side thread lists and private receipts only when "v1.4" is listed).
export const SUPPORTED_VERSIONS = Array.from({ length: 19 }, (_, i) => `v1.${i + 1}`);

/** server-server-api.md "Publishing Keys": GET /_matrix/key/v2/server, signed by the server itself. */
export function serverKeysResponse(hs: Homeserver): Record<string, unknown> {
  const { current, old } = hs.keys;
  return signJson(
    {
      server_name: hs.serverName,
      valid_until_ts: hs.now() + hs.config.key_validity_ms,
      verify_keys: { [current.keyId]: { key: encodeBase64(current.publicKey) } },
      old_verify_keys: old,
    },
    hs.serverName,
    current,
  );
}

export const coreModule: Module = {
  name: 'core',
  routes(api, hs) {
    api.get('client', '/_matrix/client/versions', (ctx: ApiContext) => {
      ctx.body = { versions: SUPPORTED_VERSIONS, unstable_features: {} };
    });
    api.get('client', '/.well-known/matrix/client', (ctx: ApiContext) => {
      const wk = hs.config.well_known;
      const base = wk.client_base_url ?? hs.config.public_baseurl;
      if (!base) throw notFound('No client discovery information configured');
      const body: Record<string, unknown> = { 'm.homeserver': { base_url: base } };
      if (wk.identity_server_base_url) body['m.identity_server'] = { base_url: wk.identity_server_base_url };
      ctx.body = body;
    });
    api.get('federation', '/.well-known/matrix/server', (ctx: ApiContext) => {
      const server = hs.config.well_known.server;
      if (!server) throw notFound('No server delegation configured');
      ctx.body = { 'm.server': server };
    });
    api.get('client', '/health', (ctx: ApiContext) => {
      ctx.body = { status: 'ok', database: hs.database.kind };
    });
    api.get('keys', ['/_matrix/key/v2/server', '/_matrix/key/v2/server/:keyId'], (ctx: ApiContext) => {
      ctx.set('Cache-Control', 'public, max-age=3600');
      ctx.body = serverKeysResponse(hs);
    });
  },
};
