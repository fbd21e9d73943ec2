// Client-server rooms endpoints: creating rooms, reading events and state, members, joined rooms
// (client-server-api "Rooms", "Getting events for a room", create_room.yaml, rooms.yaml,
// list_joined_rooms.yaml). The feature module that mounts every rooms route lives here too.
import type { JsonObject } from '../../../spec/events.ts';
import { splitStateKey, stateKey } from '../../../spec/events.ts';
import type { Homeserver, Module } from '../../homeserver.ts';
import { clientPaths, type Api, type ApiContext } from '../../http/api.ts';
import { readJsonObject } from '../../http/body.ts';
import { requireAuth } from '../../auth/access-tokens.ts';
import { MatrixError, forbidden, notFound } from '../../errors.ts';
import { initRooms } from '../../services/rooms.ts';
import { membershipRoutes } from './membership.ts';
import { sendRoutes } from './send.ts';
import { upgradeRoutes } from './upgrade.ts';
import { directoryRoutes } from './directory.ts';
import { canSeeEvent, checkRoomAccess, currentHistoryVisibility, readableRoomState } from '../../services/visibility.ts';
import { formatWithAggregations } from '../../services/relations.ts';

function requireUserNotGuest(hs: Homeserver) {
  const auth = requireAuth(hs.tokens);
  return (ctx: ApiContext, next: () => Promise<void>) =>
    auth(ctx, async () => {
      if (ctx.state.requester?.isGuest) throw new MatrixError(403, 'M_GUEST_ACCESS_FORBIDDEN', 'Guest accounts may not use this endpoint');
      await next();
    });
}

export function roomRoutes(api: Api, hs: Homeserver): void {
  const rooms = () => hs.services.rooms;
  const auth = requireAuth(hs.tokens);

  api.post('client', clientPaths('/createRoom'), requireUserNotGuest(hs), async (ctx: ApiContext) => {
    const body = await readJsonObject(ctx);
    const { roomId } = await rooms().createRoom(ctx.state.requester!, body);
    ctx.body = { room_id: roomId };
  });

  api.get('client', clientPaths('/joined_rooms'), auth, async (ctx: ApiContext) => {
    ctx.body = { joined_rooms: await rooms().getJoinedRoomIds(ctx.state.requester!.userId) };
  });

  // rooms.yaml GET /rooms/{roomId}/event/{eventId}: 404 when not found or not visible.
  api.get('client', clientPaths('/rooms/:roomId/event/:eventId'), auth, async (ctx: ApiContext) => {
    const { roomId, eventId } = ctx.params;
    const requester = ctx.state.requester!;
    // History visibility (services/visibility.ts). The spec answers 404 both for unknown events and for
    // events the user may not read, so a room the user cannot see at all is a 404 here too.
    const access = await checkRoomAccess(hs, requester.userId, roomId!).catch((err: unknown) => {
      if (err instanceof MatrixError && err.errcode === 'M_FORBIDDEN') throw notFound('Event not found');
      throw err;
    });
    const e = await rooms().getEvent(eventId!);
    if (!e || e.roomId !== roomId || e.streamOrdering > access.maxStream || !(await canSeeEvent(hs, requester.userId, e))) {
      throw notFound('Event not found');
    }
    ctx.body = (await formatWithAggregations(hs, requester, [e]))[0];
  });

  // rooms.yaml GET /rooms/{roomId}/state: current state, or the state when the user left.
  api.get('client', clientPaths('/rooms/:roomId/state'), auth, async (ctx: ApiContext) => {
    const visible = await readableRoomState(hs, ctx.params.roomId!, ctx.state.requester!.userId);
    if (!visible) throw forbidden('You are not a member of this room');
    ctx.body = await rooms().formatEvents(await rooms().getStateEvents(visible.state), { requester: ctx.state.requester! });
  });

  api.get('client', clientPaths('/rooms/:roomId/state/:eventType{/:stateKey}'), auth, async (ctx: ApiContext) => {
    const { roomId, eventType } = ctx.params;
    const sk = ctx.params.stateKey ?? '';
    const visible = await readableRoomState(hs, roomId!, ctx.state.requester!.userId);
    if (!visible) throw forbidden('You are not a member of this room');
    const id = visible.state.get(stateKey(eventType!, sk));
    const e = id ? await rooms().getEvent(id) : undefined;
    if (!e) throw notFound('No such state event');
    const [formatted] = await rooms().formatEvents([e], { requester: ctx.state.requester! });
    // A redacted state event reads as its redacted content (client-server-api "Redactions" note).
    ctx.body = ctx.query.format === 'event' ? formatted : formatted!.content;
  });

  api.get('client', clientPaths('/rooms/:roomId/joined_members'), auth, async (ctx: ApiContext) => {
    const roomId = ctx.params.roomId!;
    const m = await rooms().getMembership(roomId, ctx.state.requester!.userId);
    if (m?.membership !== 'join' && (await currentHistoryVisibility(hs, roomId)) !== 'world_readable') throw forbidden('You are not a member of this room');
    const state = (await rooms().getCurrentStateIds(roomId))!;
    const ids: string[] = [];
    for (const [k, id] of state) if (k.startsWith('m.room.member\u0000')) ids.push(id);
    const joined: Record<string, { display_name?: string; avatar_url?: string }> = {};
    for (const e of await rooms().getEvents(ids)) {
      const c = e.pdu.content;
      if (c['membership'] !== 'join' || typeof e.pdu.state_key !== 'string') continue;
      const entry: { display_name?: string; avatar_url?: string } = {};
      if (typeof c['displayname'] === 'string') entry.display_name = c['displayname'];
      if (typeof c['avatar_url'] === 'string') entry.avatar_url = c['avatar_url'];
      joined[e.pdu.state_key] = entry;
    }
    ctx.body = { joined };
  });

  // rooms.yaml GET /rooms/{roomId}/members: current (or at leave), or at the `at` pagination token.
  api.get('client', clientPaths('/rooms/:roomId/members'), auth, async (ctx: ApiContext) => {
    const visible = await readableRoomState(hs, ctx.params.roomId!, ctx.state.requester!.userId);
    if (!visible) throw forbidden('You are not a member of this room');
    if (typeof ctx.query.at === 'string') {
      const at = await hs.services.history.stateAtToken(ctx.params.roomId!, ctx.query.at, visible.upTo);
      if (at) {
        // History visibility applies to the room's state at that point too: a user who could not see
        // the room then (e.g. before joining a `joined` room) gets no members from it.
        const ev = await rooms().getEvent(at.eventId);
        visible.state = ev && (await canSeeEvent(hs, ctx.state.requester!.userId, ev)) ? at.state : new Map();
      }
    }
    const only = typeof ctx.query.membership === 'string' ? ctx.query.membership : undefined;
    const not = typeof ctx.query.not_membership === 'string' ? ctx.query.not_membership : undefined;
    const ids: string[] = [];
    for (const [k, id] of visible.state) if (splitStateKey(k)[0] === 'm.room.member') ids.push(id);
    const events = (await rooms().getEvents(ids)).filter((e) => {
      const m = (e.pdu.content as JsonObject)['membership'];
      return (only === undefined || m === only) && (not === undefined || m !== not);
    });
    ctx.body = { chunk: await rooms().formatEvents(events, { requester: ctx.state.requester! }) };
  });
}

export const roomsModule: Module = {
  name: 'rooms',
  async init(hs) {
    await initRooms(hs).init();
  },
  routes(api, hs) {
    roomRoutes(api, hs);
    membershipRoutes(api, hs);
    sendRoutes(api, hs);
    upgradeRoutes(api, hs);
    directoryRoutes(api, hs);
  },
};
