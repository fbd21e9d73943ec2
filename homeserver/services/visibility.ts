// Room history visibility (client-server-api modules/history_visibility.md "Server behaviour"): which
// events a user may see. Every endpoint that returns room events (/messages, /context, /event, /search,
// /relations, /threads, sync timelines) filters through `filterEventsForUser`; endpoints about a whole
// room first call `checkRoomAccess`.
//
// The rules are applied with the state of the room *at the event* (its state group before the event):
//   1. world_readable → allow;
//   2. the user's membership was join → allow;
//   3. shared, and the user joined the room at any point after the event → allow;
//   4. the user's membership was invite and the visibility invited → allow;
//   5. deny.
// A missing or unknown visibility counts as `shared`. For m.room.history_visibility events and the
// user's own m.room.member events the state before *or* after the event may allow it.
import type { IdentifiedPdu, StateMap } from '../../spec/events.ts';
import { stateKey } from '../../spec/events.ts';
import { forbidden } from '../errors.ts';
import type { Homeserver } from '../homeserver.ts';
import type { StoredEvent } from '../storage/rooms-store.ts';

export type HistoryVisibility = 'world_readable' | 'shared' | 'invited' | 'joined';

export function historyVisibilityOf(content: Record<string, unknown> | undefined): HistoryVisibility {
  const v = content?.['history_visibility'];
  return v === 'world_readable' || v === 'invited' || v === 'joined' || v === 'shared' ? v : 'shared';
}

/** How a user may read a room as a whole. */
export interface RoomAccess {
  /** The user's current membership, or null. */
  membership: string | null;
  /** Events with a higher stream ordering are out of reach (the user left at that position). */
  maxStream: number;
  /** Reading without being a member (the room is world_readable now). */
  peeking: boolean;
}

/** Per-request caches: state groups and state events are shared by the many events of a page. */
class Lookup {
  private readonly hs: Homeserver;
  private readonly pdus = new Map<string, Promise<IdentifiedPdu | undefined>>();
  private readonly groups = new Map<string, Promise<StateMap<string>>>();
  constructor(hs: Homeserver) {
    this.hs = hs;
  }
  pdu(id: string): Promise<IdentifiedPdu | undefined> {
    let p = this.pdus.get(id);
    if (!p) {
      p = this.hs.services.rooms.writer.getPdu(id);
      this.pdus.set(id, p);
    }
    return p;
  }
  state(group: string): Promise<StateMap<string>> {
    let p = this.groups.get(group);
    if (!p) {
      p = this.hs.services.rooms.writer.stateGroups.get(group).then((g) => g.state);
      this.groups.set(group, p);
    }
    return p;
  }
  async contentAt(group: string | null, type: string, sk: string): Promise<Record<string, unknown> | undefined> {
    if (!group) return undefined;
    const id = (await this.state(group)).get(stateKey(type, sk));
    return id ? (await this.pdu(id))?.pdu.content : undefined;
  }
}

/** The stream orderings of the user's join events in a room, and whether they are joined now. */
async function joinHistory(hs: Homeserver, roomId: string, userId: string): Promise<{ joinedNow: boolean; lastJoin: number }> {
  const m = await hs.services.rooms.getMembership(roomId, userId);
  if (m?.membership === 'join') return { joinedNow: true, lastJoin: Infinity };
  if (!m) return { joinedNow: false, lastJoin: -Infinity };
  const rows = await hs.db
    .selectFrom('events')
    .select(['json', 'stream_ordering'])
    .where('room_id', '=', roomId)
    .where('type', '=', 'm.room.member')
    .where('state_key', '=', userId)
    .where('rejected_reason', 'is', null)
    .where('soft_failed', '=', false)
    .where('outlier', '=', false)
    .orderBy('stream_ordering', 'desc')
    .execute();
  for (const r of rows) {
    const content = (JSON.parse(r.json) as { content?: Record<string, unknown> }).content;
    if (content?.['membership'] === 'join') return { joinedNow: false, lastJoin: Number(r.stream_ordering) };
  }
  return { joinedNow: false, lastJoin: -Infinity };
}

function allowed(hv: HistoryVisibility, membership: unknown, joinedAfter: boolean): boolean {
  if (hv === 'world_readable') return true;
  if (membership === 'join') return true;
  if (hv === 'shared' && joinedAfter) return true;
  if (membership === 'invite' && hv === 'invited') return true;
  return false;
}

export interface FilterOptions {
  /** Leave out non-state events sent by users the viewer ignores (modules/ignore_users.md). Default true. */
  hideIgnored?: boolean;
}

/**
 * The events `userId` may see, in the order given. `userId` null is an anonymous viewer (only
 * world_readable history). Rejected, soft-failed and outlier events are never visible.
 */
export async function filterEventsForUser(hs: Homeserver, userId: string | null, events: StoredEvent[], opts: FilterOptions = {}): Promise<StoredEvent[]> {
  if (events.length === 0) return [];
  const lookup = new Lookup(hs);
  const joins = new Map<string, Promise<{ joinedNow: boolean; lastJoin: number }>>();
  const ignored = userId && opts.hideIgnored !== false ? await ignoredUsers(hs, userId) : new Set<string>();
  const verdicts = await Promise.all(
    events.map(async (e) => {
      if (e.rejectedReason !== null || e.softFailed || e.outlier) return false;
      if (ignored.has(e.pdu.sender) && typeof e.pdu.state_key !== 'string') return false;
      let history = joins.get(e.roomId);
      if (!history) {
        history = userId ? joinHistory(hs, e.roomId, userId) : Promise.resolve({ joinedNow: false, lastJoin: -Infinity });
        joins.set(e.roomId, history);
      }
      return visibleWith(lookup, userId, e, await history);
    }),
  );
  return events.filter((_, i) => verdicts[i]);
}

async function visibleWith(lookup: Lookup, userId: string | null, e: StoredEvent, history: { joinedNow: boolean; lastJoin: number }): Promise<boolean> {
  const before = e.stateGroupBefore ?? e.stateGroup;
  if (!before) return false;
  const joinedAfter = history.joinedNow || history.lastJoin > e.streamOrdering;
  const hvBefore = historyVisibilityOf(await lookup.contentAt(before, 'm.room.history_visibility', ''));
  const memberBefore = userId ? (await lookup.contentAt(before, 'm.room.member', userId))?.['membership'] : undefined;
  if (allowed(hvBefore, memberBefore, joinedAfter)) return true;
  // "before *or* after" for visibility changes and the user's own membership changes.
  const isHv = e.pdu.type === 'm.room.history_visibility' && e.pdu.state_key === '';
  const isOwnMember = userId !== null && e.pdu.type === 'm.room.member' && e.pdu.state_key === userId;
  if (!isHv && !isOwnMember) return false;
  const hvAfter = isHv ? historyVisibilityOf(e.pdu.content) : hvBefore;
  const memberAfter = isOwnMember ? e.pdu.content['membership'] : memberBefore;
  return allowed(hvAfter, memberAfter, joinedAfter);
}

/** Whether the user may see one event. */
export async function canSeeEvent(hs: Homeserver, userId: string | null, event: StoredEvent): Promise<boolean> {
  return (await filterEventsForUser(hs, userId, [event], { hideIgnored: false })).length === 1;
}

/** The user's membership ('join', 'leave', …) in the state before (or after) an event, or null. */
export async function membershipAtEvent(hs: Homeserver, userId: string, event: StoredEvent, at: 'before' | 'after' = 'before'): Promise<string | null> {
  const lookup = new Lookup(hs);
  const group = at === 'before' ? (event.stateGroupBefore ?? event.stateGroup) : event.stateGroup;
  const m = (await lookup.contentAt(group, 'm.room.member', userId))?.['membership'];
  return typeof m === 'string' ? m : null;
}

/** The room's current history visibility. */
export async function currentHistoryVisibility(hs: Homeserver, roomId: string): Promise<HistoryVisibility | null> {
  const state = await hs.services.rooms.getCurrentStateIds(roomId);
  if (!state) return null;
  const id = state.get(stateKey('m.room.history_visibility', ''));
  const pdu = id ? await hs.services.rooms.writer.getPdu(id) : undefined;
  return historyVisibilityOf(pdu?.pdu.content);
}

/**
 * Whether `userId` may read the room's history at all: joined; or left/banned after having been joined
 * (up to the position they left at); or the room is world_readable now (peeking). Otherwise — and for
 * unknown rooms, so their existence does not leak — M_FORBIDDEN.
 */
export async function checkRoomAccess(hs: Homeserver, userId: string | null, roomId: string): Promise<RoomAccess> {
  const m = userId ? await hs.services.rooms.getMembership(roomId, userId) : undefined;
  if (m?.membership === 'join') return { membership: 'join', maxStream: Infinity, peeking: false };
  if (m && (m.membership === 'leave' || m.membership === 'ban')) {
    const h = await joinHistory(hs, roomId, userId!);
    if (h.lastJoin > -Infinity) return { membership: m.membership, maxStream: m.streamOrdering, peeking: false };
  }
  if ((await currentHistoryVisibility(hs, roomId)) === 'world_readable') return { membership: m?.membership ?? null, maxStream: Infinity, peeking: true };
  throw forbidden('You are not allowed to view this room');
}

async function ignoredUsers(hs: Homeserver, userId: string): Promise<Set<string>> {
  const accountData = hs.services.accounts?.accountData;
  return accountData ? accountData.ignoredUsers(userId) : new Set();
}

/**
 * The state a user may read of a room as a whole (/state, /members): the rooms service's answer
 * (current state for members, the state when they left for former members), or — for anyone — the
 * current state of a world_readable room (modules/room_previews.md). Null: M_FORBIDDEN.
 */
export async function readableRoomState(hs: Homeserver, roomId: string, userId: string): Promise<{ state: StateMap<string>; current: boolean; upTo: number } | null> {
  const visible = await hs.services.rooms.visibleState(roomId, userId);
  if (visible) return visible;
  if ((await currentHistoryVisibility(hs, roomId)) !== 'world_readable') return null;
  const state = await hs.services.rooms.getCurrentStateIds(roomId);
  return state ? { state, current: true, upTo: Infinity } : null;
}
