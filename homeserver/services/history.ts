// Reading a room's history (client-server-api "Getting events for a room"): /messages, /context,
// /timestamp_to_event, /relations and /threads. Every event returned has passed history visibility
// (services/visibility.ts) and carries its bundled aggregations (services/relations.ts).
//
// Pagination tokens name a gap in the room's topological order (depth, stream ordering):
//   t<depth>_<stream>  the gap just after the event at that position;
//   s<stream>          the gap just after the latest event with at most that stream position (what a
//                      stream-only token, e.g. one from /sync, converts to).
// Other stream-token formats (sync's) can be taught with `tokenParsers`.
import { sql } from 'kysely';
import type { StateMap } from '../../spec/events.ts';
import { stateKey } from '../../spec/events.ts';
import { invalidParam, notFound } from '../errors.ts';
import type { Homeserver } from '../homeserver.ts';
import type { Requester } from '../http/api.ts';
import { endOfRoom, pageRoomEvents, positionAtStream, type TopoPosition } from '../storage/history-store.ts';
import { rowToStoredEvent, type StoredEvent } from '../storage/rooms-store.ts';
import type { ClientEvent } from './client-events.ts';
import { matchesRoomEventFilter, type RoomEventFilter } from './event-filter.ts';
import { formatWithAggregations } from './relations.ts';
import { checkRoomAccess, filterEventsForUser, type RoomAccess } from './visibility.ts';

declare module '../homeserver.ts' {
  interface Services {
    history: HistoryService;
  }
}

/** Most events scanned for one page, so a reader who may see little of a long room gets an answer quickly. */
const SCAN_CAP = 2_000;
export const MAX_PAGE = 1_000;

export function topologicalToken(p: TopoPosition): string {
  return `t${p.depth}_${p.stream}`;
}

/** The token for the gap just before an event (what /sync's prev_batch of a timeline starting there is). */
export function tokenBefore(e: { depth: number; streamOrdering: number }): string {
  return topologicalToken({ depth: e.depth, stream: e.streamOrdering - 1 });
}

/** The token for the gap just after an event. */
export function tokenAfter(e: { depth: number; streamOrdering: number }): string {
  return topologicalToken({ depth: e.depth, stream: e.streamOrdering });
}

function posBefore(e: StoredEvent): TopoPosition {
  return { depth: e.depth, stream: e.streamOrdering - 1 };
}
function posAfter(e: StoredEvent): TopoPosition {
  return { depth: e.depth, stream: e.streamOrdering };
}

export interface Page {
  events: StoredEvent[];
  /** Where the next page in the same direction starts. */
  next: TopoPosition;
  /** No more events in that direction (within the reader's reach). */
  exhausted: boolean;
}

export class HistoryService {
  private readonly hs: Homeserver;
  /** Extra token formats: each returns an events-stream position, or null when the token is not theirs. */
  readonly tokenParsers: Array<(token: string) => number | null> = [];

  constructor(hs: Homeserver) {
    this.hs = hs;
  }

  async parseToken(roomId: string, token: string): Promise<TopoPosition> {
    let m = /^t(\d{1,16})_(-?\d{1,16})$/.exec(token);
    if (m) return { depth: Number(m[1]), stream: Number(m[2]) };
    m = /^s(\d{1,16})$/.exec(token);
    let stream: number | null = m ? Number(m[1]) : null;
    for (const p of this.tokenParsers) {
      if (stream !== null) break;
      stream = p(token);
    }
    if (stream === null) throw invalidParam('Unknown pagination token');
    return positionAtStream(this.hs.db, roomId, stream);
  }

  /**
   * The state of a room at a pagination token (/members `at`): the state after the latest event at or
   * before the token's position, but never past `maxStream` (where the reader left).
   */
  /** The state after the last event at or before `token`, with that event's id (for visibility checks). */
  async stateAtToken(roomId: string, token: string, maxStream: number): Promise<{ state: StateMap<string>; eventId: string } | undefined> {
    const pos = await this.parseToken(roomId, token);
    let q = this.hs.db
      .selectFrom('events')
      .select(['state_group', 'event_id'])
      .where('room_id', '=', roomId)
      .where('outlier', '=', false)
      .where('rejected_reason', 'is', null)
      .where('soft_failed', '=', false)
      .where('state_group', 'is not', null)
      .where(sql<boolean>`(depth, stream_ordering) <= (${pos.depth}, ${pos.stream})`)
      .orderBy('depth', 'desc')
      .orderBy('stream_ordering', 'desc')
      .limit(1);
    if (Number.isFinite(maxStream)) q = q.where('stream_ordering', '<=', maxStream);
    const row = await q.executeTakeFirst();
    if (!row?.state_group) return undefined;
    return { state: (await this.hs.services.rooms.writer.stateGroups.get(row.state_group)).state, eventId: row.event_id };
  }

  /**
   * Events of a room the user may see, in `dir` order from `from`, at most `limit`, matching the filter.
   * Scans in batches and stops after SCAN_CAP rows (returning a shorter page with a token to go on).
   */
  async paginate(
    userId: string | null,
    access: RoomAccess,
    roomId: string,
    from: TopoPosition,
    to: TopoPosition | null,
    dir: 'b' | 'f',
    limit: number,
    filter: RoomEventFilter,
  ): Promise<Page> {
    const out: StoredEvent[] = [];
    let pos = from;
    let scanned = 0;
    let exhausted = false;
    // The first batch is the page and one more (which tells whether more follow); a reader who may see
    // little of the room gets larger batches after it.
    let batchSize = Math.min(limit + 1, 500);
    while (out.length < limit && scanned < SCAN_CAP) {
      const batch = await pageRoomEvents(this.hs.db, {
        roomId,
        from: pos,
        to,
        dir,
        limit: batchSize,
        maxStream: access.maxStream,
        types: filter.types,
        notTypes: filter.not_types,
        senders: filter.senders,
        notSenders: filter.not_senders,
      });
      scanned += batch.length;
      if (batch.length === 0) {
        exhausted = true;
        break;
      }
      const visible = new Set((await filterEventsForUser(this.hs, userId, batch)).map((e) => e.eventId));
      let stoppedEarly = false;
      for (let i = 0; i < batch.length; i++) {
        const e = batch[i]!;
        if (visible.has(e.eventId) && matchesRoomEventFilter(filter, roomId, e.pdu)) out.push(e);
        pos = dir === 'b' ? posBefore(e) : posAfter(e);
        if (out.length >= limit) {
          stoppedEarly = i < batch.length - 1;
          break;
        }
      }
      if (batch.length < batchSize && !stoppedEarly) {
        exhausted = true;
        break;
      }
      batchSize = Math.min(Math.max(batchSize * 2, 50), 500);
    }
    return { events: out, next: pos, exhausted };
  }

  /** GET /rooms/{roomId}/messages (message_pagination.yaml). */
  async messages(
    requester: Requester,
    roomId: string,
    q: { from?: string; to?: string; dir: 'b' | 'f'; limit: number; filter: RoomEventFilter },
  ): Promise<{ start: string; end?: string; chunk: ClientEvent[]; state?: ClientEvent[] }> {
    const access = await checkRoomAccess(this.hs, requester.userId, roomId);
    let from: TopoPosition;
    if (q.from !== undefined) from = await this.parseToken(roomId, q.from);
    else if (q.dir === 'b') from = await endOfRoom(this.hs.db, roomId);
    else from = { depth: 0, stream: 0 };
    const to = q.to !== undefined ? await this.parseToken(roomId, q.to) : null;
    const page = await this.paginate(requester.userId, access, roomId, from, to, q.dir, q.limit, q.filter);
    const chunk = await formatWithAggregations(this.hs, requester, page.events);
    const res: { start: string; end?: string; chunk: ClientEvent[]; state?: ClientEvent[] } = { start: q.from ?? topologicalToken(from), chunk };
    // "If no further events are available ... this property is omitted."
    if (!(page.exhausted && (q.dir === 'b' || page.events.length === 0))) res.end = topologicalToken(page.next);
    if (q.filter.lazy_load_members) {
      const last = page.events.at(-1);
      res.state = await this.membersFor(requester, last ? (last.stateGroup ?? last.stateGroupBefore) : null, roomId, page.events);
    }
    return res;
  }

  /** Member events of the senders of `events`, from the state group given (or the current state). */
  private async membersFor(requester: Requester, group: string | null, roomId: string, events: StoredEvent[]): Promise<ClientEvent[]> {
    if (events.length === 0) return [];
    const state: StateMap<string> | undefined = group ? (await this.hs.services.rooms.writer.stateGroups.get(group)).state : await this.hs.services.rooms.getCurrentStateIds(roomId);
    if (!state) return [];
    const ids = new Set<string>();
    for (const e of events) {
      const id = state.get(stateKey('m.room.member', e.pdu.sender));
      if (id) ids.add(id);
    }
    const members = await this.hs.services.rooms.getEvents([...ids]);
    return this.hs.services.rooms.formatEvents(members, { requester });
  }

  /** GET /rooms/{roomId}/context/{eventId} (event_context.yaml). */
  async context(requester: Requester, roomId: string, eventId: string, limit: number, filter: RoomEventFilter) {
    const access = await checkRoomAccess(this.hs, requester.userId, roomId);
    const event = await this.hs.services.rooms.getEvent(eventId);
    if (!event || event.roomId !== roomId || event.streamOrdering > access.maxStream) throw notFound('Event not found');
    if ((await filterEventsForUser(this.hs, requester.userId, [event], { hideIgnored: false })).length === 0) throw notFound('Event not found');
    const beforeLimit = Math.floor(limit / 2);
    const afterLimit = limit - beforeLimit;
    const [before, after] = await Promise.all([
      beforeLimit > 0 ? this.paginate(requester.userId, access, roomId, posBefore(event), null, 'b', beforeLimit, filter) : null,
      afterLimit > 0 ? this.paginate(requester.userId, access, roomId, posAfter(event), null, 'f', afterLimit, filter) : null,
    ]);
    const beforeEvents = before?.events ?? [];
    const afterEvents = after?.events ?? [];
    const [eventsBefore, [formatted], eventsAfter] = await Promise.all([
      formatWithAggregations(this.hs, requester, beforeEvents),
      formatWithAggregations(this.hs, requester, [event]),
      formatWithAggregations(this.hs, requester, afterEvents),
    ]);
    // "The state of the room at the last event returned."
    const last = afterEvents.at(-1) ?? event;
    const group = last.stateGroup ?? last.stateGroupBefore;
    let state: ClientEvent[] = [];
    if (group) {
      if (filter.lazy_load_members) {
        state = await this.membersFor(requester, group, roomId, [...beforeEvents, event, ...afterEvents]);
      } else {
        const ids = [...(await this.hs.services.rooms.writer.stateGroups.get(group)).state.values()];
        state = await this.hs.services.rooms.formatEvents(await this.hs.services.rooms.getEvents(ids), { requester });
      }
    }
    return {
      start: topologicalToken(before ? before.next : posBefore(event)),
      end: topologicalToken(after ? after.next : posAfter(event)),
      events_before: eventsBefore,
      event: formatted!,
      events_after: eventsAfter,
      state,
    };
  }

  /** GET /rooms/{roomId}/timestamp_to_event (room_event_by_timestamp.yaml): the closest visible event. */
  async timestampToEvent(requester: Requester, roomId: string, ts: number, dir: 'f' | 'b'): Promise<{ event_id: string; origin_server_ts: number }> {
    const access = await checkRoomAccess(this.hs, requester.userId, roomId);
    let cursor: { ts: number; stream: number } | null = null;
    for (let round = 0; round < 10; round++) {
      let q = this.hs.db
        .selectFrom('events')
        .select(['event_id', 'room_id', 'json', 'stream_ordering', 'depth', 'rejected_reason', 'soft_failed', 'outlier', 'redacted_by', 'state_group_before', 'state_group'])
        .where('room_id', '=', roomId)
        .where('outlier', '=', false)
        .where('rejected_reason', 'is', null)
        .where('soft_failed', '=', false);
      if (Number.isFinite(access.maxStream)) q = q.where('stream_ordering', '<=', access.maxStream);
      if (dir === 'f') {
        q = q.where('origin_server_ts', '>=', ts).orderBy('origin_server_ts', 'asc').orderBy('stream_ordering', 'asc');
        if (cursor) q = q.where((eb) => eb.or([eb('origin_server_ts', '>', cursor!.ts), eb.and([eb('origin_server_ts', '=', cursor!.ts), eb('stream_ordering', '>', cursor!.stream)])]));
      } else {
        q = q.where('origin_server_ts', '<=', ts).orderBy('origin_server_ts', 'desc').orderBy('stream_ordering', 'desc');
        if (cursor) q = q.where((eb) => eb.or([eb('origin_server_ts', '<', cursor!.ts), eb.and([eb('origin_server_ts', '=', cursor!.ts), eb('stream_ordering', '<', cursor!.stream)])]));
      }
      const rows = await q.limit(50).execute();
      if (rows.length === 0) break;
      const events = rows.map(rowToStoredEvent);
      const visible = await filterEventsForUser(this.hs, requester.userId, events, { hideIgnored: false });
      if (visible.length > 0) return { event_id: visible[0]!.eventId, origin_server_ts: visible[0]!.pdu.origin_server_ts };
      const lastEv = events.at(-1)!;
      cursor = { ts: lastEv.pdu.origin_server_ts, stream: lastEv.streamOrdering };
    }
    throw notFound(`Unable to find event ${dir === 'f' ? 'after' : 'before'} ${ts} in ${roomId}`);
  }

  // -----------------------------------------------------------------------------------------------
  // Relations (relations.yaml) and threads (threads_list.yaml)

  /** A visible parent event in the room, or 404. */
  private async visibleEvent(requester: Requester, roomId: string, eventId: string): Promise<{ event: StoredEvent; access: RoomAccess }> {
    const access = await checkRoomAccess(this.hs, requester.userId, roomId);
    const event = await this.hs.services.rooms.getEvent(eventId);
    if (!event || event.roomId !== roomId || event.streamOrdering > access.maxStream) throw notFound('Event not found');
    if ((await filterEventsForUser(this.hs, requester.userId, [event], { hideIgnored: false })).length === 0) throw notFound('Event not found');
    return { event, access };
  }

  async relations(
    requester: Requester,
    roomId: string,
    eventId: string,
    q: { relType?: string; eventType?: string; from?: string; to?: string; dir: 'b' | 'f'; limit: number; recurse: boolean },
  ): Promise<{ chunk: ClientEvent[]; next_batch?: string; prev_batch?: string; recursion_depth?: number }> {
    const { access } = await this.visibleEvent(requester, roomId, eventId);
    const maxDepth = q.recurse ? 3 : 1;
    const from = q.from !== undefined ? await this.parseToken(roomId, q.from) : null;
    const to = q.to !== undefined ? await this.parseToken(roomId, q.to) : null;
    const relFilter = q.relType !== undefined ? sql`and r.rel_type = ${q.relType}` : sql``;
    const typeFilter = q.eventType !== undefined ? sql`and r.type = ${q.eventType}` : sql``;
    const cmpFrom = from ? (q.dir === 'b' ? sql`and (c.depth, c.stream_ordering) <= (${from.depth}, ${from.stream})` : sql`and (c.depth, c.stream_ordering) > (${from.depth}, ${from.stream})`) : sql``;
    const cmpTo = to ? (q.dir === 'b' ? sql`and (c.depth, c.stream_ordering) > (${to.depth}, ${to.stream})` : sql`and (c.depth, c.stream_ordering) <= (${to.depth}, ${to.stream})`) : sql``;
    const maxStream = Number.isFinite(access.maxStream) ? sql`and c.stream_ordering <= ${access.maxStream}` : sql``;
    const order = q.dir === 'b' ? sql`order by c.depth desc, c.stream_ordering desc` : sql`order by c.depth asc, c.stream_ordering asc`;
    // The filters apply at every level: a child reached only through a non-matching event is left out.
    const rows = await sql<{ event_id: string }>`
      with recursive c(event_id, depth, stream_ordering, level) as (
        select r.event_id, r.depth, r.stream_ordering, 1 from event_relations r
          where r.relates_to_id = ${eventId} and r.room_id = ${roomId} ${relFilter} ${typeFilter}
        union
        select r.event_id, r.depth, r.stream_ordering, c.level + 1 from event_relations r join c on r.relates_to_id = c.event_id
          where c.level < ${maxDepth} and r.room_id = ${roomId} ${relFilter} ${typeFilter}
      )
      select c.event_id from c where true ${cmpFrom} ${cmpTo} ${maxStream} ${order} limit ${q.limit + 1}`.execute(this.hs.db);
    const ids = rows.rows.map((r) => r.event_id);
    const more = ids.length > q.limit;
    const pageIds = ids.slice(0, q.limit);
    const stored = await this.hs.services.rooms.getEvents(pageIds);
    const order2 = new Map(pageIds.map((id, i) => [id, i]));
    stored.sort((a, b) => order2.get(a.eventId)! - order2.get(b.eventId)!);
    const visible = await filterEventsForUser(this.hs, requester.userId, stored);
    const res: { chunk: ClientEvent[]; next_batch?: string; prev_batch?: string; recursion_depth?: number } = {
      chunk: await formatWithAggregations(this.hs, requester, visible),
    };
    const lastEv = stored.at(-1);
    if (more && lastEv) res.next_batch = topologicalToken(q.dir === 'b' ? posBefore(lastEv) : posAfter(lastEv));
    if (q.from !== undefined) res.prev_batch = q.from;
    if (q.recurse) res.recursion_depth = maxDepth;
    return res;
  }

  async threads(requester: Requester, roomId: string, q: { include: 'all' | 'participated'; from?: string; limit: number }): Promise<{ chunk: ClientEvent[]; next_batch?: string }> {
    const access = await checkRoomAccess(this.hs, requester.userId, roomId);
    let before: number | null = null;
    if (q.from !== undefined) {
      const m = /^r(\d{1,16})$/.exec(q.from);
      if (!m) throw invalidParam('Unknown pagination token');
      before = Number(m[1]);
    }
    const out: StoredEvent[] = [];
    let cursor = before;
    let more = false;
    for (let round = 0; round < 10 && out.length < q.limit; round++) {
      let query = this.hs.db
        .selectFrom('threads as t')
        .innerJoin('events as root', 'root.event_id', 't.thread_id')
        .select(['t.thread_id', 't.latest_stream_ordering'])
        .where('t.room_id', '=', roomId)
        .orderBy('t.latest_stream_ordering', 'desc')
        .limit(q.limit + 1);
      if (cursor !== null) query = query.where('t.latest_stream_ordering', '<', cursor);
      if (Number.isFinite(access.maxStream)) query = query.where('root.stream_ordering', '<=', access.maxStream);
      if (q.include === 'participated') {
        const me = requester.userId;
        query = query.where((eb) =>
          eb.or([
            eb('root.sender', '=', me),
            eb.exists(
              eb
                .selectFrom('event_relations as r')
                .select('r.event_id')
                .whereRef('r.relates_to_id', '=', 't.thread_id')
                .where('r.rel_type', '=', 'm.thread')
                .where('r.sender', '=', me),
            ),
          ]),
        );
      }
      const rows = await query.execute();
      if (rows.length === 0) {
        more = false;
        break;
      }
      const page = rows.slice(0, q.limit - out.length);
      const roots = await this.hs.services.rooms.getEvents(page.map((r) => r.thread_id));
      const byId = new Map(roots.map((r) => [r.eventId, r]));
      const ordered = page.map((r) => byId.get(r.thread_id)).filter((e): e is StoredEvent => e !== undefined);
      out.push(...(await filterEventsForUser(this.hs, requester.userId, ordered)));
      cursor = Number(page.at(-1)!.latest_stream_ordering);
      more = rows.length > page.length;
      if (!more) break;
    }
    const res: { chunk: ClientEvent[]; next_batch?: string } = { chunk: await formatWithAggregations(this.hs, requester, out) };
    if (more && cursor !== null) res.next_batch = `r${cursor}`;
    return res;
  }
}

export function initHistory(hs: Homeserver): HistoryService {
  const s = new HistoryService(hs);
  hs.services.history = s;
  return s;
}
