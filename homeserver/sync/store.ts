// The queries /sync needs over the rooms tables (events, room_memberships, rooms, event_txn_ids),
// each batched over all the rooms of a request so an initial sync of hundreds of rooms is a handful
// of round trips. Every read is bounded by the positions of the request's token (DESIGN.md §3): what
// committed later is left for the next sync.
import { sql, type RawBuilder } from 'kysely';
import { rowToStoredEvent, type StoredEvent } from '../storage/rooms-store.ts';
import type { Queryable } from '../storage/schema.ts';
import { likePattern, type RoomEventFilter } from './filter.ts';

export interface MembershipAt {
  roomId: string;
  membership: string;
  eventId: string;
  streamOrdering: number;
}

const ACCEPTED = sql`e.rejected_reason is null and e.soft_failed = false and e.outlier = false`;

/**
 * The user's current membership rows (forgotten rooms excluded) as one JSON value, a scalar subquery
 * the sync engine reads in its positions statement; membershipsFromRows turns it into the
 * memberships at a position. Read it only after the position `upTo` it is used with.
 */
export function membershipRowsColumn(userId: string): RawBuilder<unknown> {
  return sql`(select coalesce(json_agg(json_build_array(room_id, membership, event_id, stream_ordering)), '[]'::json)
    from room_memberships where user_id = ${userId} and forgotten = false)`;
}

/**
 * The user's membership in every room they have one in, as of position `upTo`, from what
 * membershipRowsColumn read: rows that changed after `upTo` are replaced by the membership event at
 * `upTo` (or dropped when there was none).
 */
export async function membershipsFromRows(db: Queryable, userId: string, value: unknown, upTo: number): Promise<MembershipAt[]> {
  const rows = (typeof value === 'string' ? JSON.parse(value) : value ?? []) as Array<[string, string, string, number | string]>;
  const out: MembershipAt[] = [];
  const late: string[] = [];
  for (const [roomId, membership, eventId, ordering] of rows) {
    if (Number(ordering) > upTo) late.push(roomId);
    else out.push({ roomId, membership, eventId, streamOrdering: Number(ordering) });
  }
  if (late.length > 0) {
    for (const [roomId, m] of await membershipsAtPosition(db, userId, late, upTo)) out.push({ roomId, ...m });
  }
  return out;
}

/** The user's membership event in each of `roomIds` at or before `position` (rooms without one are absent). */
export async function membershipsAtPosition(
  db: Queryable,
  userId: string,
  roomIds: string[],
  position: number,
): Promise<Map<string, { membership: string; eventId: string; streamOrdering: number }>> {
  const out = new Map<string, { membership: string; eventId: string; streamOrdering: number }>();
  if (roomIds.length === 0) return out;
  const { rows } = await sql<{ room_id: string; event_id: string; stream_ordering: string; membership: string | null }>`
    select r.room_id, m.event_id, m.stream_ordering, m.membership
    from unnest(${roomIds}::text[]) as r(room_id)
    cross join lateral (
      select e.event_id, e.stream_ordering, (e.json::jsonb -> 'content' ->> 'membership') as membership
      from events e
      where e.room_id = r.room_id and e.type = 'm.room.member' and e.state_key = ${userId}
        and e.stream_ordering <= ${position} and ${ACCEPTED}
      order by e.stream_ordering desc limit 1
    ) m`.execute(db);
  for (const r of rows) out.set(r.room_id, { membership: r.membership ?? 'leave', eventId: r.event_id, streamOrdering: Number(r.stream_ordering) });
  return out;
}

/** The accepted-event condition plus the timeline filter's types, not_types, senders and not_senders, over `events e`. */
function timelineWhere(filter?: RoomEventFilter): RawBuilder<unknown> {
  const conds = [ACCEPTED];
  if (filter?.types) {
    conds.push(filter.types.length === 0 ? sql`false` : sql`(${sql.join(filter.types.map((t) => sql`e.type like ${likePattern(t)}`), sql` or `)})`);
  }
  for (const t of filter?.not_types ?? []) conds.push(sql`e.type not like ${likePattern(t)}`);
  if (filter?.senders) conds.push(sql`e.sender = any(${filter.senders}::text[])`);
  if (filter?.not_senders?.length) conds.push(sql`not (e.sender = any(${filter.not_senders}::text[]))`);
  return sql.join(conds, sql` and `);
}

/**
 * The common incremental sync read ahead, in the statement that reads the positions: the timelines of
 * every room the user is joined to now over (since, upTo] and the unread counts of the rooms with new
 * events or changed counts. Right only when the user's memberships did not change since `since` (the
 * caller checks that with the memberships read in the same statement, and otherwise reads the usual
 * way): then the joined rooms now are the joined rooms of the whole range.
 * CTEs for the statement, and the scalar columns reading them.
 */
export function incrementalReadAhead(
  userId: string,
  since: number,
  upTo: number,
  limit: number,
  filter: RoomEventFilter | undefined,
): { ctes: RawBuilder<unknown>; columns: Array<readonly [string, RawBuilder<unknown>]> } {
  const ctes = sql`
    ahead_tl as (
      select t.* from room_memberships m
      cross join lateral (
        select e.event_id, e.room_id, e.json, e.stream_ordering, e.depth, e.rejected_reason, e.soft_failed, e.outlier, e.redacted_by,
               e.state_group_before, e.state_group
        from events e
        where e.room_id = m.room_id and e.stream_ordering > ${since} and e.stream_ordering <= ${upTo} and ${timelineWhere(filter)}
        order by e.stream_ordering desc limit ${limit + 1}
      ) t
      where m.user_id = ${userId} and m.membership = 'join' and m.forgotten = false
    ),
    ${unreadCtes('ahead', userId, sql`select room_id from ahead_tl`, since, upTo)}`;
  return {
    ctes,
    columns: [
      [
        'ahead_timeline',
        sql`(select coalesce(json_agg(json_build_array(event_id, room_id, json, stream_ordering, depth, rejected_reason, soft_failed, outlier, redacted_by, state_group_before, state_group)), '[]'::json) from ahead_tl)`,
      ],
      ['ahead_unread', sql`(select coalesce(json_agg(json_build_array(room_id, thread_id, n, h, changed)), '[]'::json) from ahead_unread)`],
    ],
  };
}

/**
 * The CTEs of the user's unread counts, named after `p`: `p_ch`, the rooms with push actions for the
 * user at positions in (since, upTo] (the rooms whose counts changed); `p_rs`, those and the rooms of
 * `rooms` (a select of room_id); `p_r`, the user's read receipts there; and `p_unread`, rows (room_id,
 * thread_id, n, h, changed = false) per room and thread of `p_rs` with unread push actions, plus a
 * (room_id, null, 0, 0, true) row per room of `p_ch`. A room's count is its push actions after the later
 * of the user's unthreaded receipt and their receipt for the thread, and after their own membership
 * event (client-server-api "Receipts" → "Threaded read receipts"). Shared by the read-ahead above and
 * NotificationsService.unreadFor.
 */
export function unreadCtes(p: string, userId: string, rooms: RawBuilder<unknown>, since: number, upTo: number): RawBuilder<unknown> {
  const ch = sql.raw(`${p}_ch`);
  const rs = sql.raw(`${p}_rs`);
  const r = sql.raw(`${p}_r`);
  return sql`
    ${ch} as (
      select distinct room_id from event_push_actions
      where user_id = ${userId} and stream_ordering > ${since} and stream_ordering <= ${upTo}
    ),
    ${rs} as (${rooms} union select room_id from ${ch}),
    ${r} as (
      select room_id, thread_id, max(event_stream_ordering) as so from receipts
      where user_id = ${userId} and receipt_type in ('m.read', 'm.read.private') and room_id in (select room_id from ${rs})
      group by room_id, thread_id
    ),
    ${sql.raw(`${p}_unread`)} as (
      select pa.room_id, pa.thread_id, count(*) as n, count(*) filter (where pa.highlight) as h, false as changed
      from event_push_actions pa
      left join ${r} ru on ru.room_id = pa.room_id and ru.thread_id = ''
      left join ${r} rt on rt.room_id = pa.room_id and rt.thread_id = pa.thread_id
      left join room_memberships m on m.room_id = pa.room_id and m.user_id = ${userId}
      where pa.user_id = ${userId} and pa.room_id in (select room_id from ${rs})
        and pa.stream_ordering > coalesce(ru.so, 0) and pa.stream_ordering > coalesce(rt.so, 0)
        and pa.stream_ordering > coalesce(m.stream_ordering, 0)
      group by pa.room_id, pa.thread_id
      union all
      select room_id, null, 0, 0, true from ${ch}
    )`;
}

/** The read-ahead timeline rows (JSON) into timelines()'s answer for those rooms. */
export function readAheadTimelines(value: unknown, limit: number): Map<string, TimelineResult> {
  const rows = (typeof value === 'string' ? JSON.parse(value) : value ?? []) as unknown[][];
  const events = rows.map((r) =>
    rowToStoredEvent({
      event_id: r[0] as string,
      room_id: r[1] as string,
      json: r[2] as string,
      stream_ordering: Number(r[3]),
      depth: Number(r[4]),
      rejected_reason: r[5] as string | null,
      soft_failed: r[6] as boolean,
      outlier: r[7] as boolean,
      redacted_by: r[8] as string | null,
      state_group_before: r[9] === null ? null : String(r[9]),
      state_group: r[10] === null ? null : String(r[10]),
    } as Parameters<typeof rowToStoredEvent>[0]),
  );
  return groupTimelines(events, limit);
}

/** Events of several rooms (up to limit + 1 of each) into per-room timelines, oldest first, `limited` when one was left out. */
function groupTimelines(events: StoredEvent[], limit: number): Map<string, TimelineResult> {
  const byRoom = new Map<string, StoredEvent[]>();
  for (const e of events) {
    let list = byRoom.get(e.roomId);
    if (!list) byRoom.set(e.roomId, (list = []));
    list.push(e);
  }
  const out = new Map<string, TimelineResult>();
  for (const [roomId, list] of byRoom) {
    list.sort((a, b) => a.streamOrdering - b.streamOrdering);
    const limited = list.length > limit;
    out.set(roomId, { events: limited ? list.slice(list.length - limit) : list, limited });
  }
  return out;
}

export interface TimelineRange {
  roomId: string;
  /** Exclusive lower bound (0 for the start of the room). */
  from: number;
  /** Inclusive upper bound. */
  to: number;
}

export interface TimelineResult {
  events: StoredEvent[];
  /** Events in range were left out (older than the ones returned). */
  limited: boolean;
}

/**
 * The newest `limit` accepted events of each range, oldest first, with the timeline filter's types,
 * not_types, senders and not_senders applied in SQL so the limit counts matching events only.
 */
export async function timelines(db: Queryable, ranges: TimelineRange[], limit: number, filter?: RoomEventFilter): Promise<Map<string, TimelineResult>> {
  // An empty range has no events: an incremental sync with no new events needs no query at all.
  ranges = ranges.filter((r) => r.to > r.from);
  if (ranges.length === 0) return new Map();
  const where = timelineWhere(filter);
  const { rows } = await sql<{
    event_id: string; room_id: string; json: string; stream_ordering: number; depth: number; rejected_reason: string | null; soft_failed: boolean;
    outlier: boolean; redacted_by: string | null; state_group_before: string | null; state_group: string | null;
  }>`
    select t.*
    from unnest(${ranges.map((r) => r.roomId)}::text[], ${ranges.map((r) => r.from)}::bigint[], ${ranges.map((r) => r.to)}::bigint[]) as r(room_id, lo, hi)
    cross join lateral (
      select e.event_id, e.room_id, e.json, e.stream_ordering, e.depth, e.rejected_reason, e.soft_failed, e.outlier, e.redacted_by,
             e.state_group_before, e.state_group
      from events e
      where e.room_id = r.room_id and e.stream_ordering > r.lo and e.stream_ordering <= r.hi and ${where}
      order by e.stream_ordering desc limit ${limit + 1}
    ) t`.execute(db);
  return groupTimelines(rows.map(rowToStoredEvent), limit);
}

/**
 * Each room's state group at its position: the state after its latest accepted event at or before
 * it. (Rooms here grow linearly from this server's writer; once federation brings forks, the resolved
 * state of several extremities will need recording per position.)
 */
export async function stateGroupsAt(db: Queryable, at: Array<{ roomId: string; position: number }>): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  if (at.length === 0) return out;
  const { rows } = await sql<{ room_id: string; state_group: string }>`
    select r.room_id, g.state_group
    from unnest(${at.map((a) => a.roomId)}::text[], ${at.map((a) => a.position)}::bigint[]) as r(room_id, pos)
    cross join lateral (
      select e.state_group from events e
      where e.room_id = r.room_id and e.stream_ordering <= r.pos and e.state_group is not null and ${ACCEPTED}
      order by e.stream_ordering desc limit 1
    ) g`.execute(db);
  for (const r of rows) out.set(r.room_id, r.state_group);
  return out;
}

// A room's version is fixed by its create event and never changes (an upgrade makes a new room), so
// versions read once are kept (per database: tests run many servers in one process).
const versionCache = new WeakMap<object, Map<string, string>>();

export async function roomVersions(db: Queryable, roomIds: string[]): Promise<Map<string, string>> {
  if (roomIds.length === 0) return new Map();
  let cache = versionCache.get(db);
  if (!cache) versionCache.set(db, (cache = new Map()));
  const out = new Map<string, string>();
  const missing: string[] = [];
  for (const id of roomIds) {
    const v = cache.get(id);
    if (v === undefined) missing.push(id);
    else out.set(id, v);
  }
  if (missing.length === 0) return out;
  const rows = await db.selectFrom('rooms').select(['room_id', 'room_version']).where(sql<boolean>`room_id = any(${missing}::text[])`).execute();
  if (cache.size > 100_000) cache.clear();
  for (const r of rows) {
    cache.set(r.room_id, r.room_version);
    out.set(r.room_id, r.room_version);
  }
  return out;
}

export interface RoomSummaryData {
  joined: number;
  invited: number;
  heroes: string[];
}

/** m.joined_member_count, m.invited_member_count and up to 5 heroes (other members, earliest first) per room. */
export async function summaries(db: Queryable, roomIds: string[], me: string): Promise<Map<string, RoomSummaryData>> {
  const out = new Map<string, RoomSummaryData>();
  if (roomIds.length === 0) return out;
  for (const r of roomIds) out.set(r, { joined: 0, invited: 0, heroes: [] });
  const { rows } = await sql<{ room_id: string; membership: string; n: string; heroes: string[] | null }>`
    select room_id, membership, count(*) as n,
           (array_agg(user_id order by stream_ordering) filter (where user_id <> ${me}))[1:5] as heroes
    from room_memberships
    where room_id = any(${roomIds}::text[]) and membership in ('join', 'invite')
    group by room_id, membership`.execute(db);
  for (const r of rows) {
    const s = out.get(r.room_id)!;
    if (r.membership === 'join') s.joined = Number(r.n);
    else s.invited = Number(r.n);
    s.heroes.push(...(r.heroes ?? []));
  }
  for (const s of out.values()) s.heroes = s.heroes.slice(0, 5);
  return out;
}

/** Transaction ids of `eventIds` sent by this user and device. */
export async function transactionIds(db: Queryable, eventIds: string[], userId: string, deviceId: string): Promise<Map<string, string>> {
  if (eventIds.length === 0) return new Map();
  const rows = await db
    .selectFrom('event_txn_ids')
    .select(['event_id', 'txn_id'])
    .where(sql<boolean>`event_id = any(${eventIds}::text[])`)
    .where('user_id', '=', userId)
    .where('device_id', '=', deviceId)
    .execute();
  return new Map(rows.map((r) => [r.event_id, r.txn_id]));
}
