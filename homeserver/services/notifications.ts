// Push actions, unread counts and GET /notifications (modules/push.md "Push Rules",
// client-server-api "Receiving notifications", sync's unread_notifications).
//
// Persist time: after a batch of events commits, each event is evaluated against the push rules of
// every local user joined to the room (and of a local invitee of an invite), except its sender and
// users who ignore the sender. Events whose actions say `notify` become rows of event_push_actions
// (with `highlight`), on the `unread` stream (sync/ordered-stream.ts). Inserting is idempotent
// (primary key user + event), so re-running an evaluation never double counts.
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
import type { PersistedEvent } from './room-writer.ts';
import { orderedPosition, orderedWrite, PUSH_ACTIONS_STREAM } from '../sync/ordered-stream.ts';
import { unreadSelect } from '../sync/store.ts';

export interface EventPushActionsTable {
  user_id: string;
  event_id: string;
  room_id: string;
  stream_ordering: number;
  thread_id: string;
  highlight: boolean;
  actions: string;
  ts: number;
  stream_id: number;
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
  private readonly inFlight = new Set<Promise<void>>();
  /** Per room: facts derived from its current state (recomputed when the state map changes). */
  private readonly facts = new Map<string, RoomFacts>();
  private pendingRows: EventPushActionsTable[] = [];
  private pendingWaiters: Array<{ resolve: () => void; reject: (err: unknown) => void }> = [];
  private flushing: Promise<void> | null = null;

  constructor(hs: Homeserver) {
    this.hs = hs;
  }

  start(): void {
    this.hs.services.rooms.writer.persistListeners.push((events) => {
      const p = this.onPersisted(events).catch((err) => this.hs.logger.warn({ err }, 'push rule evaluation failed'));
      this.inFlight.add(p);
      void p.finally(() => this.inFlight.delete(p));
    });
  }

  /** Resolves once every evaluation started before the call has finished (sync waits so its counts include the events it returns). */
  async settled(): Promise<void> {
    if (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
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

  private async onPersisted(events: PersistedEvent[]): Promise<void> {
    const rows: EventPushActionsTable[] = [];
    const ignoreLists = new Map<string, JsonObject | null>();
    // Results share their actions arrays (one per distinct rule outcome): encode each once.
    const actionsJson = new Map<readonly PushAction[], { json: string; highlight: boolean }>();
    const rooms = this.hs.services.rooms;
    for (const ev of events) {
      const pdu = ev.event.pdu;
      const sender = pdu.sender;
      if (this.isLocal(sender)) void this.hs.services.presence?.userActive(sender).catch(() => undefined);
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
      const ignoring = await this.usersIgnoring(targets.map((t) => t.userId), sender, ignoreLists);
      const evaluated = ignoring.size > 0 ? targets.filter((t) => !ignoring.has(t.userId)) : targets;
      if (evaluated.length === 0) continue;
      const rulesets = await this.hs.services.pushRules.getRulesets(evaluated.map((t) => t.userId));
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
        evaluated.map((t, i) => ({ userId: t.userId, displayName: t.displayName, ruleset: rulesets[i]! })),
      );
      const threadId = threadIdOf(pdu);
      evaluated.forEach((t, i) => {
        const result = results[i];
        if (!result || !actionsNotify(result.actions)) return;
        let encoded = actionsJson.get(result.actions);
        if (!encoded) actionsJson.set(result.actions, (encoded = { json: JSON.stringify(result.actions), highlight: actionsHighlight(result.actions) }));
        rows.push({
          user_id: t.userId,
          event_id: ev.eventId,
          room_id: ev.roomId,
          stream_ordering: ev.streamOrdering,
          thread_id: threadId,
          highlight: encoded.highlight,
          actions: encoded.json,
          ts: pdu.origin_server_ts,
          stream_id: 0,
        });
      });
    }
    if (rows.length === 0) return;
    await this.write(rows);
  }

  /**
   * Push-action rows wait here while a write is in progress, and go together in the next one: one
   * transaction for many events (the stream's writes are serialized, so one per event would cap a
   * busy server at a transaction's round trips, and every sync waits on them through settled()).
   */
  private write(rows: EventPushActionsTable[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.pendingRows.push(...rows);
      this.pendingWaiters.push({ resolve, reject });
      this.flushing ??= this.flushPending();
    });
  }

  private async flushPending(): Promise<void> {
    while (this.pendingRows.length > 0) {
      const rows = this.pendingRows;
      const waiters = this.pendingWaiters;
      this.pendingRows = [];
      this.pendingWaiters = [];
      try {
        await this.writeBatch(rows);
        for (const w of waiters) w.resolve();
      } catch (err) {
        for (const w of waiters) w.reject(err);
      }
    }
    this.flushing = null;
  }

  private async writeBatch(rows: EventPushActionsTable[]): Promise<void> {
    // A busy room writes a row per member per message (tens of thousands a second): send each distinct
    // user, event and actions value once, and per row only three small integers (array literals built
    // here: pg's per-element escaping of thousands of strings cost more than the evaluation).
    const users = new Indexed<string>();
    const events = new Indexed<string>();
    const actions = new Indexed<string>();
    const eventRows: EventPushActionsTable[] = [];
    const highlights: boolean[] = [];
    const u: number[] = [];
    const e: number[] = [];
    const a: number[] = [];
    for (const r of rows) {
      u.push(users.index(r.user_id));
      const ei = events.index(r.event_id);
      if (ei > eventRows.length) eventRows.push(r);
      e.push(ei);
      const ai = actions.index(r.actions);
      if (ai > highlights.length) highlights.push(r.highlight);
      a.push(ai);
    }
    const ints = (xs: number[]) => `{${xs.join(',')}}`;
    const ev = <K extends keyof EventPushActionsTable>(k: K) => eventRows.map((r) => r[k]);
    const position = await orderedWrite(this.hs.db, PUSH_ACTIONS_STREAM, async (tx) => {
      // Positions come from the stream's sequence under its lock (ordered-stream.ts), one per row.
      const { rows: out } = await sql<{ last: string | number | null }>`
        with ins as (
          insert into event_push_actions (user_id, event_id, room_id, stream_ordering, thread_id, highlight, actions, ts, stream_id)
          select (${users.values}::text[])[r.u], (${events.values}::text[])[r.e], (${ev('room_id')}::text[])[r.e],
            (${ev('stream_ordering')}::bigint[])[r.e], (${ev('thread_id')}::text[])[r.e], (${highlights}::boolean[])[r.a],
            (${actions.values}::text[])[r.a], (${ev('ts')}::bigint[])[r.e], nextval('push_actions_stream_seq')
          from unnest(${ints(u)}::int[], ${ints(e)}::int[], ${ints(a)}::int[]) with ordinality as r(u, e, a, n)
          order by r.n
          on conflict (user_id, event_id) do nothing
          returning stream_id
        )
        select max(stream_id) as last from ins`.execute(tx);
      return out[0]?.last == null ? null : Number(out[0].last);
    });
    if (position === null) return; // all already written (a re-run evaluation)
    await Promise.all(users.values.map((user) => this.hs.bus.publish(`user:${user}`, { stream: 'unread', position })));
  }

  /** Which of `users` have `sender` in their m.ignored_user_list. */
  /**
   * Which of `users` have `sender` in their m.ignored_user_list. `lists` caches the lists read during
   * one batch of persisted events (the events of a busy room share their targets: one query, not one
   * per event).
   */
  private async usersIgnoring(users: string[], sender: string, lists: Map<string, JsonObject | null>): Promise<Set<string>> {
    const unknown = users.filter((u) => !lists.has(u));
    if (unknown.length > 0) {
      const rows = await this.hs.db
        .selectFrom('account_data')
        .select(['user_id', 'content'])
        .where('type', '=', 'm.ignored_user_list')
        .where('room_id', '=', '')
        .where(sql<boolean>`user_id = any(${unknown}::text[])`)
        .execute();
      for (const u of unknown) lists.set(u, null);
      for (const r of rows) {
        try {
          const ignored = (JSON.parse(r.content) as JsonObject)['ignored_users'];
          if (ignored && typeof ignored === 'object' && !Array.isArray(ignored)) lists.set(r.user_id, ignored as JsonObject);
        } catch {
          // unreadable content ignores no one
        }
      }
    }
    const out = new Set<string>();
    for (const u of users) {
      const ignored = lists.get(u);
      if (ignored && Object.hasOwn(ignored, sender)) out.add(u);
    }
    return out;
  }

  currentPosition(): Promise<number> {
    return orderedPosition(this.hs.db, PUSH_ACTIONS_STREAM);
  }

  /**
   * For /sync, in one statement: the unread counts of the user in `roomIds` and in every room whose
   * push actions for the user changed in (changedSince.since, changedSince.upTo], and the set of those
   * changed rooms (null changedSince: none asked).
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
      with ch as (
        select distinct room_id from event_push_actions
        where user_id = ${userId} and stream_id > ${since} and stream_id <= ${upTo}
      ), rs as (
        select unnest(${[...roomIds]}::text[]) as room_id union select room_id from ch
      ), r as (
        select room_id, thread_id, max(event_stream_ordering) as so from receipts
        where user_id = ${userId} and receipt_type in ('m.read', 'm.read.private') and room_id in (select room_id from rs)
        group by room_id, thread_id
      )
      ${unreadSelect(userId, sql`(select room_id from rs)`, sql`r`)}
      union all
      select room_id, null, 0, 0, true from ch`.execute(this.hs.db);
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

/** Distinct values with their 1-based positions (PostgreSQL array subscripts). */
class Indexed<T> {
  readonly values: T[] = [];
  private readonly positions = new Map<T, number>();
  index(v: T): number {
    let i = this.positions.get(v);
    if (i === undefined) {
      this.values.push(v);
      this.positions.set(v, (i = this.values.length));
    }
    return i;
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

/** Rows of unreadSelect (room_id, thread_id, n, h, changed), plus `changed` marker rows, into counts and the changed rooms. */
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
