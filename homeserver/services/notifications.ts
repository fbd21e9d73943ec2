// Push actions, unread counts and GET /notifications (modules/push.md "Push Rules",
// client-server-api "Receiving notifications", sync's unread_notifications).
//
// Persist time: before a batch of events is written, each event is evaluated against the push rules of
// every local user joined to the room (and of a local invitee of an invite), except its sender. Events
// whose actions say `notify` become rows of event_push_actions (with `highlight`), written in the same
// statement as the events (storage/rooms-store.ts writeBatches, which also leaves out users who ignore
// the sender), at the event's stream position: a sync's events position covers its counts, and a crash
// never leaves an event without its notifications. Inserting is idempotent (primary key user + event).
//
// Read time: a room's counts are its rows after the user's read position: the later of their
// unthreaded m.read / m.read.private receipt and, per thread, their receipt for that thread
// (client-server-api "Receipts" → "Threaded read receipts"), and never before the user's own current
// membership event (an invite stops counting once it is accepted). Muting (a rule without `notify`) thus
// keeps counts at zero, and a receipt resets them.
import { sql } from 'kysely';
import type { IdentifiedPdu, JsonObject, StateMap } from '../../spec/events.ts';
import { stateKey } from '../../spec/events.ts';
import { getUserPowerLevel } from '../../spec/power-levels.ts';
import { actionsHighlight, actionsNotify, type PushAction } from '../../spec/push-rules.ts';
import { evaluatePushRulesForTargets, type SharedPushContext } from '../../spec/push-rules-batch.ts';
import { parseUserId } from '../../spec/identifiers.ts';
import type { Homeserver } from '../homeserver.ts';
import type { QueuedEvent } from './room-writer.ts';
import type { PushActionRow } from '../storage/rooms-store.ts';
import { unreadCtes } from '../sync/store.ts';

export interface EventPushActionsTable {
  user_id: string;
  event_id: string;
  room_id: string;
  stream_ordering: number;
  thread_id: string;
  highlight: boolean;
  actions: string;
  ts: number;
}

declare module '../storage/schema.ts' {
  interface Tables {
    event_push_actions: EventPushActionsTable;
  }
}

declare module '../homeserver.ts' {
  interface Services {
    notifications: NotificationService;
  }
}

export interface UnreadCounts {
  notification_count: number;
  highlight_count: number;
}

export interface RoomUnread {
  /** Everything, threads included (for clients that do not ask for thread counts). */
  total: UnreadCounts;
  /** The main timeline only. */
  main: UnreadCounts;
  /** Per thread root. */
  threads: Map<string, UnreadCounts>;
}

/** The thread an event belongs to: its thread root for an m.thread relation, else 'main'. */
export function threadIdOf(pdu: { content?: unknown }): string {
  const rel = (pdu.content as JsonObject | undefined)?.['m.relates_to'];
  if (rel !== null && typeof rel === 'object' && !Array.isArray(rel)) {
    const r = rel as JsonObject;
    if (r['rel_type'] === 'm.thread' && typeof r['event_id'] === 'string') return r['event_id'];
  }
  return 'main';
}

interface RoomFacts {
  stateRef: StateMap<string>;
  /** Local joined members with their display names. */
  members: Array<{ userId: string; displayName: string | null }>;
  memberCount: number;
  state: StateMap<IdentifiedPdu>;
  notificationLevels: Record<string, number>;
}

export class NotificationService {
  private readonly hs: Homeserver;
  /** Per room: facts derived from its current state (recomputed when the state map changes). */
  private readonly facts = new Map<string, RoomFacts>();

  constructor(hs: Homeserver) {
    this.hs = hs;
  }

  start(): void {
    const writer = this.hs.services.rooms.writer;
    writer.pushActionsOf = (events) => this.actionsFor(events);
    writer.persistListeners.push((events) => {
      const presence = this.hs.services.presence;
      if (!presence) return;
      for (const sender of new Set(events.map((e) => e.event.pdu.sender))) {
        if (this.isLocal(sender)) void presence.userActive(sender).catch(() => undefined);
      }
    });
  }

  private isLocal(userId: string): boolean {
    return parseUserId(userId)?.serverName === this.hs.serverName;
  }

  private async roomFacts(roomId: string): Promise<RoomFacts | undefined> {
    const rooms = this.hs.services.rooms;
    const head = await rooms.writer.head(roomId);
    if (!head) return undefined;
    const cached = this.facts.get(roomId);
    if (cached && cached.stateRef === head.state) return cached;
    const memberIds: string[] = [];
    for (const [k, id] of head.state) if (k.startsWith('m.room.member\u0000')) memberIds.push(id);
    const createId = head.state.get(stateKey('m.room.create', ''));
    const plId = head.state.get(stateKey('m.room.power_levels', ''));
    const pdus = await rooms.writer.getPdus([...memberIds, ...(createId ? [createId] : []), ...(plId ? [plId] : [])]);
    const members: RoomFacts['members'] = [];
    let memberCount = 0;
    for (const id of memberIds) {
      const e = pdus.get(id);
      if (!e || e.pdu.content['membership'] !== 'join' || typeof e.pdu.state_key !== 'string') continue;
      memberCount++;
      if (this.isLocal(e.pdu.state_key)) {
        const dn = e.pdu.content['displayname'];
        members.push({ userId: e.pdu.state_key, displayName: typeof dn === 'string' ? dn : null });
      }
    }
    const state: StateMap<IdentifiedPdu> = new Map();
    if (createId && pdus.get(createId)) state.set(stateKey('m.room.create', ''), pdus.get(createId)!);
    if (plId && pdus.get(plId)) state.set(stateKey('m.room.power_levels', ''), pdus.get(plId)!);
    const levels: Record<string, number> = { room: 50 };
    const n = plId ? pdus.get(plId)?.pdu.content['notifications'] : undefined;
    if (n !== null && typeof n === 'object' && !Array.isArray(n)) {
      for (const [k, v] of Object.entries(n as JsonObject)) if (typeof v === 'number') levels[k] = v;
    }
    const facts: RoomFacts = { stateRef: head.state, members, memberCount, state, notificationLevels: levels };
    if (this.facts.size > 5_000) this.facts.delete(this.facts.keys().next().value!);
    this.facts.set(roomId, facts);
    return facts;
  }

  /** The push actions of events about to be persisted (RoomWriter.pushActionsOf). */
  async actionsFor(events: QueuedEvent[]): Promise<PushActionRow[]> {
    const rows: PushActionRow[] = [];
    // Results share their actions arrays (one per distinct rule outcome): encode each once.
    const actionsJson = new Map<readonly PushAction[], { json: string; highlight: boolean }>();
    const rooms = this.hs.services.rooms;
    for (const ev of events) {
      const pdu = ev.event.pdu;
      const sender = pdu.sender;
      const facts = await this.roomFacts(ev.roomId);
      if (!facts) continue;
      const rv = await rooms.getRoomVersion(ev.roomId);
      if (!rv) continue;
      const targets = facts.members.filter((m) => m.userId !== sender);
      // An invite notifies its (local) invitee, who is not joined yet.
      if (pdu.type === 'm.room.member' && pdu.content['membership'] === 'invite' && typeof pdu.state_key === 'string' && this.isLocal(pdu.state_key) && pdu.state_key !== sender) {
        if (!targets.some((t) => t.userId === pdu.state_key)) {
          const dn = pdu.content['displayname'];
          targets.push({ userId: pdu.state_key, displayName: typeof dn === 'string' ? dn : null });
        }
      }
      if (targets.length === 0) continue;
      // Users who ignore the sender are left out where the rows are written (writeBatches).
      const rulesets = await this.hs.services.pushRules.getRulesets(targets.map((t) => t.userId));
      const shared: SharedPushContext = {
        roomMemberCount: facts.memberCount,
        senderPowerLevel: getUserPowerLevel(rv, facts.state, sender),
        notificationPowerLevels: facts.notificationLevels,
      };
      // Every member at once: the same results as evaluatePushRules per member, with the conditions
      // that do not depend on the member checked once per distinct ruleset (spec/push-rules-batch.ts).
      const results = evaluatePushRulesForTargets(
        { ...pdu, event_id: ev.eventId },
        shared,
        targets.map((t, i) => ({ userId: t.userId, displayName: t.displayName, ruleset: rulesets[i]! })),
      );
      const threadId = threadIdOf(pdu);
      targets.forEach((t, i) => {
        const result = results[i];
        if (!result || !actionsNotify(result.actions)) return;
        let encoded = actionsJson.get(result.actions);
        if (!encoded) actionsJson.set(result.actions, (encoded = { json: JSON.stringify(result.actions), highlight: actionsHighlight(result.actions) }));
        rows.push({ userId: t.userId, eventId: ev.eventId, threadId, highlight: encoded.highlight, actions: encoded.json });
      });
    }
    return rows;
  }

  /**
   * For /sync, in one statement: the unread counts of the user in `roomIds` and in every room with push
   * actions for the user at events positions in (changedSince.since, changedSince.upTo], and the set of
   * those changed rooms (null changedSince: none asked).
   */
  async unreadFor(
    userId: string,
    roomIds: readonly string[],
    changedSince: { since: number; upTo: number } | null,
  ): Promise<{ counts: Map<string, RoomUnread>; changed: Set<string> }> {
    const since = changedSince ? changedSince.since : 0;
    const upTo = changedSince && changedSince.upTo > changedSince.since ? changedSince.upTo : since;
    if (roomIds.length === 0 && upTo <= since) return { counts: new Map(), changed: new Set() };
    const { rows } = await sql<{ room_id: string; thread_id: string | null; n: string; h: string; changed: boolean }>`
      with ${unreadCtes('u', userId, sql`select unnest(${[...roomIds]}::text[]) as room_id`, since, upTo)}
      select room_id, thread_id, n, h, changed from u_unread`.execute(this.hs.db);
    return unreadFromRows(rows.map((r) => [r.room_id, r.thread_id, r.n, r.h, r.changed]));
  }

  /** GET /notifications: newest first; `from` is the stream ordering to continue below. */
  async list(userId: string, opts: { from?: number; limit: number; onlyHighlight: boolean }): Promise<{
    items: Array<{ eventId: string; roomId: string; actions: unknown[]; ts: number; read: boolean; streamOrdering: number }>;
    next?: number;
  }> {
    let q = this.hs.db
      .selectFrom('event_push_actions as p')
      .select(['p.event_id', 'p.room_id', 'p.actions', 'p.ts', 'p.stream_ordering', 'p.thread_id'])
      .where('p.user_id', '=', userId)
      .orderBy('p.stream_ordering', 'desc')
      .limit(opts.limit + 1);
    if (opts.from !== undefined) q = q.where('p.stream_ordering', '<', opts.from);
    if (opts.onlyHighlight) q = q.where('p.highlight', '=', true);
    const rows = await q.execute();
    const more = rows.length > opts.limit;
    const page = rows.slice(0, opts.limit);
    const roomIds = [...new Set(page.map((r) => r.room_id))];
    const receipts = roomIds.length
      ? await this.hs.db
          .selectFrom('receipts')
          .select(['room_id', 'thread_id', 'event_stream_ordering'])
          .where('user_id', '=', userId)
          .where('receipt_type', 'in', ['m.read', 'm.read.private'])
          .where(sql<boolean>`room_id = any(${roomIds}::text[])`)
          .execute()
      : [];
    const readUpTo = (roomId: string, threadId: string): number => {
      let m = 0;
      for (const r of receipts) if (r.room_id === roomId && (r.thread_id === '' || r.thread_id === threadId)) m = Math.max(m, Number(r.event_stream_ordering));
      return m;
    };
    const items = page.map((r) => ({
      eventId: r.event_id,
      roomId: r.room_id,
      actions: JSON.parse(r.actions) as unknown[],
      ts: Number(r.ts),
      read: Number(r.stream_ordering) <= readUpTo(r.room_id, r.thread_id),
      streamOrdering: Number(r.stream_ordering),
    }));
    return more ? { items, next: items.at(-1)!.streamOrdering } : { items };
  }
}

function zero(): UnreadCounts {
  return { notification_count: 0, highlight_count: 0 };
}

export function initNotifications(hs: Homeserver): NotificationService {
  const s = new NotificationService(hs);
  hs.services.notifications = s;
  return s;
}

/** Rows of unreadCtes' `p_unread` (room_id, thread_id, n, h, changed), into counts and the changed rooms. */
export function unreadFromRows(rows: ReadonlyArray<readonly unknown[]>): { counts: Map<string, RoomUnread>; changed: Set<string> } {
  const counts = new Map<string, RoomUnread>();
  const changed = new Set<string>();
  for (const [roomId, threadId, n, h, isChanged] of rows as ReadonlyArray<[string, string | null, unknown, unknown, boolean]>) {
    if (isChanged) {
      changed.add(roomId);
      continue;
    }
    let u = counts.get(roomId);
    if (!u) counts.set(roomId, (u = { total: zero(), main: zero(), threads: new Map() }));
    const c = { notification_count: Number(n), highlight_count: Number(h) };
    u.total.notification_count += c.notification_count;
    u.total.highlight_count += c.highlight_count;
    if (threadId === 'main') u.main = c;
    else u.threads.set(threadId!, c);
  }
  return { counts, changed };
}
