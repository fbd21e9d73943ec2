// Room aliases (client-server-api "Room aliases", directory.yaml) and a room's published flag
// (list_public_rooms.yaml GET/PUT /directory/list/room/{roomId}). Aliases on other servers need
// federation, which comes later.
import type { Homeserver } from '../../homeserver.ts';
import { clientPaths, type Api, type ApiContext } from '../../http/api.ts';
import { readJsonObject } from '../../http/body.ts';
import { requireAuth } from '../../auth/access-tokens.ts';
import { badJson, forbidden, invalidParam, missingParam, notFound } from '../../errors.ts';
import { isValidRoomAlias, parseRoomAlias } from '../../../spec/identifiers.ts';
import { getRequiredPowerLevel, getUserPowerLevel } from '../../../spec/power-levels.ts';
import { stateKey, type IdentifiedPdu, type StateMap } from '../../../spec/events.ts';

export function directoryRoutes(api: Api, hs: Homeserver): void {
  const rooms = () => hs.services.rooms;
  const auth = requireAuth(hs.tokens);

  const aliasParam = (ctx: ApiContext): string => {
    const alias = ctx.params.roomAlias!;
    if (!isValidRoomAlias(alias)) throw invalidParam('Invalid room alias');
    return alias;
  };

  api.get('client', clientPaths('/directory/room/:roomAlias'), async (ctx: ApiContext) => {
    const alias = aliasParam(ctx);
    const r = await rooms().resolveAlias(alias);
    if (!r) {
      if (parseRoomAlias(alias)!.serverName !== hs.serverName) throw notFound('Resolving aliases on other servers needs federation, which is not available yet');
      throw notFound('Room alias not found');
    }
    ctx.body = { room_id: r.roomId, servers: r.servers };
  });

  api.put('client', clientPaths('/directory/room/:roomAlias'), auth, async (ctx: ApiContext) => {
    const alias = aliasParam(ctx);
    const body = await readJsonObject(ctx);
    const roomId = body['room_id'];
    if (roomId === undefined) throw missingParam('room_id is required');
    if (typeof roomId !== 'string') throw badJson('room_id must be a string');
    await rooms().createAlias(ctx.state.requester!, alias, roomId);
    ctx.body = {};
  });

  api.delete('client', clientPaths('/directory/room/:roomAlias'), auth, async (ctx: ApiContext) => {
    await rooms().deleteAlias(ctx.state.requester!, aliasParam(ctx));
    ctx.body = {};
  });

  api.get('client', clientPaths('/rooms/:roomId/aliases'), auth, async (ctx: ApiContext) => {
    const roomId = ctx.params.roomId!;
    const visible = await rooms().visibleState(roomId, ctx.state.requester!.userId);
    if (!visible?.current) throw forbidden('You are not a member of this room');
    ctx.body = { aliases: await rooms().getLocalAliases(roomId) };
  });

  api.get('client', clientPaths('/directory/list/room/:roomId'), async (ctx: ApiContext) => {
    const roomId = ctx.params.roomId!;
    if (!(await rooms().getRoomVersion(roomId))) throw notFound('Unknown room');
    ctx.body = { visibility: (await rooms().isPublished(roomId)) ? 'public' : 'private' };
  });

  api.put('client', clientPaths('/directory/list/room/:roomId'), auth, async (ctx: ApiContext) => {
    const roomId = ctx.params.roomId!;
    const body = await readJsonObject(ctx);
    const v = body['visibility'];
    if (v !== 'public' && v !== 'private') throw invalidParam('visibility must be "public" or "private"');
    const rv = await rooms().getRoomVersion(roomId);
    if (!rv) throw notFound('Unknown room');
    // Publishing needs the power to change m.room.canonical_alias, as for aliases (a choice of ours).
    const state = (await rooms().getCurrentStateIds(roomId))!;
    const keys = [stateKey('m.room.create', ''), stateKey('m.room.power_levels', '')];
    const authState: StateMap<IdentifiedPdu> = new Map();
    for (const k of keys) {
      const id = state.get(k);
      const pdu = id ? await rooms().writer.getPdu(id) : undefined;
      if (pdu) authState.set(k, pdu);
    }
    const userId = ctx.state.requester!.userId;
    const m = await rooms().getMembership(roomId, userId);
    if (m?.membership !== 'join' || getUserPowerLevel(rv, authState, userId) < getRequiredPowerLevel(rv, authState, 'm.room.canonical_alias', true)) {
      throw forbidden('You may not change the visibility of this room');
    }
    await rooms().setPublished(roomId, v === 'public');
    ctx.body = {};
  });
}
