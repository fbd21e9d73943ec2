// The /sync engine (client-server-api "Syncing", sync.yaml).
//
// A response covers everything up to a vector of stream positions read at its start (one per stream:
// `events` from the rooms service — which also covers the push actions, written with their events —
// and every registered SyncStream);
// next_batch encodes that vector (token.ts). Every position is "the highest at which all writes have
// committed", and every read below is bounded by it, so a write that commits late with a lower
// position is still in a later response: an incremental sync never misses an event.
//
// Rooms (client-server-api "Syncing" and sync.yaml `rooms`):
// - join: a room appears on an initial sync, on full_state, when the user joined since the token
//   (with its full state, like an initial sync of that room), or when anything in it changed: new
//   timeline events, ephemeral events, room account data, or unread counts.
//   `timeline` holds the newest events after the token (or of the room), `limited` when older ones in
//   range were left out, with `prev_batch` the gap's token. `state` is the state between the token and
//   the start of the timeline: the full state at the timeline's start when the room is new to the
//   client, else the difference between the state at the token and at the timeline's start (empty
//   when the timeline is not limited, as every change is then in the timeline). With
//   use_state_after, `state_after` is the same up to the end of the timeline instead.
// - invite / knock: rooms whose invite or knock is new since the token, with stripped state.
// - leave: rooms left (or banned from, or whose invite was rejected or withdrawn) since the token,
//   with the timeline up to the leave; on an initial sync only with the filter's include_leave.
// Lazy-loading members (client-server-api "Lazy-loading room members"): only the member events of the
// timeline's senders (and the user's own) are sent, and, unless include_redundant_members, not again
// to a device that already received them.
import type { RawBuilder } from 'kysely';
import type { JsonObject, StateKey, StateMap } from '../../spec/events.ts';
import { stateKey } from '../../spec/events.ts';
import { defaultRuleset } from '../../spec/push-rules.ts';
import { getRoomVersion, DEFAULT_ROOM_VERSION, type RoomVersion } from '../../spec/room-versions.ts';
import type { Homeserver } from '../homeserver.ts';
import type { Requester } from '../http/api.ts';
import { filterEventsForUser } from '../services/visibility.ts';
import { toClientEvent, type ClientEvent } from '../services/client-events.ts';
import type { PresenceState } from '../services/presence.ts';
import { unreadFromRows, type RoomUnread } from '../services/notifications.ts';
import { getEventsByIds, type StoredEvent } from '../storage/rooms-store.ts';
import type { SyncContribution, SyncRequestInfo, SyncStream } from './extensions.ts';
import { containsUrlAllowed, eventAllowed, filterEvents, projectFields, roomAllowed, timelineLimit, type EventFilter, type SyncFilter } from './filter.ts';
import { SyncNotifier, type Waiter } from './notifier.ts';
import { maxPositionColumn, readColumns } from './ordered-stream.ts';
import { incrementalReadAhead, membershipRowsColumn, membershipsFromRows, readAheadTimelines, membershipsAtPosition, roomVersions, stateGroupsAt, summaries, timelines, transactionIds, type MembershipAt, type TimelineRange } from './store.ts';
import { encodeToken, eventsToken, requireToken, type StreamPositions } from './token.ts';

declare module '../homeserver.ts' {
  interface Services {
    sync: SyncService;
  }
}

export const MAX_SYNC_TIMEOUT_MS = 5 * 60_000;
/** Streams whose room parts are re-read from scratch for rooms the user joined since the token. */
const ROOM_SCOPED_STREAMS = new Set(['typing', 'receipts', 'account_data']);
/** Stripped state of invites and knocks (client-server-api "Stripped state": the recommended events). */
const STRIPPED_TYPES = ['m.room.create', 'm.room.join_rules', 'm.room.name', 'm.room.avatar', 'm.room.canonical_alias', 'm.room.encryption', 'm.room.topic'];
const LAZY_CACHE_DEVICES = 2_000;
const LAZY_CACHE_ENTRIES = 5_000;
const JOINED_CACHE_USERS = 100_000;
/** How long a response's waiter is kept for the client's next request (clients come back at once). */
const LINGER_MS = 5_000;
const LINGER_MAX = 100_000;

export interface SyncParams {
  since: string | null;
  timeoutMs: number;
  fullState: boolean;
  setPresence: PresenceState;
  filter: SyncFilter;
  useStateAfter: boolean;
}

export type SyncResponse = Record<string, unknown> & { next_batch: string };

interface JoinedRoomPlan {
  roomId: string;
  /** Full state (initial sync, full_state, newly joined) or a delta since the token. */
  full: boolean;
  range: TimelineRange;
}

interface LeftRoomPlan {
  roomId: string;
  membership: MembershipAt;
  range: TimelineRange;
  /** The state since the token (false: the user had not seen the room, e.g. a rejected invite). */
  withState: boolean;
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

export class SyncService {
  private readonly hs: Homeserver;
  readonly notifier: SyncNotifier;
  /** Per (user, device): member events already sent (room \0 user → event id), for lazy loading. */
  private readonly sentMembers = new Map<string, Map<string, string>>();
  /** Per user: the rooms the last build found joined (roomChannels), at most JOINED_CACHE_USERS users. */
  private readonly joinedRooms = new Map<string, Set<string>>();
  /** Waiters of recent responses, by user, device and the response's next_batch (linger / takeLingering). */
  private readonly lingering = new Map<string, { waiter: Waiter; timer: NodeJS.Timeout }>();

  constructor(hs: Homeserver) {
    this.hs = hs;
    this.notifier = new SyncNotifier(hs.bus);
    hs.onShutdown(() => {
      for (const key of [...this.lingering.keys()]) this.dropLingering(key);
      this.notifier.wakeAll();
    });
  }

  private get streams(): SyncStream[] {
    return this.hs.services.syncStreams.streams;
  }

  /** GET /sync. */
  async sync(requester: Requester, p: SyncParams): Promise<SyncResponse> {
    const since = p.since !== null ? requireToken(p.since) : null;
    const presence = this.hs.services.presence;
    const counted = presence ? await presence.syncStarted(requester.userId, p.setPresence) : false;
    try {
      if (since) {
        for (const s of this.streams) {
          const pos = since.get(s.name);
          if (s.acknowledge && pos !== undefined) await s.acknowledge(requester, pos);
        }
      }
      const canWait = since !== null && !p.fullState && p.timeoutMs > 0;
      const deadline = Date.now() + Math.min(p.timeoutMs, MAX_SYNC_TIMEOUT_MS);
      // The client comes back with the token this process just gave it, and the waiter of that response
      // has not fired: nothing for the client has happened since its positions were read (the waiter
      // was registered before), so a build now would be empty. Wait first; build once woken.
      const lingering = canWait ? this.takeLingering(requester, p.since!) : null;
      if (lingering) {
        // Woken only for what the token already covers (a write that committed while the response was
        // built, at or below the positions it read): as good as not woken.
        if (!lingering.firedBeyond(since!)) lingering.fired = false;
        try {
          if (!lingering.fired) await this.notifier.wait(lingering, deadline - Date.now());
          if (lingering.fired && !this.hs.stopping) await this.caughtUp(lingering.eventsPosition, deadline);
        } finally {
          this.notifier.release(lingering);
        }
      }
      for (;;) {
        const rooms = canWait ? await this.roomChannels(requester.userId) : null;
        const waiter = rooms ? await this.notifier.register([`user:${requester.userId}`, ...[...rooms].map((r) => `room:${r}`)]) : null;
        let kept = false;
        try {
          const { body, empty, joinedRoomIds } = await this.build(requester, since, p);
          if (waiter) this.rememberJoined(requester.userId, joinedRoomIds);
          if (!waiter || this.hs.stopping) return body;
          if (!empty) {
            kept = this.linger(requester, body.next_batch, waiter, rooms!, joinedRoomIds);
            return body;
          }
          // The waiter listens on the rooms remembered from an earlier build; the user has joined one
          // since (a join made elsewhere): listen on it too, and build again from there.
          if (joinedRoomIds.some((r) => !rooms!.has(r))) continue;
          const remaining = deadline - Date.now();
          if (remaining <= 0) return body;
          const woken = await this.notifier.wait(waiter, remaining);
          if (!woken || this.hs.stopping) {
            if (!this.hs.stopping) kept = this.linger(requester, body.next_batch, waiter, rooms!, joinedRoomIds);
            return body;
          }
          // Events commit out of order across rooms: a room's wake-up may come while a lower position of
          // another room is still in flight, so the stream has not reached it yet. No other wake-up
          // will follow for this room: wait until the stream gets there, then build again.
          await this.caughtUp(waiter.eventsPosition, deadline);
        } finally {
          if (waiter && !kept) this.notifier.release(waiter);
        }
      }
    } finally {
      if (counted) presence!.syncEnded(requester.userId);
    }
  }

  /**
   * Keeps the waiter of a response for LINGER_MS, for the client's next request with `token` (see
   * sync). Only when it listens on every room the response's build found joined. Returns whether kept.
   */
  private linger(requester: Requester, token: string, waiter: Waiter, rooms: Set<string>, joined: string[]): boolean {
    if (joined.some((r) => !rooms.has(r))) return false;
    const key = lingerKey(requester, token);
    this.dropLingering(key);
    if (this.lingering.size >= LINGER_MAX) this.dropLingering(this.lingering.keys().next().value!);
    const timer = setTimeout(() => this.dropLingering(key), LINGER_MS);
    timer.unref();
    this.notifier.park(waiter);
    this.lingering.set(key, { waiter, timer });
    return true;
  }

  /** Forgets a kept waiter and releases it. */
  private dropLingering(key: string): void {
    const l = this.lingering.get(key);
    if (!l) return;
    clearTimeout(l.timer);
    this.lingering.delete(key);
    this.notifier.release(l.waiter);
  }

  private takeLingering(requester: Requester, token: string): Waiter | null {
    const key = lingerKey(requester, token);
    const l = this.lingering.get(key);
    if (!l) return null;
    this.lingering.delete(key);
    clearTimeout(l.timer);
    this.notifier.unpark(l.waiter);
    return l.waiter;
  }

  /** Resolves once the events stream reaches `position` (or the deadline passes). */
  private async caughtUp(position: number, deadline: number): Promise<void> {
    const rooms = this.hs.services.rooms;
    const stream = rooms.writer.stream;
    if (!stream.multiWriter) return stream.whenReached(position, deadline - Date.now());
    for (let pause = 2; position > 0 && Date.now() < deadline && !this.hs.stopping; pause = Math.min(pause * 2, 50)) {
      if ((await rooms.currentStreamPosition()) >= position) return;
      await new Promise((r) => setTimeout(r, pause));
    }
  }

  /**
   * The rooms whose channels a long-poll of the user listens on: those the user's last build found
   * joined (kept per process), else read now. A stale entry is safe: the channels are registered before
   * the build, and a build that finds a joined room not among them registers again and rebuilds, so
   * a wake-up is never missed — while the common long-poll costs no membership read of its own.
   */
  private async roomChannels(userId: string): Promise<Set<string>> {
    const known = this.joinedRooms.get(userId);
    if (known) return known;
    const rooms = new Set((await this.hs.services.rooms.getRoomsForUser(userId, ['join'])).map((r) => r.roomId));
    this.rememberJoined(userId, [...rooms]);
    return rooms;
  }

  private rememberJoined(userId: string, roomIds: string[]): void {
    const cur = this.joinedRooms.get(userId);
    if (cur && cur.size === roomIds.length && roomIds.every((r) => cur.has(r))) return;
    this.joinedRooms.delete(userId);
    if (this.joinedRooms.size >= JOINED_CACHE_USERS) this.joinedRooms.delete(this.joinedRooms.keys().next().value!);
    this.joinedRooms.set(userId, new Set(roomIds));
  }

  /** One response for the positions current now; `empty` when it carries nothing for the client. */
  async build(requester: Requester, since: StreamPositions | null, p: SyncParams): Promise<{ body: SyncResponse; empty: boolean; joinedRoomIds: string[] }> {
    const hs = this.hs;
    const userId = requester.userId;
    const rooms = hs.services.rooms;
    const notifications = hs.services.notifications;
    const filter = p.filter;
    const rf = filter.room;

    // 1. Positions, all read before any data.
    const streams = this.streams;
    // Push actions are written with their events (services/notifications.ts): the unread counts up to
    // eventsPos are exactly those of the events up to it.
    const eventsPos = await rooms.currentStreamPosition();
    // One statement for the rest: the table-backed positions (the streams that declare positionOf), the
    // requester's own positions (streams with positionColumns), the user's ignore list and membership
    // rows — read after eventsPos, as membershipsFromRows requires.
    const cols: Array<readonly [string, RawBuilder<unknown>]> = [];
    const ownColumns = new Map<number, string[]>();
    streams.forEach((s, i) => {
      if (s.positionOf) cols.push([`p${i}`, maxPositionColumn(s.positionOf.table, s.positionOf.column)]);
      else if (s.positionColumns) {
        const own = Object.entries(s.positionColumns.columns(requester));
        ownColumns.set(i, own.map(([k]) => k));
        for (const [k, c] of own) cols.push([`c${i}_${k}`, c]);
      }
    });
    cols.push(['memberships', membershipRowsColumn(userId)]);
    // The common incremental sync (a woken long-poll) reads its timelines and unread counts in this same
    // statement, on the guess that the user's memberships did not change since the token; the guess is
    // checked below against the memberships read here, and the usual reads run when it was wrong.
    const sinceEvents = since?.get('events') ?? null;
    const limit = timelineLimit(rf);
    const tf = rf?.timeline;
    const mayReadAhead =
      sinceEvents !== null && sinceEvents <= eventsPos && !p.fullState && !rf?.rooms && !rf?.not_rooms && !tf?.rooms && !tf?.not_rooms;
    let ctes: RawBuilder<unknown> | null = null;
    if (mayReadAhead) {
      const ahead = incrementalReadAhead(userId, sinceEvents, eventsPos, limit, tf);
      ctes = ahead.ctes;
      cols.push(...ahead.columns);
    }
    cols.push(['ignored', hs.services.accounts.accountData.ignoredUsersColumn(userId)]);
    const values = await readColumns(hs.db, cols, ctes);
    const next: StreamPositions = new Map([['events', eventsPos]]);
    const computed = await Promise.all(
      streams.map(async (s, i): Promise<number> => {
        if (s.positionOf) return Number(values[`p${i}`] ?? 0);
        if (s.positionColumns) {
          const own: Record<string, unknown> = {};
          for (const k of ownColumns.get(i) ?? []) own[k] = values[`c${i}_${k}`];
          return s.positionColumns.position(requester, own);
        }
        return s.currentPosition(requester);
      }),
    );
    streams.forEach((s, i) => next.set(s.name, computed[i]!));

    const initial = sinceEvents === null;

    // 2. Memberships at eventsPos, sorted into sections.
    const memberships = await membershipsFromRows(hs.db, userId, values['memberships'], eventsPos);
    // The read-ahead holds when no membership of the user changed after the token.
    const readAhead = mayReadAhead && memberships.every((m) => m.streamOrdering <= sinceEvents!);
    const before = initial
      ? new Map<string, { membership: string }>()
      : await membershipsAtPosition(hs.db, userId, memberships.filter((m) => m.streamOrdering > sinceEvents).map((m) => m.roomId), sinceEvents);
    const joinedIds = memberships.filter((m) => m.membership === 'join').map((m) => m.roomId);
    const joinPlans: JoinedRoomPlan[] = [];
    const invites: MembershipAt[] = [];
    const knocks: MembershipAt[] = [];
    const leavePlans: LeftRoomPlan[] = [];
    const newlyJoined: string[] = [];
    for (const m of memberships) {
      if (!roomAllowed(rf, m.roomId)) continue;
      const changed = initial || m.streamOrdering > sinceEvents;
      switch (m.membership) {
        case 'join': {
          const isNew = !initial && changed && before.get(m.roomId)?.membership !== 'join';
          if (isNew) newlyJoined.push(m.roomId);
          joinPlans.push({ roomId: m.roomId, full: initial || p.fullState || isNew, range: { roomId: m.roomId, from: sinceEvents ?? 0, to: eventsPos } });
          break;
        }
        case 'invite':
          if (changed) invites.push(m);
          break;
        case 'knock':
          if (changed) knocks.push(m);
          break;
        default: {
          // leave or ban
          const wasIn = initial ? true : before.get(m.roomId)?.membership === 'join';
          if (initial ? rf?.include_leave === true : changed || (p.fullState && rf?.include_leave === true)) {
            const from = initial || (p.fullState && !changed) ? 0 : wasIn ? sinceEvents : m.streamOrdering - 1;
            leavePlans.push({ roomId: m.roomId, membership: m, range: { roomId: m.roomId, from, to: m.streamOrdering }, withState: wasIn });
          }
        }
      }
    }

    // 3. Timelines, batched over all rooms.
    const ranges = [...joinPlans.map((j) => j.range), ...leavePlans.map((l) => l.range)].filter((r) => roomAllowed(tf, r.roomId));
    const tl = readAhead ? readAheadTimelines(values['ahead_timeline'], limit) : await timelines(hs.db, ranges, limit, tf);

    // Ignored users (modules/ignore_users.md): their non-state events leave the timelines below, and
    // "servers must not send room invites from ignored users to clients". (The list was read with the positions.)
    const ignored = hs.services.accounts.accountData.ignoredUsersFrom(values['ignored']);
    if (invites.length > 0 && ignored.size > 0) {
      const inviters = new Map((await rooms.getEvents(invites.map((i) => i.eventId))).map((e) => [e.eventId, e.pdu.sender]));
      for (let i = invites.length - 1; i >= 0; i--) if (ignored.has(inviters.get(invites[i]!.eventId) ?? '')) invites.splice(i, 1);
    }
    // History visibility (modules/history_visibility.md): what a joined user's timeline holds from after
    // their join is theirs to see; anything older (a room new to them, a left room) passes the rules.
    const joinedFrom = new Map(memberships.filter((m) => m.membership === 'join').map((m) => [m.roomId, m.streamOrdering]));
    const toCheck: StoredEvent[] = [];
    for (const [roomId, t] of tl) {
      const from = joinedFrom.get(roomId);
      for (const e of t.events) if (from === undefined || e.streamOrdering < from) toCheck.push(e);
    }
    const hidden = new Set<string>();
    if (toCheck.length > 0) {
      const visible = new Set((await filterEventsForUser(hs, userId, toCheck, { hideIgnored: false })).map((e) => e.eventId));
      for (const e of toCheck) if (!visible.has(e.eventId)) hidden.add(e.eventId);
    }
    const timelineOf = (roomId: string): { events: StoredEvent[]; limited: boolean; had: boolean } => {
      const t = tl.get(roomId);
      if (!t) return { events: [], limited: false, had: false };
      const events = t.events.filter(
        (e) => !hidden.has(e.eventId) && containsUrlAllowed(tf, e.pdu.content) && (typeof e.pdu.state_key === 'string' || !ignored.has(e.pdu.sender)),
      );
      return { events, limited: t.limited, had: t.events.length > 0 };
    };

    // 4. Stream contributions (ephemeral, account data, presence, to-device, device lists …).
    const contributions = await Promise.all(
      streams.map(async (s): Promise<SyncContribution> => {
        const info: SyncRequestInfo = {
          requester,
          since: since?.get(s.name) ?? null,
          upTo: next.get(s.name)!,
          joinedRoomIds: joinedIds,
          fullState: p.fullState,
          filter,
        };
        if (s.quietWhenUnchanged && info.since !== null && info.since === info.upTo) return {};
        return s.collect(info);
      }),
    );
    if (newlyJoined.length > 0) {
      // Rooms new to the client get their ephemeral and account data from scratch.
      const fresh = await Promise.all(
        streams
          .filter((s) => ROOM_SCOPED_STREAMS.has(s.name) && since?.get(s.name) !== undefined)
          .map((s) => s.collect({ requester, since: null, upTo: next.get(s.name)!, joinedRoomIds: newlyJoined, fullState: true, filter })),
      );
      for (const c of fresh) contributions.push({ ...(c.roomEphemeral ? { roomEphemeral: c.roomEphemeral } : {}), ...(c.roomAccountData ? { roomAccountData: c.roomAccountData } : {}) });
    }
    const roomEphemeral = new Map<string, unknown[]>();
    const roomAccountData = new Map<string, unknown[]>();
    const top: Record<string, unknown> = {};
    for (const c of contributions) {
      for (const [r, evs] of Object.entries(c.roomEphemeral ?? {})) roomEphemeral.set(r, [...(roomEphemeral.get(r) ?? []), ...evs]);
      for (const [r, evs] of Object.entries(c.roomAccountData ?? {})) roomAccountData.set(r, [...(roomAccountData.get(r) ?? []), ...evs]);
      mergeTop(top, c.top ?? {});
    }

    // 5. Which joined rooms go in the response, and their state.
    const ephemeralFor = (roomId: string) => (roomAllowed(rf?.ephemeral, roomId) ? filterEvents(rf?.ephemeral, (roomEphemeral.get(roomId) ?? []) as Array<{ type: string }>) : []);
    const accountDataFor = (roomId: string) => (roomAllowed(rf?.account_data, roomId) ? filterEvents(rf?.account_data, (roomAccountData.get(roomId) ?? []) as Array<{ type: string }>) : []);
    // Unread counts of those rooms, and which rooms' counts changed since the token: one statement.
    const candidates = joinPlans.filter((j) => j.full || tl.has(j.roomId) || ephemeralFor(j.roomId).length > 0 || accountDataFor(j.roomId).length > 0);
    let unread: Map<string, RoomUnread>;
    let unreadChanged: Set<string>;
    if (readAhead) {
      // Read ahead for the rooms with new events and those whose counts changed; the rooms here only
      // for their ephemeral events or account data are read now.
      ({ counts: unread, changed: unreadChanged } = unreadFromRows((values['ahead_unread'] ?? []) as unknown[][]));
      const rest = candidates.filter((j) => !tl.has(j.roomId) && !unreadChanged.has(j.roomId)).map((j) => j.roomId);
      if (rest.length > 0) for (const [r, u] of (await notifications.unreadFor(userId, rest, null)).counts) unread.set(r, u);
    } else {
      ({ counts: unread, changed: unreadChanged } = await notifications.unreadFor(
        userId,
        candidates.map((j) => j.roomId),
        initial ? null : { since: sinceEvents, upTo: eventsPos },
      ));
    }
    const candidateIds = new Set(candidates.map((j) => j.roomId));
    const included = joinPlans.filter((j) => candidateIds.has(j.roomId) || unreadChanged.has(j.roomId));

    const lazy = rf?.state?.lazy_load_members === true || rf?.timeline?.lazy_load_members === true;
    // State groups needed: at the token (deltas), and at the end of empty timelines.
    const needAt: Array<{ roomId: string; position: number }> = [];
    const needSince: Array<{ roomId: string; position: number }> = [];
    const plans: Array<{ roomId: string; full: boolean; range: TimelineRange; timeline: ReturnType<typeof timelineOf>; withState: boolean; leave?: MembershipAt }> = [
      ...included.map((j) => ({ roomId: j.roomId, full: j.full, range: j.range, timeline: timelineOf(j.roomId), withState: true })),
      ...leavePlans.map((l) => ({ roomId: l.roomId, full: initial || p.fullState, range: l.range, timeline: timelineOf(l.roomId), withState: l.withState, leave: l.membership })),
    ];
    // A room whose timeline holds every event since the token (not limited, no type or sender filter
    // leaving any out, none hidden before its first) had the state at the token just before that
    // first event: the `state` delta is empty and needs no lookup — the common case of a woken
    // long-poll. (Rooms here grow linearly; see stateGroupsAt.)
    const sqlFiltered = !!(tf?.types || tf?.not_types?.length || tf?.senders || tf?.not_senders?.length);
    const unchangedAtStart = (pl: { roomId: string; full: boolean; range: TimelineRange; timeline: ReturnType<typeof timelineOf> }): boolean => {
      const raw = tl.get(pl.roomId);
      return !pl.full && sinceEvents !== null && pl.range.from === sinceEvents && !sqlFiltered && !(raw?.limited ?? false) && pl.timeline.events[0]?.eventId === raw?.events[0]?.eventId;
    };
    for (const pl of plans) {
      if (!pl.withState) continue;
      const unchanged = unchangedAtStart(pl);
      if (pl.timeline.events.length === 0 && (!unchanged || lazy)) needAt.push({ roomId: pl.roomId, position: pl.range.to });
      if (!pl.full && sinceEvents !== null && !unchanged) needSince.push({ roomId: pl.roomId, position: sinceEvents });
    }
    const [groupsAtEnd, groupsAtSince] = await Promise.all([stateGroupsAt(hs.db, needAt), stateGroupsAt(hs.db, needSince)]);
    const stateStore = rooms.writer.stateGroups;
    const loadState = async (group: string | null | undefined): Promise<StateMap<string>> => (group ? (await stateStore.get(group)).state : new Map());

    const redundant = rf?.state?.include_redundant_members === true || rf?.timeline?.include_redundant_members === true;
    const cacheKey = `${userId}|${requester.deviceId ?? ''}`;
    if (lazy && !redundant && initial) this.sentMembers.delete(cacheKey);
    const sent = lazy && !redundant ? this.sentCache(cacheKey) : null;

    interface Built {
      roomId: string;
      timeline: StoredEvent[];
      limited: boolean;
      startState: StateMap<string>;
      stateIds: string[];
      stateAfterIds: string[] | null;
      leave?: MembershipAt;
      full: boolean;
    }
    const built: Built[] = [];
    for (const pl of plans) {
      const events = pl.timeline.events;
      let startState: StateMap<string> = new Map();
      let stateIds: string[] = [];
      let stateAfterIds: string[] | null = null;
      if (pl.withState) {
        const endGroup = groupsAtEnd.get(pl.roomId);
        startState = await loadState(events.length > 0 ? events[0]!.stateGroupBefore : endGroup);
        const unchanged = unchangedAtStart(pl);
        const sinceState = pl.full ? new Map<StateKey, string>() : unchanged ? startState : await loadState(groupsAtSince.get(pl.roomId));
        if (p.useStateAfter) {
          const endState = events.length > 0 ? await loadState(events.at(-1)!.stateGroup) : unchanged ? startState : await loadState(endGroup);
          stateAfterIds = stateDelta(sinceState, endState);
        } else {
          stateIds = stateDelta(sinceState, startState);
        }
      }
      built.push({ roomId: pl.roomId, timeline: events, limited: pl.timeline.limited, startState, stateIds, stateAfterIds, full: pl.full, ...(pl.leave ? { leave: pl.leave } : {}) });
    }

    // 6. Fetch state events; lazy-load members; filter state.
    const stateFetch = new Set<string>();
    for (const b of built) for (const id of [...b.stateIds, ...(b.stateAfterIds ?? [])]) stateFetch.add(id);
    const lazyExtra = new Map<string, string[]>();
    if (lazy) {
      for (const b of built) {
        const wanted = new Set<string>([userId, ...b.timeline.map((e) => e.pdu.sender)]);
        const inSection = new Set<string>();
        const extra: string[] = [];
        for (const u of wanted) {
          const id = b.startState.get(stateKey('m.room.member', u));
          if (id && !b.stateIds.includes(id) && !(b.stateAfterIds ?? []).includes(id) && !b.timeline.some((e) => e.eventId === id)) {
            if (!sent || sent.get(`${b.roomId}\u0000${u}`) !== id) extra.push(id);
          }
          inSection.add(u);
        }
        lazyExtra.set(b.roomId, extra);
        for (const id of extra) stateFetch.add(id);
      }
    }
    const stateEvents = new Map((await getEventsByIds(hs.db, [...stateFetch])).map((e) => [e.eventId, e]));
    const sf = rf?.state;
    const pickState = (b: Built, ids: string[]): StoredEvent[] => {
      if (!roomAllowed(sf, b.roomId)) return [];
      const wanted = lazy ? new Set<string>([userId, ...b.timeline.map((e) => e.pdu.sender)]) : null;
      const out: StoredEvent[] = [];
      for (const id of ids) {
        const e = stateEvents.get(id);
        if (!e) continue;
        if (wanted && e.pdu.type === 'm.room.member' && !wanted.has(e.pdu.state_key as string)) continue;
        if (!eventAllowed(sf, { type: e.pdu.type, sender: e.pdu.sender })) continue;
        if (sent && e.pdu.type === 'm.room.member' && !b.full && sent.get(`${b.roomId}\u0000${e.pdu.state_key}`) === id) continue;
        out.push(e);
      }
      return out;
    };

    // 7. Format events (batched lookups: room versions, redactions, transaction ids, replaced state).
    const allRoomIds = [...new Set([...built.map((b) => b.roomId), ...invites.map((i) => i.roomId), ...knocks.map((k) => k.roomId)])];
    const versions = await roomVersions(hs.db, allRoomIds);
    const rvOf = (roomId: string): RoomVersion => getRoomVersion(versions.get(roomId) ?? DEFAULT_ROOM_VERSION) ?? getRoomVersion(DEFAULT_ROOM_VERSION)!;
    const timelineAll = built.flatMap((b) => b.timeline);
    const stateAll = built.flatMap((b) => [...pickState(b, b.stateIds), ...pickState(b, b.stateAfterIds ?? []), ...(lazyExtra.get(b.roomId) ?? []).map((id) => stateEvents.get(id)!).filter(Boolean)]);
    const redactionIds = [...new Set([...timelineAll, ...stateAll].flatMap((e) => (e.redactedBy ? [e.redactedBy] : [])))];
    // replaces_state / prev_content of timeline state events, by walking the timeline from its start state.
    const replaced = new Map<string, string>();
    for (const b of built) {
      const cur = new Map(b.startState);
      for (const e of b.timeline) {
        if (typeof e.pdu.state_key !== 'string') continue;
        const k = stateKey(e.pdu.type, e.pdu.state_key);
        const prev = cur.get(k);
        if (prev && prev !== e.eventId) replaced.set(e.eventId, prev);
        cur.set(k, e.eventId);
      }
    }
    const [redactions, prevEvents, txnIds] = await Promise.all([
      getEventsByIds(hs.db, redactionIds),
      getEventsByIds(hs.db, [...new Set(replaced.values())]),
      requester.deviceId ? transactionIds(hs.db, timelineAll.filter((e) => e.pdu.sender === userId).map((e) => e.eventId), userId, requester.deviceId) : Promise.resolve(new Map<string, string>()),
    ]);
    const redactionById = new Map(redactions.map((r) => [r.eventId, r]));
    const prevById = new Map(prevEvents.map((r) => [r.eventId, r]));
    const now = hs.now();
    const fields = filter.event_fields;
    const format = (e: StoredEvent): ClientEvent => {
      const rv = rvOf(e.roomId);
      const r = e.redactedBy ? redactionById.get(e.redactedBy) : undefined;
      const prevId = replaced.get(e.eventId);
      const prev = prevId ? prevById.get(prevId) : undefined;
      const txn = txnIds.get(e.eventId);
      const ce = toClientEvent(e.eventId, e.pdu, {
        rv,
        roomId: e.roomId,
        now,
        withoutRoomId: true,
        ...(r ? { redactedBecause: toClientEvent(r.eventId, r.pdu, { rv, roomId: r.roomId, now, withoutRoomId: true }) } : {}),
        ...(txn !== undefined ? { transactionId: txn } : {}),
        ...(prev ? { replaces: { eventId: prev.eventId, content: (prev.redactedBy ? {} : prev.pdu.content) as JsonObject } } : {}),
      });
      return projectFields(ce, fields);
    };

    // 8. Summaries and unread counts of the joined rooms in the response.
    const joinBuilt = built.filter((b) => !b.leave);
    const needSummary = joinBuilt
      .filter((b) => b.full || b.timeline.some((e) => e.pdu.type === 'm.room.member') || b.stateIds.some((id) => stateEvents.get(id)?.pdu.type === 'm.room.member'))
      .map((b) => b.roomId);
    const summaryData = await summaries(hs.db, needSummary, userId);
    const threadCounts = rf?.timeline?.unread_thread_notifications === true;

    // 9. Assemble.
    const join: Record<string, unknown> = {};
    const leave: Record<string, unknown> = {};
    for (const b of built) {
      const first = b.timeline[0];
      const timeline = {
        events: b.timeline.map(format),
        limited: b.limited,
        prev_batch: eventsToken(first ? first.streamOrdering - 1 : b.leave ? b.leave.streamOrdering : eventsPos),
      };
      const stateList = [...pickState(b, b.stateIds), ...(b.stateAfterIds ? [] : (lazyExtra.get(b.roomId) ?? []).map((id) => stateEvents.get(id)!).filter(Boolean))];
      const room: Record<string, unknown> = { timeline };
      if (b.stateAfterIds) {
        const after = [...pickState(b, b.stateAfterIds), ...(lazyExtra.get(b.roomId) ?? []).map((id) => stateEvents.get(id)!).filter(Boolean)];
        room['state_after'] = { events: after.map(format) };
      } else {
        room['state'] = { events: stateList.map(format) };
      }
      if (sent) {
        for (const e of [...stateList, ...b.timeline]) if (e.pdu.type === 'm.room.member') rememberSent(sent, `${b.roomId}\u0000${e.pdu.state_key}`, e.eventId);
      }
      if (b.leave) {
        room['account_data'] = { events: [] };
        leave[b.roomId] = room;
        continue;
      }
      room['ephemeral'] = { events: ephemeralFor(b.roomId) };
      room['account_data'] = { events: accountDataFor(b.roomId) };
      const u = unread.get(b.roomId);
      const zero = { notification_count: 0, highlight_count: 0 };
      room['unread_notifications'] = u ? (threadCounts ? u.main : u.total) : zero;
      if (threadCounts) {
        const threads: Record<string, unknown> = {};
        for (const [t, c] of u?.threads ?? []) threads[t] = c;
        room['unread_thread_notifications'] = threads;
      }
      const s = summaryData.get(b.roomId);
      if (s) room['summary'] = { 'm.heroes': s.heroes, 'm.joined_member_count': s.joined, 'm.invited_member_count': s.invited };
      join[b.roomId] = room;
    }

    const invite: Record<string, unknown> = {};
    const knock: Record<string, unknown> = {};
    if (invites.length > 0 || knocks.length > 0) {
      const stripped = await this.strippedStates([...invites, ...knocks]);
      for (const i of invites) invite[i.roomId] = { invite_state: { events: stripped.get(i.roomId) ?? [] } };
      for (const k of knocks) knock[k.roomId] = { knock_state: { events: stripped.get(k.roomId) ?? [] } };
    }

    // Top level: filtered account data and presence; other streams' parts as they gave them.
    const accountData = filterEvents(filter.account_data, ((top['account_data'] as { events?: unknown[] } | undefined)?.events ?? []) as Array<{ type: string }>);
    const presence = filterEvents(filter.presence, ((top['presence'] as { events?: unknown[] } | undefined)?.events ?? []) as Array<{ type: string; sender?: string }>);
    const body: SyncResponse = {
      ...top,
      next_batch: encodeToken(next),
      account_data: { events: accountData },
      presence: { events: presence },
      rooms: { join, invite, leave, knock },
    };
    const toDevice = (top['to_device'] as { events?: unknown[] } | undefined)?.events ?? [];
    const deviceLists = top['device_lists'] as { changed?: unknown[]; left?: unknown[] } | undefined;
    const empty =
      Object.keys(join).length === 0 &&
      Object.keys(invite).length === 0 &&
      Object.keys(leave).length === 0 &&
      Object.keys(knock).length === 0 &&
      accountData.length === 0 &&
      presence.length === 0 &&
      toDevice.length === 0 &&
      (deviceLists?.changed?.length ?? 0) === 0 &&
      (deviceLists?.left?.length ?? 0) === 0;
    return { body, empty, joinedRoomIds: joinedIds };
  }

  /** Stripped state (type, state_key, content, sender) at each invite or knock event. */
  private async strippedStates(ms: MembershipAt[]): Promise<Map<string, unknown[]>> {
    const out = new Map<string, unknown[]>();
    const events = new Map((await getEventsByIds(this.hs.db, ms.map((m) => m.eventId))).map((e) => [e.eventId, e]));
    const wantIds = new Map<string, string[]>();
    for (const m of ms) {
      const ev = events.get(m.eventId);
      if (!ev) continue;
      const state = ev.stateGroup ? (await this.hs.services.rooms.writer.stateGroups.get(ev.stateGroup)).state : new Map<StateKey, string>();
      const ids = STRIPPED_TYPES.map((t) => state.get(stateKey(t, ''))).filter((x): x is string => x !== undefined);
      const inviter = state.get(stateKey('m.room.member', ev.pdu.sender));
      if (inviter && inviter !== ev.eventId) ids.push(inviter);
      wantIds.set(m.roomId, ids);
    }
    const fetched = new Map((await getEventsByIds(this.hs.db, [...new Set([...wantIds.values()].flat())])).map((e) => [e.eventId, e]));
    for (const m of ms) {
      const ev = events.get(m.eventId);
      if (!ev) continue;
      const list = [...(wantIds.get(m.roomId) ?? []).map((id) => fetched.get(id)).filter((e): e is StoredEvent => e !== undefined), ev];
      out.set(
        m.roomId,
        list.map((e) => ({ type: e.pdu.type, state_key: e.pdu.state_key ?? '', content: e.redactedBy ? {} : e.pdu.content, sender: e.pdu.sender })),
      );
    }
    return out;
  }

  private sentCache(key: string): Map<string, string> {
    let m = this.sentMembers.get(key);
    if (m) {
      this.sentMembers.delete(key);
      this.sentMembers.set(key, m);
      return m;
    }
    if (this.sentMembers.size >= LAZY_CACHE_DEVICES) this.sentMembers.delete(this.sentMembers.keys().next().value!);
    this.sentMembers.set(key, (m = new Map()));
    return m;
  }
}

function rememberSent(m: Map<string, string>, key: string, eventId: string): void {
  m.delete(key);
  m.set(key, eventId);
  if (m.size > LAZY_CACHE_ENTRIES) m.delete(m.keys().next().value!);
}

function lingerKey(requester: Requester, token: string): string {
  return `${requester.userId}\u0000${requester.deviceId ?? ''}\u0000${token}`;
}

/** Ids of state in `to` that differ from `from` (the events a client needs to go from one to the other). */
function stateDelta(from: StateMap<string>, to: StateMap<string>): string[] {
  const out: string[] = [];
  for (const [k, id] of to) if (from.get(k) !== id) out.push(id);
  return out;
}

/** Merges a stream's top-level parts: `events` lists concatenate, other objects merge shallowly. */
function mergeTop(into: Record<string, unknown>, part: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(part)) {
    const cur = into[k];
    if (isObject(cur) && isObject(v)) {
      const merged: Record<string, unknown> = { ...cur };
      for (const [kk, vv] of Object.entries(v)) {
        const c = merged[kk];
        merged[kk] = Array.isArray(c) && Array.isArray(vv) ? [...c, ...vv] : vv;
      }
      into[k] = merged;
    } else into[k] = v;
  }
}

/** The account_data sync stream: global account data at the top, room account data per joined room. */
export function accountDataStream(hs: Homeserver): SyncStream {
  return {
    name: 'account_data',
    currentPosition: () => hs.services.accounts.accountDataPosition(),
    positionOf: { table: 'account_data', column: 'stream_id' },
    // Initial syncs (since null) always run collect, which adds the predefined push rules.
    quietWhenUnchanged: true,
    collect: async (info: SyncRequestInfo): Promise<SyncContribution> => {
      const userId = info.requester.userId;
      const changes = (await hs.services.accounts.getAccountDataSince(userId, info.since ?? 0)).filter((c) => c.streamPosition <= info.upTo);
      const global: unknown[] = [];
      const roomAccountData: Record<string, unknown[]> = {};
      const joined = new Set(info.joinedRoomIds);
      for (const c of changes) {
        if (c.roomId === null) global.push({ type: c.type, content: c.content });
        else if (joined.has(c.roomId)) (roomAccountData[c.roomId] ??= []).push({ type: c.type, content: c.content });
      }
      // Push rules are account data; a user who never changed them has the predefined ones.
      if (info.since === null && !changes.some((c) => c.roomId === null && c.type === 'm.push_rules') && info.joinedRoomIds !== undefined) {
        global.push({ type: 'm.push_rules', content: { global: defaultRuleset(userId) } });
      }
      return { top: global.length > 0 ? { account_data: { events: global } } : {}, roomAccountData };
    },
  };
}

