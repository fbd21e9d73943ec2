// Server-server content repository (server-server-api "Content Repository"): other servers download
// our local media and thumbnails as multipart/mixed — JSON metadata, then the bytes.
//
// Every request must carry a valid X-Matrix signature (server-server-api "Request Authentication"),
// checked by the federation layer (federation/auth.ts, installed as hs.services.federationRequestAuth by
// api/federation/federation-module.ts); anything else is 401 M_UNAUTHORIZED. Without that service
// (a deployment built without the federation module) the endpoints also answer 401.
import type { Homeserver } from '../../homeserver.ts';
import type { Api, ApiContext } from '../../http/api.ts';
import { MatrixError } from '../../errors.ts';
import { contentDisposition } from '../../services/media/sniff.ts';
import { multipartBody, newBoundary } from '../../services/media/multipart.ts';
import { thumbnailBody, thumbnailParams } from '../client/media.ts';
import { Readable } from 'node:stream';

/** Verifies a federation request's X-Matrix signature; returns the origin server name or throws 401. */
export interface FederationRequestAuthenticator {
  authenticate(ctx: ApiContext): Promise<string>;
}

declare module '../../homeserver.ts' {
  interface Services {
    /** The X-Matrix request authentication hook (installed by the federation layer). */
    federationRequestAuth?: FederationRequestAuthenticator;
  }
}

async function authenticateOrigin(ctx: ApiContext, hs: Homeserver): Promise<string> {
  const auth = hs.services.federationRequestAuth;
  if (!auth) throw new MatrixError(401, 'M_UNAUTHORIZED', 'Federation request authentication is not available on this server');
  return auth.authenticate(ctx);
}

function timeout(ctx: ApiContext): number {
  const v = ctx.query.timeout_ms;
  return typeof v === 'string' && /^\d{1,9}$/.test(v) ? Number(v) : 20_000;
}

export function mediaFederationRoutes(api: Api, hs: Homeserver): void {
  const sendMultipart = (ctx: ApiContext, headers: Record<string, string>, body: Readable) => {
    const boundary = newBoundary();
    ctx.status = 200;
    ctx.set('Content-Type', `multipart/mixed; boundary=${boundary}`);
    ctx.body = multipartBody(boundary, {}, headers, body);
    ctx.set('Content-Type', `multipart/mixed; boundary=${boundary}`);
  };

  api.get('federation', '/_matrix/federation/v1/media/download/:mediaId', async (ctx: ApiContext) => {
    await authenticateOrigin(ctx, hs);
    const media = hs.services.media;
    // Only media that originates here: a server asks the origin, never a cache.
    const row = await media.getForDownload(hs.serverName, ctx.params.mediaId!, { allowRemote: false, timeoutMs: timeout(ctx) });
    const contentType = row.content_type ?? 'application/octet-stream';
    sendMultipart(
      ctx,
      { 'Content-Type': contentType, 'Content-Disposition': contentDisposition(contentType, row.upload_name), 'Content-Length': String(row.size ?? 0) },
      await media.open(row),
    );
  });

  api.get('federation', '/_matrix/federation/v1/media/thumbnail/:mediaId', async (ctx: ApiContext) => {
    await authenticateOrigin(ctx, hs);
    const { req, animated } = thumbnailParams(ctx);
    const row = await hs.services.media.getForDownload(hs.serverName, ctx.params.mediaId!, { allowRemote: false, timeoutMs: timeout(ctx) });
    const t = await thumbnailBody(hs, row, req, animated);
    const body = Buffer.isBuffer(t.body) ? Readable.from([t.body]) : t.body;
    sendMultipart(ctx, { 'Content-Type': t.contentType, 'Content-Disposition': contentDisposition(t.contentType, null), 'Content-Length': String(t.length) }, body);
  });
}
