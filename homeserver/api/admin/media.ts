// Media administration (Synapse-compatible paths, so existing admin tools work): delete, quarantine,
// per-user listing, purge of the remote media cache. Server admins only.
import type { Next } from 'koa';
import type { Homeserver } from '../../homeserver.ts';
import { requireAuth } from '../../auth/access-tokens.ts';
import type { Api, ApiContext } from '../../http/api.ts';
import { forbidden, MatrixError, missingParam, notFound } from '../../errors.ts';
import type { MediaRow } from '../../storage/media.ts';

export function requireAdmin(hs: Homeserver) {
  return async (ctx: ApiContext, next: Next) => {
    const user = await hs.services.accounts.getUser(ctx.state.requester!.userId);
    if (!user?.is_admin) throw forbidden('You are not a server admin');
    await next();
  };
}

export function mediaJson(row: MediaRow): Record<string, unknown> {
  return {
    media_id: row.media_id,
    server_name: row.server_name,
    media_type: row.content_type,
    media_length: row.size,
    upload_name: row.upload_name,
    created_ts: row.created_ts,
    uploaded_ts: row.uploaded_ts,
    last_access_ts: row.last_access_ts,
    quarantined_by: row.quarantined_by,
    quarantined_ts: row.quarantined_ts,
    pending: row.uploaded_ts === null,
  };
}

function intParam(ctx: ApiContext, name: string, def: number | null, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const v = ctx.query[name];
  if (v === undefined) {
    if (def === null) throw missingParam(`${name} is required`);
    return def;
  }
  if (typeof v !== 'string' || !/^\d{1,16}$/.test(v) || Number(v) < min || Number(v) > max) throw new MatrixError(400, 'M_INVALID_PARAM', `${name} must be an integer between ${min} and ${max}`);
  return Number(v);
}

export function mediaAdminRoutes(api: Api, hs: Homeserver): void {
  const guard = [requireAuth(hs.tokens), requireAdmin(hs)];
  const media = () => hs.services.media;

  api.delete('client', '/_synapse/admin/v1/media/:serverName/:mediaId', ...guard, async (ctx: ApiContext) => {
    const { serverName, mediaId } = ctx.params as { serverName: string; mediaId: string };
    if (!(await media().deleteMedia(serverName, mediaId))) throw notFound('Media not found');
    ctx.body = { deleted_media: [mediaId], total: 1 };
  });

  for (const [verb, on] of [['quarantine', true], ['unquarantine', false]] as const) {
    api.post('client', `/_synapse/admin/v1/media/${verb}/:serverName/:mediaId`, ...guard, async (ctx: ApiContext) => {
      const { serverName, mediaId } = ctx.params as { serverName: string; mediaId: string };
      if (!(await media().setQuarantined(serverName, mediaId, ctx.state.requester!.userId, on))) throw notFound('Media not found');
      ctx.body = {};
    });
  }

  api.get('client', '/_synapse/admin/v1/users/:userId/media', ...guard, async (ctx: ApiContext) => {
    const from = intParam(ctx, 'from', 0);
    const limit = intParam(ctx, 'limit', 100, 1, 1000);
    const { rows, total } = await media().listUserMedia(ctx.params.userId!, from, limit);
    ctx.body = { media: rows.map(mediaJson), total, ...(from + rows.length < total ? { next_token: from + rows.length } : {}) };
  });

  api.post('client', '/_synapse/admin/v1/purge_media_cache', ...guard, async (ctx: ApiContext) => {
    const before = intParam(ctx, 'before_ts', null);
    ctx.body = { deleted: await media().purgeRemoteCache(before) };
  });
}
