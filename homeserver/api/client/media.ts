// Client-server content repository (client-server-api/modules/content_repo.md): uploads under
// /_matrix/media, the authenticated downloads, thumbnails, config and previews under
// /_matrix/client/v1/media, and the deprecated unauthenticated /_matrix/media/v3 downloads, frozen.
import type { Homeserver } from '../../homeserver.ts';
import { rateLimit } from '../../homeserver.ts';
import { requireAuth } from '../../auth/access-tokens.ts';
import type { Api, ApiContext } from '../../http/api.ts';
import { MatrixError, missingParam, notFound } from '../../errors.ts';
import type { MediaRow, ThumbnailRow } from '../../storage/media.ts';
import type { ThumbnailRequest } from '../../services/media/thumbnails.ts';
import { cleanFilename, contentDisposition } from '../../services/media/sniff.ts';
import type { ByteRange } from '../../services/media/store.ts';

// client-server-api/modules/content_repo.md: the recommended policy for served content.
export const MEDIA_CSP = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; object-src 'self';";
const IMMUTABLE_PRIVATE = 'private, max-age=31536000, immutable';
const IMMUTABLE_PUBLIC = 'public, max-age=31536000, immutable';

export function setMediaSecurityHeaders(ctx: ApiContext): void {
  ctx.set('Content-Security-Policy', MEDIA_CSP);
  ctx.set('X-Content-Type-Options', 'nosniff');
  ctx.set('Cross-Origin-Resource-Policy', 'cross-origin');
}

/** A single byte range from a Range header; null to serve everything (absent, malformed, multi-range). */
export function parseRange(header: string | undefined, size: number): ByteRange | 'unsatisfiable' | null {
  if (!header) return null;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m || (m[1] === '' && m[2] === '')) return null;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(m[1]);
  if (start >= size) return 'unsatisfiable';
  const end = m[2] === '' ? size - 1 : Number(m[2]);
  if (end < start) return null;
  return { start, end: Math.min(end, size - 1) };
}

function timeoutParam(ctx: ApiContext): number {
  const v = ctx.query.timeout_ms;
  if (v === undefined) return 20_000;
  const n = Number(v);
  if (typeof v !== 'string' || !/^\d+$/.test(v) || !Number.isSafeInteger(n)) throw new MatrixError(400, 'M_INVALID_PARAM', 'timeout_ms must be a non-negative integer');
  return n;
}

/** Sends a stored file with the safe headers, ETag/304 and single-range support. */
export async function sendMedia(
  ctx: ApiContext,
  hs: Homeserver,
  row: MediaRow,
  opts: { filename: string | null; cacheControl: string },
): Promise<void> {
  const contentType = row.content_type ?? 'application/octet-stream';
  const size = row.size ?? 0;
  const etag = `"${row.sha256 ?? row.media_id}"`;
  setMediaSecurityHeaders(ctx);
  ctx.set('Content-Type', contentType);
  ctx.set('Content-Disposition', contentDisposition(contentType, opts.filename));
  ctx.set('Cache-Control', opts.cacheControl);
  ctx.set('ETag', etag);
  ctx.set('Accept-Ranges', 'bytes');
  const inm = ctx.get('if-none-match');
  if (inm && inm.split(',').some((t) => t.trim() === etag || t.trim() === '*')) {
    ctx.status = 304;
    return;
  }
  const ifRange = ctx.get('if-range');
  const range = !ifRange || ifRange === etag ? parseRange(ctx.get('range') || undefined, size) : null;
  if (range === 'unsatisfiable') {
    ctx.set('Content-Range', `bytes */${size}`);
    throw new MatrixError(416, 'M_UNKNOWN', 'Requested range not satisfiable', {}, { 'Content-Range': `bytes */${size}` });
  }
  const media = hs.services.media;
  const stream = await media.open(row, range ?? undefined);
  if (range) {
    ctx.status = 206;
    ctx.set('Content-Range', `bytes ${range.start}-${range.end}/${size}`);
    ctx.body = stream;
    ctx.length = range.end - range.start + 1;
  } else {
    ctx.status = 200;
    ctx.body = stream;
    ctx.length = size;
  }
  // Koa may have replaced the type when the body was set: the recorded one stands.
  ctx.set('Content-Type', contentType);
}

/** width/height/method/animated of a thumbnail request (400 M_INVALID_PARAM when malformed). */
export function thumbnailParams(ctx: ApiContext): { req: ThumbnailRequest; animated: boolean } {
  const dim = (name: 'width' | 'height') => {
    const v = ctx.query[name];
    if (v === undefined) throw missingParam(`${name} is required`);
    if (typeof v !== 'string' || !/^\d{1,5}$/.test(v) || Number(v) < 1 || Number(v) > 10000) throw new MatrixError(400, 'M_INVALID_PARAM', `${name} must be an integer between 1 and 10000`);
    return Number(v);
  };
  const width = dim('width');
  const height = dim('height');
  const m = ctx.query.method ?? 'scale';
  if (m !== 'crop' && m !== 'scale') throw new MatrixError(400, 'M_INVALID_PARAM', 'method must be crop or scale');
  const a = ctx.query.animated;
  if (a !== undefined && a !== 'true' && a !== 'false') throw new MatrixError(400, 'M_INVALID_PARAM', 'animated must be true or false');
  return { req: { width, height, method: m }, animated: a === 'true' };
}

/** The thumbnail's bytes and headers, whatever form the service answered in. */
export async function thumbnailBody(hs: Homeserver, row: MediaRow, req: ThumbnailRequest, animated: boolean) {
  const media = hs.services.media;
  const t = await media.thumbnail(row, req, animated);
  if (t.kind === 'original') return { contentType: t.contentType, body: await media.open(row), length: row.size ?? 0, etag: `"${row.sha256}"` };
  if (t.kind === 'stored') {
    return { contentType: t.row.content_type, body: await media.readThumbnail(t.row), length: t.row.size, etag: `"${row.sha256}-${t.row.width}x${t.row.height}-${t.row.method}${t.row.animated ? '-a' : ''}"` };
  }
  return { contentType: t.rendered.contentType, body: t.rendered.data, length: t.rendered.data.length, etag: null };
}

async function sendThumbnail(ctx: ApiContext, hs: Homeserver, row: MediaRow, cacheControl: string): Promise<void> {
  const { req, animated } = thumbnailParams(ctx);
  await sendThumbnailBody(ctx, await thumbnailBody(hs, row, req, animated), cacheControl);
}

/** A thumbnail of remote media made by its origin and cached as such (no original here). */
async function sendRemoteThumbnail(ctx: ApiContext, hs: Homeserver, t: ThumbnailRow, cacheControl: string): Promise<void> {
  const etag = `"${t.server_name}/${t.media_id}-${t.width}x${t.height}-${t.method}${t.animated ? '-a' : ''}"`;
  await sendThumbnailBody(ctx, { contentType: t.content_type, body: await hs.services.media.readThumbnail(t), length: t.size, etag }, cacheControl);
}

async function sendThumbnailBody(
  ctx: ApiContext,
  t: { contentType: string; body: Buffer | import('node:stream').Readable; length: number; etag: string | null },
  cacheControl: string,
): Promise<void> {
  setMediaSecurityHeaders(ctx);
  ctx.set('Cache-Control', cacheControl);
  ctx.set('Content-Disposition', contentDisposition(t.contentType, null));
  if (t.etag) {
    ctx.set('ETag', t.etag);
    if (ctx.get('if-none-match') === t.etag) {
      if (!Buffer.isBuffer(t.body)) t.body.destroy();
      ctx.status = 304;
      return;
    }
  }
  ctx.status = 200;
  ctx.body = t.body;
  ctx.length = t.length;
  ctx.set('Content-Type', t.contentType);
}

/** The deprecated endpoints serve only media from before the freeze (or everything when switched on). */
function legacyServable(hs: Homeserver, row: MediaRow): boolean {
  const c = hs.config.media;
  if (c.legacy_unauthenticated_downloads) return true;
  return c.legacy_freeze_ts !== null && row.uploaded_ts !== null && row.uploaded_ts < c.legacy_freeze_ts;
}

async function legacyRow(ctx: ApiContext, hs: Homeserver): Promise<MediaRow> {
  const { serverName, mediaId } = ctx.params as { serverName: string; mediaId: string };
  const media = hs.services.media;
  const open = hs.config.media.legacy_unauthenticated_downloads;
  // While frozen, nothing new is fetched for these endpoints: a fresh fetch would be "new" media.
  const allowRemote = open && ctx.query.allow_remote !== 'false';
  const row = await media.getForDownload(serverName, mediaId, { allowRemote, timeoutMs: timeoutParam(ctx) });
  if (!legacyServable(hs, row)) throw notFound('Media not found (unauthenticated media access is frozen; use /_matrix/client/v1/media)');
  return row;
}

function readContentLength(ctx: ApiContext): number | null {
  const v = ctx.get('content-length');
  if (!v) return null;
  const n = Number(v);
  return Number.isSafeInteger(n) && n >= 0 ? n : null;
}

function uploadBody(ctx: ApiContext): AsyncIterable<Buffer> {
  // The request stays alive if the upload is refused midway, so the error response still reaches
  // the client (Node discards the rest of the body).
  return ctx.req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>;
}

export function mediaClientRoutes(api: Api, hs: Homeserver): void {
  const auth = requireAuth(hs.tokens);
  const media = () => hs.services.media;
  const mxc = (id: string) => `mxc://${hs.serverName}/${id}`;

  api.post('media', ['/_matrix/media/v3/upload', '/_matrix/media/r0/upload'], auth, rateLimit(hs, 'media_upload'), async (ctx: ApiContext) => {
    const mediaId = await media().upload(ctx.state.requester!.userId, uploadBody(ctx), {
      contentType: ctx.get('content-type') || undefined,
      filename: cleanFilename(ctx.query.filename),
      declaredLength: readContentLength(ctx),
    });
    ctx.body = { content_uri: mxc(mediaId) };
  });

  api.post('media', '/_matrix/media/v1/create', auth, rateLimit(hs, 'media_upload'), async (ctx: ApiContext) => {
    const r = await media().create(ctx.state.requester!.userId);
    ctx.body = { content_uri: mxc(r.mediaId), unused_expires_at: r.unusedExpiresAt };
  });

  api.put('media', '/_matrix/media/v3/upload/:serverName/:mediaId', auth, rateLimit(hs, 'media_upload'), async (ctx: ApiContext) => {
    const { serverName, mediaId } = ctx.params as { serverName: string; mediaId: string };
    if (serverName !== hs.serverName) throw notFound('Unknown media ID');
    await media().upload(ctx.state.requester!.userId, uploadBody(ctx), {
      contentType: ctx.get('content-type') || undefined,
      filename: cleanFilename(ctx.query.filename),
      declaredLength: readContentLength(ctx),
      mediaId,
    });
    ctx.body = {};
  });

  const config = (ctx: ApiContext) => {
    ctx.body = { 'm.upload.size': hs.config.media.max_upload_bytes };
  };
  api.get('media', ['/_matrix/client/v1/media/config', '/_matrix/media/v3/config', '/_matrix/media/r0/config'], auth, config);

  api.get('media', '/_matrix/client/v1/media/download/:serverName/:mediaId{/:fileName}', auth, async (ctx: ApiContext) => {
    const { serverName, mediaId, fileName } = ctx.params as { serverName: string; mediaId: string; fileName?: string };
    const row = await media().getForDownload(serverName, mediaId, { allowRemote: true, timeoutMs: timeoutParam(ctx) });
    await sendMedia(ctx, hs, row, { filename: cleanFilename(fileName) ?? row.upload_name, cacheControl: IMMUTABLE_PRIVATE });
  });

  api.get('media', '/_matrix/client/v1/media/thumbnail/:serverName/:mediaId', auth, async (ctx: ApiContext) => {
    const { serverName, mediaId } = ctx.params as { serverName: string; mediaId: string };
    const { req, animated } = thumbnailParams(ctx); // bad parameters fail before any fetching
    const timeoutMs = timeoutParam(ctx);
    if (!media().isLocal(serverName)) {
      // Remote media not cached here: ask its origin for the thumbnail rather than the whole file.
      const remote = await media().remoteThumbnail(serverName, mediaId, req, animated);
      if (remote) return sendRemoteThumbnail(ctx, hs, remote, IMMUTABLE_PRIVATE);
    }
    const row = await media().getForDownload(serverName, mediaId, { allowRemote: true, timeoutMs });
    await sendThumbnail(ctx, hs, row, IMMUTABLE_PRIVATE);
  });

  const preview = async (ctx: ApiContext) => {
    const url = ctx.query.url;
    if (typeof url !== 'string' || !url) throw missingParam('url is required');
    ctx.body = await hs.services.urlPreviews.preview(url);
  };
  api.get('media', ['/_matrix/client/v1/media/preview_url', '/_matrix/media/v3/preview_url', '/_matrix/media/r0/preview_url'], auth, preview);

  // Deprecated, unauthenticated (Matrix 1.11), frozen per legacy_unauthenticated_downloads / legacy_freeze_ts.
  api.get('media', ['/_matrix/media/v3/download/:serverName/:mediaId{/:fileName}', '/_matrix/media/r0/download/:serverName/:mediaId{/:fileName}'], async (ctx: ApiContext) => {
    const row = await legacyRow(ctx, hs);
    await sendMedia(ctx, hs, row, { filename: cleanFilename(ctx.params.fileName) ?? row.upload_name, cacheControl: IMMUTABLE_PUBLIC });
  });
  api.get('media', ['/_matrix/media/v3/thumbnail/:serverName/:mediaId', '/_matrix/media/r0/thumbnail/:serverName/:mediaId'], async (ctx: ApiContext) => {
    thumbnailParams(ctx);
    const row = await legacyRow(ctx, hs);
    await sendThumbnail(ctx, hs, row, IMMUTABLE_PUBLIC);
  });
}
