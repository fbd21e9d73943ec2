// SQL for rooms and their events (DESIGN.md §3). The room service decides; this module reads and writes.
import { sql } from 'kysely';
import type { Pdu, StateKey } from '../../spec/events.ts';
import { splitStateKey, stateKey } from '../../spec/events.ts';
import type { Db, Queryable } from './schema.ts';

export interface RoomsTable {
  room_id: string;
  room_version: string;
  creator: string;
  is_public: boolean;
  created_ts: number;
  state_group: string | null;
}
export interface EventsTable {
  event_id: string;
  room_id: string;
  type: string;
  state_key: string | null;
  sender: string;
  depth: number;
  origin_server_ts: number;
  stream_ordering: number;
  json: string;
  redacts: string | null;
  redacted_by: string | null;
  rejected_reason: string | null;
  soft_failed: boolean;
  outlier: boolean;
  state_group_before: string | null;
  state_group: string | null;
  auth_chain_id: string | null;
  auth_chain_seq: number | null;
}
export interface EventEdgesTable {
  event_id: string;
  prev_event_id: string;
  room_id: string;
}
export interface EventAuthTable {
  event_id: string;
  auth_id: string;
  room_id: string;
}
export interface CurrentStateTable {
  room_id: string;
  type: string;
  state_key: string;
  event_id: string;
  membership: string | null;
}
export interface ForwardExtremitiesTable {
  room_id: string;
  event_id: string;
}
export interface RoomMembershipsTable {
  user_id: string;
  room_id: string;
  membership: string;
  event_id: string;
  sender: string;
  stream_ordering: number;
  forgotten: boolean;
}
export interface EventTxnIdsTable {
  user_id: string;
  device_id: string;
  endpoint: string;
  room_id: string;
  txn_id: string;
  event_id: string;
  created_ts: number;
}
export interface RoomAliasesTable {
  alias: string;
  room_id: string;
  creator: string;
  created_ts: number;
}
export interface StreamInFlightTable {
  stream: string;
  position: number;
  instance: string;
  created_ts: number;
}

declare module './schema.ts' {
  interface Tables {
    rooms: RoomsTable;
    events: EventsTable;
    event_edges: EventEdgesTable;
    event_auth: EventAuthTable;
    current_state: CurrentStateTable;
    forward_extremities: ForwardExtremitiesTable;
    room_memberships: RoomMembershipsTable;
    event_txn_ids: EventTxnIdsTable;
    room_aliases: RoomAliasesTable;
    stream_in_flight: StreamInFlightTable;
  }
}

/** An event as stored, with what the server knows about it. */
export interface StoredEvent {
  eventId: string;
  roomId: string;
  pdu: Pdu;
  streamOrdering: number;
  depth: number;
  rejectedReason: string | null;
  softFailed: boolean;
  outlier: boolean;
  redactedBy: string | null;
  stateGroupBefore: string | null;
  stateGroup: string | null;
}

type EventRow = Pick<
  EventsTable,
  'event_id' | 'room_id' | 'json' | 'stream_ordering' | 'depth' | 'rejected_reason' | 'soft_failed' | 'outlier' | 'redacted_by' | 'state_group_before' | 'state_group'
>;
const EVENT_COLUMNS = [
  'event_id', 'room_id', 'json', 'stream_ordering', 'depth', 'rejected_reason', 'soft_failed', 'outlier', 'redacted_by', 'state_group_before', 'state_group',
] as const;

export function rowToStoredEvent(r: EventRow): StoredEvent {
  return {
    eventId: r.event_id,
    roomId: r.room_id,
    pdu: JSON.parse(r.json) as Pdu,
    streamOrdering: Number(r.stream_ordering),
    depth: Number(r.depth),
    rejectedReason: r.rejected_reason,
    softFailed: r.soft_failed,
    outlier: r.outlier,
    redactedBy: r.redacted_by,
    stateGroupBefore: r.state_group_before,
    stateGroup: r.state_group,
  };
}

export async function getEventsByIds(db: Queryable, ids: string[]): Promise<StoredEvent[]> {
  if (ids.length === 0) return [];
  const rows = await db.selectFrom('events').select(EVENT_COLUMNS).where('event_id', 'in', ids).execute();
  return rows.map(rowToStoredEvent);
}

export async function getRoom(db: Queryable, roomId: string): Promise<RoomsTable | undefined> {
  return db.selectFrom('rooms').selectAll().where('room_id', '=', roomId).executeTakeFirst();
}

export async function getForwardExtremities(db: Queryable, roomId: string): Promise<Array<{ eventId: string; depth: number }>> {
  const rows = await db
    .selectFrom('forward_extremities as f')
    .innerJoin('events as e', 'e.event_id', 'f.event_id')
    .select(['f.event_id', 'e.depth'])
    .where('f.room_id', '=', roomId)
    .execute();
  return rows.map((r) => ({ eventId: r.event_id, depth: Number(r.depth) }));
}

export async function getCurrentStateIds(db: Queryable, roomId: string): Promise<Map<StateKey, string>> {
  const rows = await db.selectFrom('current_state').select(['type', 'state_key', 'event_id']).where('room_id', '=', roomId).execute();
  return new Map(rows.map((r) => [stateKey(r.type, r.state_key), r.event_id]));
}

export async function getCurrentStateEventId(db: Queryable, roomId: string, type: string, sk: string): Promise<string | undefined> {
  const r = await db
    .selectFrom('current_state')
    .select('event_id')
    .where('room_id', '=', roomId)
    .where('type', '=', type)
    .where('state_key', '=', sk)
    .executeTakeFirst();
  return r?.event_id;
}

/** Everything one flush writes for one room, in event order. */
export interface PersistBatch {
  roomId: string;
  newRoom?: { roomVersion: string; creator: string; createdTs: number };
  events: Array<{
    eventId: string;
    pdu: Pdu;
    json: string;
    streamOrdering: number;
    stateGroupBefore: string;
    stateGroup: string;
    prevEventIds: string[];
    authEventIds: string[];
    authChain: { chainId: string; seq: number } | null;
    /** Received events only: rejected (with the reason) or soft-failed. Local events are neither. */
    rejectedReason?: string | null;
    softFailed?: boolean;
  }>;
  /** The room's state group and forward extremities after the last event of the batch. */
  stateGroup: string;
  extremities: string[];
  /** Current-state changes (null removes a key), in order; later entries win. */
  stateChanges: Array<[StateKey, string | null]>;
  memberships: Array<{ userId: string; membership: string; eventId: string; sender: string; streamOrdering: number }>;
  redactions: Array<{ redactionId: string; targetId: string }>;
  txnIds: EventTxnIdsTable[];
}

/**
 * A push action to write with its event (services/notifications.ts): the event's room, position and
 * timestamp come from the event itself. `actions` is the JSON of the actions array.
 */
export interface PushActionRow {
  userId: string;
  eventId: string;
  threadId: string;
  highlight: boolean;
  actions: string;
}

function lastByKey<T>(items: T[], key: (t: T) => string): T[] {
  const m = new Map<string, T>();
  for (const it of items) {
    const k = key(it);
    m.delete(k);
    m.set(k, it);
  }
  return [...m.values()];
}

/** Whether writeBatches writes these batches with its one main statement only (atomic by itself). */
export function isSingleStatementBatch(batches: PersistBatch[]): boolean {
  return batches.every((b) => !b.newRoom && b.stateChanges.length === 0 && b.memberships.length === 0 && b.redactions.length === 0);
}

/**
 * Writes the rows of several rooms' batches (inside the caller's transaction; state groups and the auth
 * chain index are written by their stores). One multi-row statement per table whatever the number of
 * rooms, so a flush of many rooms costs about as much as a flush of one.
 */
export async function writeBatches(
  tx: Queryable,
  batches: PersistBatch[],
  membershipOf: (eventId: string) => string | null,
  pushActions: readonly PushActionRow[] = [],
): Promise<void> {
  const newRooms = batches.filter((b) => b.newRoom);
  if (newRooms.length > 0) {
    await tx
      .insertInto('rooms')
      .values(newRooms.map((b) => ({ room_id: b.roomId, room_version: b.newRoom!.roomVersion, creator: b.newRoom!.creator, is_public: false, created_ts: b.newRoom!.createdTs, state_group: b.stateGroup })))
      .execute();
  }
  const moved = batches.filter((b) => !b.newRoom && b.stateChanges.length > 0);
  if (moved.length > 0) {
    await sql`update rooms set state_group = v.g from unnest(${moved.map((b) => b.roomId)}::text[], ${moved.map((b) => b.stateGroup)}::text[]) as v(r, g)
      where rooms.room_id = v.r`.execute(tx);
  }
  // Events, edges, auth edges, transaction ids, forward extremities and the events' push actions in one
  // statement (data-modifying CTEs over unnest): one round trip per flush instead of six, which is what
  // bounds a busy room's throughput. A batch of messages (no state, membership or redaction changes)
  // needs nothing else, so the caller may run it outside a transaction (see `isSingleStatementBatch`).
  const events = batches.flatMap((b) => b.events.map((e) => ({ b, e })));
  const edges = events.flatMap(({ b, e }) => e.prevEventIds.map((p) => [e.eventId, p, b.roomId] as const));
  const auth = events.flatMap(({ b, e }) => e.authEventIds.map((a) => [e.eventId, a, b.roomId] as const));
  const txnIds = batches.flatMap((b) => b.txnIds);
  const col = <T>(f: (x: { b: PersistBatch; e: PersistBatch['events'][number] }) => T): T[] => events.map(f);
  // Forward extremities: each room's set replaced (the rows to keep are not deleted, new ones inserted).
  const exRooms = batches.flatMap((b) => b.extremities.map(() => b.roomId));
  const exIds = batches.flatMap((b) => b.extremities);
  // Push actions: a busy room has a row per member per message, so per row only three small integers
  // go over the wire (the user, the event's place in `vals` and the actions value, each sent once;
  // array literals built here, pg's per-element escaping of thousands of strings costs more).
  const eventIndex = new Map(events.map(({ e }, i) => [e.eventId, i + 1]));
  const users = new Indexed<string>();
  const actions = new Indexed<string>();
  const highlights: boolean[] = [];
  const threads: Array<string | null> = events.map(() => null);
  const pu: number[] = [];
  const pe: number[] = [];
  const pa: number[] = [];
  for (const r of pushActions) {
    const ei = eventIndex.get(r.eventId);
    if (ei === undefined) continue;
    threads[ei - 1] = r.threadId;
    pu.push(users.index(r.userId));
    pe.push(ei);
    const ai = actions.index(r.actions);
    if (ai > highlights.length) highlights.push(r.highlight);
    pa.push(ai);
  }
  const ints = (xs: number[]) => `{${xs.join(',')}}`;
  // A user who ignores the sender gets no push action for the sender's events (client-server-api
  // "Ignoring Users"): their ignore list (account data, written as JSON by the server) is checked in
  // the insert itself, so a send needs no read of its own for it.
  await sql`with
    fx as (select r, e from unnest(${exRooms}::text[], ${exIds}::text[]) as v(r, e)),
    fxd as (delete from forward_extremities f where f.room_id = any(${batches.map((b) => b.roomId)}::text[])
      and not exists (select 1 from fx where fx.r = f.room_id and fx.e = f.event_id)
      returning 1),
    fxi as (insert into forward_extremities (room_id, event_id) select r, e from fx on conflict do nothing returning 1),
    vals as (
      select * from unnest(
        ${col(({ e }) => e.eventId)}::text[], ${col(({ b }) => b.roomId)}::text[], ${col(({ e }) => e.pdu.type)}::text[],
        ${col(({ e }) => (typeof e.pdu.state_key === 'string' ? e.pdu.state_key : null))}::text[], ${col(({ e }) => e.pdu.sender)}::text[],
        ${col(({ e }) => e.pdu.depth)}::bigint[], ${col(({ e }) => e.pdu.origin_server_ts)}::bigint[], ${col(({ e }) => e.streamOrdering)}::bigint[],
        ${col(({ e }) => e.json)}::text[], ${col(({ e }) => redactsOf(e.pdu))}::text[], ${col(({ e }) => e.rejectedReason ?? null)}::text[],
        ${col(({ e }) => e.softFailed ?? false)}::boolean[], ${col(({ e }) => e.stateGroupBefore)}::text[], ${col(({ e }) => e.stateGroup)}::text[],
        ${col(({ e }) => e.authChain?.chainId ?? null)}::text[], ${col(({ e }) => e.authChain?.seq ?? null)}::bigint[], ${threads}::text[]
      ) with ordinality as v(event_id, room_id, type, state_key, sender, depth, ts, stream_ordering, json, redacts, rejected_reason, soft_failed,
        sg_before, sg, chain_id, chain_seq, thread_id, n)),
    ev as (
      insert into events (event_id, room_id, type, state_key, sender, depth, origin_server_ts, stream_ordering, json, redacts,
        redacted_by, rejected_reason, soft_failed, outlier, state_group_before, state_group, auth_chain_id, auth_chain_seq)
      select v.event_id, v.room_id, v.type, v.state_key, v.sender, v.depth, v.ts, v.stream_ordering, v.json, v.redacts,
        null, v.rejected_reason, v.soft_failed, false, v.sg_before, v.sg, v.chain_id, v.chain_seq
      from vals v
      returning 1),
    ed as (
      insert into event_edges (event_id, prev_event_id, room_id)
      select * from unnest(${edges.map((x) => x[0])}::text[], ${edges.map((x) => x[1])}::text[], ${edges.map((x) => x[2])}::text[])
      returning 1),
    au as (
      insert into event_auth (event_id, auth_id, room_id)
      select * from unnest(${auth.map((x) => x[0])}::text[], ${auth.map((x) => x[1])}::text[], ${auth.map((x) => x[2])}::text[])
      returning 1),
    tn as (
      insert into event_txn_ids (user_id, device_id, endpoint, room_id, txn_id, event_id, created_ts)
      select * from unnest(${txnIds.map((t) => t.user_id)}::text[], ${txnIds.map((t) => t.device_id)}::text[], ${txnIds.map((t) => t.endpoint)}::text[],
        ${txnIds.map((t) => t.room_id)}::text[], ${txnIds.map((t) => t.txn_id)}::text[], ${txnIds.map((t) => t.event_id)}::text[],
        ${txnIds.map((t) => t.created_ts)}::bigint[])
      on conflict do nothing
      returning 1),
    us as (select * from unnest(${users.values}::text[]) with ordinality as u(user_id, i)),
    pu as (select us.user_id, r.e, r.a from unnest(${ints(pu)}::int[], ${ints(pe)}::int[], ${ints(pa)}::int[]) as r(u, e, a) join us on us.i = r.u),
    ign as (
      select d.user_id, d.content::jsonb -> 'ignored_users' as ignored from account_data d
      where d.user_id in (select user_id from us) and d.room_id = '' and d.type = 'm.ignored_user_list'),
    pa as (
      insert into event_push_actions (user_id, event_id, room_id, stream_ordering, thread_id, highlight, actions, ts)
      select pu.user_id, v.event_id, v.room_id, v.stream_ordering, v.thread_id, (${highlights}::boolean[])[pu.a], (${actions.values}::text[])[pu.a], v.ts
      from pu join vals v on v.n = pu.e
      where not exists (select 1 from ign where ign.user_id = pu.user_id and jsonb_typeof(ign.ignored) = 'object' and ign.ignored ? v.sender)
      returning 1)
    select (select count(*) from ev) as events, (select count(*) from ed) as edges, (select count(*) from au) as auth, (select count(*) from tn) as txns,
      (select count(*) from fxd) as fx_deleted, (select count(*) from fxi) as fx_inserted, (select count(*) from pa) as push_actions`.execute(tx);

  const changes = batches.flatMap((b) => lastByKey(b.stateChanges, ([k]) => k).map(([k, v]) => ({ roomId: b.roomId, k, v })));
  for (const { roomId, k } of changes.filter((c) => c.v === null)) {
    const [type, sk] = splitStateKey(k);
    await tx.deleteFrom('current_state').where('room_id', '=', roomId).where('type', '=', type).where('state_key', '=', sk).execute();
  }
  const upserts = changes.filter((c) => c.v !== null);
  for (let i = 0; i < upserts.length; i += 10_000) {
    await tx
      .insertInto('current_state')
      .values(
        upserts.slice(i, i + 10_000).map(({ roomId, k, v }) => {
          const [type, sk] = splitStateKey(k);
          return { room_id: roomId, type, state_key: sk, event_id: v!, membership: type === 'm.room.member' ? membershipOf(v!) : null };
        }),
      )
      .onConflict((oc) =>
        oc.columns(['room_id', 'type', 'state_key']).doUpdateSet((eb) => ({ event_id: eb.ref('excluded.event_id'), membership: eb.ref('excluded.membership') })),
      )
      .execute();
  }
  const memberships = batches.flatMap((b) => lastByKey(b.memberships, (m) => m.userId).map((m) => ({ roomId: b.roomId, m })));
  for (let i = 0; i < memberships.length; i += 5000) {
    await tx
      .insertInto('room_memberships')
      .values(memberships.slice(i, i + 5000).map(({ roomId, m }) => ({ user_id: m.userId, room_id: roomId, membership: m.membership, event_id: m.eventId, sender: m.sender, stream_ordering: m.streamOrdering, forgotten: false })))
      .onConflict((oc) =>
        oc.columns(['user_id', 'room_id']).doUpdateSet((eb) => ({
          membership: eb.ref('excluded.membership'),
          event_id: eb.ref('excluded.event_id'),
          sender: eb.ref('excluded.sender'),
          stream_ordering: eb.ref('excluded.stream_ordering'),
          forgotten: false,
        })),
      )
      .execute();
  }
  const redactions = batches.flatMap((b) => b.redactions.map((r) => ({ roomId: b.roomId, ...r })));
  if (redactions.length > 0) {
    await sql`update events set redacted_by = v.redaction from unnest(${redactions.map((r) => r.targetId)}::text[], ${redactions.map((r) => r.redactionId)}::text[], ${redactions.map((r) => r.roomId)}::text[]) as v(target, redaction, room)
      where events.event_id = v.target and events.room_id = v.room and events.redacted_by is null`.execute(tx);
  }
}

/** The id an m.room.redaction event redacts (top level before v11, in content from v11; either is read). */
export function redactsOf(pdu: Pdu): string | null {
  if (pdu.type !== 'm.room.redaction') return null;
  const c = pdu.content['redacts'];
  if (typeof c === 'string') return c;
  return typeof pdu.redacts === 'string' ? pdu.redacts : null;
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
