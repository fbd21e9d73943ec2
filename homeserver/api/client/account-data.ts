// Client config (client-server-api "Client Config") and room tagging ("Room Tagging"): global and
// per-room account data, tags (stored as the room's m.tag account data), m.ignored_user_list checks.
import { isValidRoomId, parseUserId } from '../../../spec/identifiers.ts';
import type { Homeserver } from '../../homeserver.ts';
import { clientPaths, type Api, type ApiContext } from '../../http/api.ts';
import { readJsonObject } from '../../http/body.ts';
import { MatrixError, badJson, forbidden, invalidParam, notFound } from '../../errors.ts';
import { requireUser } from './helpers.ts';

/** Types the server manages through other APIs (read markers, push rules): 405 M_BAD_JSON. */
const SERVER_MANAGED = new Set(['m.fully_read', 'm.push_rules']);
const MAX_TYPE_BYTES = 255;

function ownUser(ctx: ApiContext): string {
  const userId = ctx.params.userId!;
  if (userId !== ctx.state.requester!.userId) throw forbidden("Cannot access another user's account data");
  return userId;
}

function roomIdParam(ctx: ApiContext): string {
  const roomId = ctx.params.roomId!;
  if (!isValidRoomId(roomId)) throw invalidParam('Invalid room id');
  return roomId;
}

function typeParam(ctx: ApiContext): string {
  const type = ctx.params.type!;
  if (type.length === 0 || Buffer.byteLength(type) > MAX_TYPE_BYTES) throw invalidParam('Invalid account data type');
  return type;
}

function checkContent(type: string, content: Record<string, unknown>, userId: string): void {
  if (SERVER_MANAGED.has(type)) throw new MatrixError(405, 'M_BAD_JSON', `Cannot set ${type} through this API`);
  if (type === 'm.ignored_user_list') {
    const ignored = content.ignored_users;
    if (ignored === null || typeof ignored !== 'object' || Array.isArray(ignored)) throw badJson('ignored_users must be an object');
    for (const id of Object.keys(ignored)) {
      if (!parseUserId(id)) throw badJson(`ignored_users: ${id} is not a user id`);
      if (id === userId) throw badJson('You cannot ignore yourself');
    }
  }
  if (type === 'm.direct') {
    for (const [id, rooms] of Object.entries(content)) {
      if (!parseUserId(id) || !Array.isArray(rooms) || !rooms.every((r) => typeof r === 'string')) throw badJson('m.direct maps user ids to lists of room ids');
    }
  }
}

export function accountDataRoutes(api: Api, hs: Homeserver): void {
  const data = () => hs.services.accounts.accountData;
  const auth = requireUser(hs);

  api.put('client', clientPaths('/user/:userId/account_data/:type'), auth, async (ctx: ApiContext) => {
    const userId = ownUser(ctx);
    const type = typeParam(ctx);
    const content = await readJsonObject(ctx);
    checkContent(type, content, userId);
    await data().set(userId, null, type, content);
    ctx.body = {};
  });

  api.get('client', clientPaths('/user/:userId/account_data/:type'), auth, async (ctx: ApiContext) => {
    const userId = ownUser(ctx);
    const content = await data().get(userId, null, typeParam(ctx));
    if (!content) throw notFound('No account data of this type');
    ctx.body = content;
  });

  api.put('client', clientPaths('/user/:userId/rooms/:roomId/account_data/:type'), auth, async (ctx: ApiContext) => {
    const userId = ownUser(ctx);
    const roomId = roomIdParam(ctx);
    const type = typeParam(ctx);
    const content = await readJsonObject(ctx);
    checkContent(type, content, userId);
    await data().set(userId, roomId, type, content);
    ctx.body = {};
  });

  api.get('client', clientPaths('/user/:userId/rooms/:roomId/account_data/:type'), auth, async (ctx: ApiContext) => {
    const userId = ownUser(ctx);
    const content = await data().get(userId, roomIdParam(ctx), typeParam(ctx));
    if (!content) throw notFound('No account data of this type');
    ctx.body = content;
  });

  // ---- tags: the room's m.tag account data {tags: {name: {order?}}} ----

  api.get('client', clientPaths('/user/:userId/rooms/:roomId/tags'), auth, async (ctx: ApiContext) => {
    const userId = ownUser(ctx);
    const content = await data().get(userId, roomIdParam(ctx), 'm.tag');
    const tags = content?.tags;
    ctx.body = { tags: tags && typeof tags === 'object' && !Array.isArray(tags) ? tags : {} };
  });

  api.put('client', clientPaths('/user/:userId/rooms/:roomId/tags/:tag'), auth, async (ctx: ApiContext) => {
    const userId = ownUser(ctx);
    const roomId = roomIdParam(ctx);
    const tag = ctx.params.tag!;
    if (tag.length === 0 || Buffer.byteLength(tag) > MAX_TYPE_BYTES) throw invalidParam('Invalid tag name');
    const body = await readJsonObject(ctx);
    if (body.order !== undefined && (typeof body.order !== 'number' || !Number.isFinite(body.order))) throw badJson('order must be a number');
    await data().update(userId, roomId, 'm.tag', (cur) => {
      const tags = cur?.tags && typeof cur.tags === 'object' && !Array.isArray(cur.tags) ? { ...(cur.tags as Record<string, unknown>) } : {};
      tags[tag] = body;
      return { tags };
    });
    ctx.body = {};
  });

  api.delete('client', clientPaths('/user/:userId/rooms/:roomId/tags/:tag'), auth, async (ctx: ApiContext) => {
    const userId = ownUser(ctx);
    const roomId = roomIdParam(ctx);
    const tag = ctx.params.tag!;
    await data().update(userId, roomId, 'm.tag', (cur) => {
      const tags = cur?.tags && typeof cur.tags === 'object' && !Array.isArray(cur.tags) ? { ...(cur.tags as Record<string, unknown>) } : {};
      delete tags[tag];
      return { tags };
    });
    ctx.body = {};
  });
}
