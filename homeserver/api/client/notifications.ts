// GET /notifications (notifications.yaml): the events the user was notified about, newest first.
import type { Homeserver } from '../../homeserver.ts';
import { clientPaths, type Api, type ApiContext } from '../../http/api.ts';
import { requireAuth } from '../../auth/access-tokens.ts';
import { invalidParam } from '../../errors.ts';
import { DEFAULT_ROOM_VERSION, getRoomVersion } from '../../../spec/room-versions.ts';
import { toClientEvent } from '../../services/client-events.ts';

export function notificationRoutes(api: Api, hs: Homeserver): void {
  const auth = requireAuth(hs.tokens);
  api.get('client', clientPaths('/notifications'), auth, async (ctx: ApiContext) => {
    const userId = ctx.state.requester!.userId;
    const q = ctx.query;
    const from = typeof q.from === 'string' && q.from !== '' ? q.from : undefined;
    if (from !== undefined && !/^\d{1,16}$/.test(from)) throw invalidParam('Invalid from token');
    const limitRaw = typeof q.limit === 'string' ? q.limit : undefined;
    if (limitRaw !== undefined && !/^\d{1,6}$/.test(limitRaw)) throw invalidParam('limit must be a non-negative integer');
    const limit = Math.min(Math.max(limitRaw !== undefined ? Number(limitRaw) : 20, 1), 100);
    const { items, next } = await hs.services.notifications.list(userId, { ...(from !== undefined ? { from: Number(from) } : {}), limit, onlyHighlight: q.only === 'highlight' });
    const events = new Map((await hs.services.rooms.getEvents(items.map((i) => i.eventId))).map((e) => [e.eventId, e]));
    const rooms = hs.services.rooms;
    const redactionIds = [...events.values()].flatMap((e) => (e.redactedBy ? [e.redactedBy] : []));
    const redactions = new Map((await rooms.getEvents(redactionIds)).map((e) => [e.eventId, e]));
    const notifications = [];
    for (const i of items) {
      const e = events.get(i.eventId);
      if (!e) continue;
      const rv = (await rooms.getRoomVersion(e.roomId)) ?? getRoomVersion(DEFAULT_ROOM_VERSION)!;
      const r = e.redactedBy ? redactions.get(e.redactedBy) : undefined;
      const now = hs.now();
      notifications.push({
        actions: i.actions,
        event: toClientEvent(e.eventId, e.pdu, { rv, roomId: e.roomId, now, withoutRoomId: true, ...(r ? { redactedBecause: toClientEvent(r.eventId, r.pdu, { rv, roomId: r.roomId, now, withoutRoomId: true }) } : {}) }),
        read: i.read,
        room_id: i.roomId,
        ts: i.ts,
      });
    }
    ctx.body = { notifications, ...(next !== undefined ? { next_token: String(next) } : {}) };
  });
}
