// Discovery routes: /publicRooms (list_public_rooms.yaml), /user_directory/search (users.yaml), /search
// (search.yaml), /rooms/{roomId}/hierarchy (space_hierarchy.yaml) and the /report endpoints
// (report_content.yaml). Parsing here; the services decide.
import type { Homeserver } from '../../homeserver.ts';
import { rateLimit } from '../../homeserver.ts';
import { clientPaths, type Api, type ApiContext } from '../../http/api.ts';
import { readJsonObject } from '../../http/body.ts';
import { requireAuth } from '../../auth/access-tokens.ts';
import { badJson, invalidParam } from '../../errors.ts';
import { requireLocalServer } from '../../services/room-directory.ts';
import { boolQuery, intQuery, queryString } from './history.ts';

function optLimit(v: unknown, max: number): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw badJson('limit must be a non-negative integer');
  return Math.min(v, max);
}

export function discoveryRoutes(api: Api, hs: Homeserver): void {
  const auth = requireAuth(hs.tokens);
  const reportLimit = rateLimit(hs, 'message');

  // GET /publicRooms needs no access token (list_public_rooms.yaml).
  api.get('client', clientPaths('/publicRooms'), async (ctx: ApiContext) => {
    requireLocalServer(hs, queryString(ctx, 'server'));
    const since = queryString(ctx, 'since');
    const limit = queryString(ctx, 'limit') !== undefined ? intQuery(ctx, 'limit', 100, 0, 500) : undefined;
    ctx.body = await hs.services.roomDirectory.publicRooms({ ...(limit !== undefined ? { limit } : {}), ...(since ? { since } : {}) });
  });

  api.post('client', clientPaths('/publicRooms'), auth, async (ctx: ApiContext) => {
    requireLocalServer(hs, queryString(ctx, 'server'));
    const body = await readJsonObject(ctx);
    const limit = optLimit(body['limit'], 500);
    const since = body['since'];
    if (since !== undefined && since !== null && typeof since !== 'string') throw badJson('since must be a string');
    const filter = body['filter'];
    if (filter !== undefined && filter !== null && (typeof filter !== 'object' || Array.isArray(filter))) throw badJson('filter must be an object');
    const f = (filter ?? {}) as Record<string, unknown>;
    const term = f['generic_search_term'];
    if (term !== undefined && term !== null && typeof term !== 'string') throw badJson('filter.generic_search_term must be a string');
    const roomTypes = f['room_types'];
    if (roomTypes !== undefined && (!Array.isArray(roomTypes) || roomTypes.some((t) => t !== null && typeof t !== 'string'))) {
      throw badJson('filter.room_types must be a list of strings or null');
    }
    if (body['third_party_instance_id'] !== undefined && body['third_party_instance_id'] !== null) {
      // No third-party networks are bridged here: their lists are empty.
      ctx.body = { chunk: [], total_room_count_estimate: 0 };
      return;
    }
    ctx.body = await hs.services.roomDirectory.publicRooms({
      ...(limit !== undefined ? { limit } : {}),
      ...(typeof since === 'string' ? { since } : {}),
      ...(typeof term === 'string' ? { searchTerm: term } : {}),
      ...(Array.isArray(roomTypes) ? { roomTypes: roomTypes as Array<string | null> } : {}),
    });
  });

  api.post('client', clientPaths('/user_directory/search'), auth, async (ctx: ApiContext) => {
    const body = await readJsonObject(ctx);
    const term = body['search_term'];
    if (typeof term !== 'string') throw badJson('search_term must be a string');
    const limit = optLimit(body['limit'], 50) ?? 10;
    ctx.body = await hs.services.userDirectory.search(ctx.state.requester!.userId, term, limit);
  });

  api.post('client', clientPaths('/search'), auth, async (ctx: ApiContext) => {
    const body = await readJsonObject(ctx);
    ctx.body = await hs.services.search.search(ctx.state.requester!, body, queryString(ctx, 'next_batch'));
  });

  api.get('client', clientPaths('/rooms/:roomId/hierarchy', ['v1']), auth, async (ctx: ApiContext) => {
    const from = queryString(ctx, 'from');
    const maxDepthRaw = queryString(ctx, 'max_depth');
    if (maxDepthRaw !== undefined && !/^\d{1,9}$/.test(maxDepthRaw)) throw invalidParam('max_depth must be a non-negative integer');
    ctx.body = await hs.services.roomDirectory.hierarchy(ctx.state.requester!.userId, ctx.params.roomId!, {
      suggestedOnly: boolQuery(ctx, 'suggested_only', false),
      maxDepth: Math.min(maxDepthRaw !== undefined ? Number(maxDepthRaw) : 10, 10),
      limit: intQuery(ctx, 'limit', 50, 1, 100),
      ...(from !== undefined ? { from } : {}),
    });
  });

  api.post('client', clientPaths('/rooms/:roomId/report/:eventId'), auth, reportLimit, async (ctx: ApiContext) => {
    await hs.services.reports.reportEvent(ctx.state.requester!.userId, ctx.params.roomId!, ctx.params.eventId!, await readJsonObject(ctx));
    ctx.body = {};
  });

  api.post('client', clientPaths('/rooms/:roomId/report'), auth, reportLimit, async (ctx: ApiContext) => {
    await hs.services.reports.reportRoom(ctx.state.requester!.userId, ctx.params.roomId!, await readJsonObject(ctx));
    ctx.body = {};
  });

  api.post('client', clientPaths('/users/:userId/report'), auth, reportLimit, async (ctx: ApiContext) => {
    await hs.services.reports.reportUser(ctx.state.requester!.userId, ctx.params.userId!, await readJsonObject(ctx));
    ctx.body = {};
  });
}
