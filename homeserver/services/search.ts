// Server-side search (modules/search.md, search.yaml POST /search, category room_events) over the
// event_search index (0006_history.ts): PostgreSQL full-text search on content.body, content.name and
// content.topic. The index holds the configured language's stems and the plain words ('simple'); a query
// matches either, so English text is found by any form of a word and other languages word for word.
// m.room.encrypted has no searchable keys and is never indexed; redactions remove rows.
//
// Only rooms the searcher is joined to are searched, and every hit passes history visibility, so a
// late joiner does not find what was said before they could see it.
import { sql } from 'kysely';
import { stateKey } from '../../spec/events.ts';
import { badJson, invalidParam } from '../errors.ts';
import type { Homeserver } from '../homeserver.ts';
import type { Requester } from '../http/api.ts';
import type { StoredEvent } from '../storage/rooms-store.ts';
import type { ClientEvent } from './client-events.ts';
import { parseRoomEventFilter, type RoomEventFilter } from './event-filter.ts';
import { tokenAfter, tokenBefore } from './history.ts';
import { formatWithAggregations } from './relations.ts';
import { checkRoomAccess, filterEventsForUser } from './visibility.ts';

declare module '../homeserver.ts' {
  interface Services {
    search: SearchService;
  }
}

const KEYS = ['content.body', 'content.name', 'content.topic'] as const;
const MAX_LIMIT = 100;
const COUNT_CAP = 10_000;

interface RoomEventsCriteria {
  searchTerm: string;
  keys: string[];
  filter: RoomEventFilter;
  orderBy: 'rank' | 'recent';
  eventContext: { before: number; after: number; includeProfile: boolean } | null;
  includeState: boolean;
  groupBy: Array<'room_id' | 'sender'>;
}

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

function parseCriteria(body: Record<string, unknown>): RoomEventsCriteria | null {
  const cats = body['search_categories'];
  if (!isObj(cats)) throw badJson('search_categories must be an object');
  const re = cats['room_events'];
  if (re === undefined) return null;
  if (!isObj(re)) throw badJson('room_events must be an object');
  const term = re['search_term'];
  if (typeof term !== 'string') throw badJson('room_events.search_term must be a string');
  let keys: string[] = [...KEYS];
  if (re['keys'] !== undefined) {
    if (!Array.isArray(re['keys']) || re['keys'].some((k) => !(KEYS as readonly unknown[]).includes(k))) throw invalidParam(`keys must be a list of ${KEYS.join(', ')}`);
    keys = re['keys'] as string[];
  }
  const orderBy = re['order_by'] ?? 'rank';
  if (orderBy !== 'rank' && orderBy !== 'recent') throw invalidParam('order_by must be "rank" or "recent"');
  let eventContext: RoomEventsCriteria['eventContext'] = null;
  if (re['event_context'] !== undefined) {
    const ec = re['event_context'];
    if (!isObj(ec)) throw badJson('event_context must be an object');
    const num = (k: string) => {
      const v = ec[k] ?? 5;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw badJson(`event_context.${k} must be a non-negative integer`);
      return Math.min(v, 50);
    };
    if (ec['include_profile'] !== undefined && typeof ec['include_profile'] !== 'boolean') throw badJson('event_context.include_profile must be a boolean');
    eventContext = { before: num('before_limit'), after: num('after_limit'), includeProfile: ec['include_profile'] === true };
  }
  if (re['include_state'] !== undefined && typeof re['include_state'] !== 'boolean') throw badJson('include_state must be a boolean');
  const groupBy: Array<'room_id' | 'sender'> = [];
  if (re['groupings'] !== undefined) {
    const g = re['groupings'];
    if (!isObj(g)) throw badJson('groupings must be an object');
    const list = g['group_by'] ?? [];
    if (!Array.isArray(list)) throw badJson('groupings.group_by must be a list');
    for (const item of list) {
      if (!isObj(item) || (item['key'] !== 'room_id' && item['key'] !== 'sender')) throw invalidParam('groupings.group_by keys must be "room_id" or "sender"');
      groupBy.push(item['key']);
    }
  }
  return {
    searchTerm: term,
    keys,
    filter: parseRoomEventFilter(re['filter'] === undefined ? undefined : re['filter']),
    orderBy,
    eventContext,
    includeState: re['include_state'] === true,
    groupBy,
  };
}

/** next_batch: rank order pages by offset, recent order by the last stream position. */
type Cursor = { kind: 'rank'; offset: number } | { kind: 'recent'; before: number };

function encodeCursor(c: Cursor): string {
  return c.kind === 'rank' ? `k${c.offset}` : `r${c.before}`;
}
function decodeCursor(token: string, orderBy: 'rank' | 'recent'): Cursor {
  const m = /^([kr])(\d{1,16})$/.exec(token);
  if (!m || (m[1] === 'k') !== (orderBy === 'rank')) throw invalidParam('Unknown next_batch token');
  return m[1] === 'k' ? { kind: 'rank', offset: Number(m[2]) } : { kind: 'recent', before: Number(m[2]) };
}

export class SearchService {
  private readonly hs: Homeserver;
  /** The text search configuration in use (search.language, or 'simple' when the database lacks it). */
  language = 'simple';

  constructor(hs: Homeserver) {
    this.hs = hs;
  }

  async init(): Promise<void> {
    const wanted = this.hs.config.search.language;
    const r = await sql<{ cfgname: string }>`select cfgname from pg_ts_config where cfgname = ${wanted}`.execute(this.hs.db);
    if (r.rows.length === 0) {
      this.hs.logger.warn({ language: wanted }, 'text search configuration not available; searching with "simple"');
      this.language = 'simple';
    } else {
      this.language = wanted;
    }
    await this.hs.db.updateTable('search_settings').set({ language: this.language }).where('id', '=', 1).execute();
  }

  async search(requester: Requester, body: Record<string, unknown>, nextBatch: string | undefined): Promise<Record<string, unknown>> {
    const c = parseCriteria(body);
    if (!c) return { search_categories: {} };
    return { search_categories: { room_events: await this.roomEvents(requester, c, nextBatch) } };
  }

  private async roomEvents(requester: Requester, c: RoomEventsCriteria, nextBatch: string | undefined): Promise<Record<string, unknown>> {
    const userId = requester.userId;
    let rooms = await this.hs.services.rooms.getJoinedRoomIds(userId);
    if (c.filter.rooms) rooms = rooms.filter((r) => c.filter.rooms!.includes(r));
    if (c.filter.not_rooms) rooms = rooms.filter((r) => !c.filter.not_rooms!.includes(r));
    const limit = Math.min(c.filter.limit ?? 10, MAX_LIMIT);
    let cursor: Cursor = nextBatch !== undefined ? decodeCursor(nextBatch, c.orderBy) : c.orderBy === 'rank' ? { kind: 'rank', offset: 0 } : { kind: 'recent', before: Number.MAX_SAFE_INTEGER };
    const empty = { results: [], count: 0, highlights: [] as string[] };
    if (rooms.length === 0 || c.searchTerm.trim() === '' || limit === 0) return empty;

    const query = sql`(websearch_to_tsquery(${this.language}::regconfig, ${c.searchTerm}) || websearch_to_tsquery('simple', ${c.searchTerm}))`;
    const where = (q: any) => {
      let w = q.where('s.room_id', 'in', rooms).where('s.key', 'in', c.keys).where(sql<boolean>`s.vector @@ ${query}`);
      if (c.filter.senders) w = w.where('s.sender', 'in', c.filter.senders);
      if (c.filter.not_senders) w = w.where('s.sender', 'not in', c.filter.not_senders);
      if (c.filter.types) w = w.where('s.type', 'in', c.filter.types);
      if (c.filter.not_types) w = w.where('s.type', 'not in', c.filter.not_types);
      if (c.filter.contains_url !== undefined) w = w.where('s.contains_url', '=', c.filter.contains_url);
      return w;
    };

    const hits: Array<{ event: StoredEvent; rank: number }> = [];
    let more = false;
    for (let round = 0; round < 10 && hits.length < limit; round++) {
      const batch = Math.max(limit * 2, 20);
      let q = where(this.hs.db.selectFrom('event_search as s')).select(['s.event_id', 's.stream_ordering', sql<number>`ts_rank_cd(s.vector, ${query})`.as('rank')]);
      if (cursor.kind === 'rank') q = q.orderBy('rank', 'desc').orderBy('s.stream_ordering', 'desc').offset(cursor.offset);
      else q = q.where('s.stream_ordering', '<', cursor.before).orderBy('s.stream_ordering', 'desc');
      const rows = (await q.limit(batch + 1).execute()) as Array<{ event_id: string; stream_ordering: number | string; rank: number }>;
      const page = rows.slice(0, batch);
      const events = await this.hs.services.rooms.getEvents(page.map((r) => r.event_id));
      const byId = new Map(events.map((e) => [e.eventId, e]));
      const ordered = page.map((r) => byId.get(r.event_id)).filter((e): e is StoredEvent => e !== undefined && e.redactedBy === null);
      const visible = new Set((await filterEventsForUser(this.hs, userId, ordered)).map((e) => e.eventId));
      let consumed = 0;
      for (const r of page) {
        consumed++;
        const e = byId.get(r.event_id);
        if (e && visible.has(e.eventId)) hits.push({ event: e, rank: Number(r.rank) });
        if (hits.length >= limit) break;
      }
      const last = page[consumed - 1];
      cursor = cursor.kind === 'rank' ? { kind: 'rank', offset: cursor.offset + consumed } : { kind: 'recent', before: last ? Number(last.stream_ordering) : cursor.before };
      more = consumed < page.length || rows.length > batch;
      if (!more) break;
    }

    // An approximate count (search.yaml): matches in the searcher's rooms, before visibility, capped.
    const countRow = await sql<{ n: string }>`select count(*) as n from (${where(this.hs.db.selectFrom('event_search as s')).select('s.event_id').limit(COUNT_CAP)}) x`.execute(this.hs.db);
    const formatted = await formatWithAggregations(this.hs, requester, hits.map((h) => h.event));
    const results: Array<Record<string, unknown>> = hits.map((h, i) => ({ rank: h.rank, result: formatted[i] }));

    if (c.eventContext) {
      const ec = c.eventContext;
      await Promise.all(
        hits.map(async (h, i) => {
          results[i]!['context'] = await this.contextOf(requester, h.event, ec);
        }),
      );
    }

    const res: Record<string, unknown> = {
      count: Number(countRow.rows[0]?.n ?? 0),
      results,
      highlights: await this.highlights(c.searchTerm, hits.map((h) => h.event)),
    };
    if (more) res['next_batch'] = encodeCursor(cursor);
    if (c.includeState) {
      const state: Record<string, ClientEvent[]> = {};
      for (const roomId of new Set(hits.map((h) => h.event.roomId))) {
        state[roomId] = await this.hs.services.rooms.formatEvents(await this.hs.services.rooms.getCurrentStateEvents(roomId), { requester });
      }
      res['state'] = state;
    }
    if (c.groupBy.length > 0) {
      const groups: Record<string, Record<string, { results: string[]; order: number; next_batch?: string }>> = {};
      for (const key of c.groupBy) {
        const byKey: Record<string, { results: string[]; order: number; next_batch?: string }> = {};
        let order = 0;
        for (const h of hits) {
          const k = key === 'room_id' ? h.event.roomId : h.event.pdu.sender;
          byKey[k] ??= { results: [], order: ++order, ...(more ? { next_batch: encodeCursor(cursor) } : {}) };
          byKey[k].results.push(h.event.eventId);
        }
        groups[key] = byKey;
      }
      res['groups'] = groups;
    }
    return res;
  }

  /** The words of the results that matched the query (for clients to highlight), and the term's own words. */
  private async highlights(term: string, events: StoredEvent[]): Promise<string[]> {
    const words = new Set<string>(term.split(/[^\p{L}\p{N}]+/u).filter((w) => w.length > 0 && !/^(or|and)$/i.test(w)));
    const texts: string[] = [];
    for (const e of events) {
      const c = e.pdu.content;
      for (const k of ['body', 'name', 'topic']) if (typeof c[k] === 'string') texts.push((c[k] as string).slice(0, 65_536));
    }
    if (texts.length > 0) {
      const query = sql`(websearch_to_tsquery(${this.language}::regconfig, ${term}) || websearch_to_tsquery('simple', ${term}))`;
      const r = await sql<{ h: string }>`
        select ts_headline(${this.language}::regconfig, t, ${query}, 'StartSel=<<, StopSel=>>, HighlightAll=true') as h
        from unnest(${texts}::text[]) as t`.execute(this.hs.db);
      for (const row of r.rows) for (const m of row.h.matchAll(/<<(.*?)>>/gsu)) if (m[1]) words.add(m[1]);
    }
    return [...words];
  }

  private async contextOf(requester: Requester, event: StoredEvent, ec: { before: number; after: number; includeProfile: boolean }): Promise<Record<string, unknown>> {
    const history = this.hs.services.history;
    const access = await checkRoomAccess(this.hs, requester.userId, event.roomId);
    const [before, after] = await Promise.all([
      ec.before > 0 ? history.paginate(requester.userId, access, event.roomId, { depth: event.depth, stream: event.streamOrdering - 1 }, null, 'b', ec.before, {}) : null,
      ec.after > 0 ? history.paginate(requester.userId, access, event.roomId, { depth: event.depth, stream: event.streamOrdering }, null, 'f', ec.after, {}) : null,
    ]);
    const out: Record<string, unknown> = {
      start: before?.events.length ? tokenBefore(before.events.at(-1)!) : tokenBefore(event),
      end: after?.events.length ? tokenAfter(after.events.at(-1)!) : tokenAfter(event),
      events_before: await formatWithAggregations(this.hs, requester, before?.events ?? []),
      events_after: await formatWithAggregations(this.hs, requester, after?.events ?? []),
    };
    if (ec.includeProfile) {
      const senders = new Set([event.pdu.sender, ...(before?.events ?? []).map((e) => e.pdu.sender), ...(after?.events ?? []).map((e) => e.pdu.sender)]);
      const group = event.stateGroup ?? event.stateGroupBefore;
      const state = group ? (await this.hs.services.rooms.writer.stateGroups.get(group)).state : new Map<string, string>();
      const profiles: Record<string, { displayname?: string; avatar_url?: string }> = {};
      for (const s of senders) {
        const id = state.get(stateKey('m.room.member', s));
        const pdu = id ? await this.hs.services.rooms.writer.getPdu(id) : undefined;
        const p: { displayname?: string; avatar_url?: string } = {};
        if (typeof pdu?.pdu.content['displayname'] === 'string') p.displayname = pdu.pdu.content['displayname'];
        if (typeof pdu?.pdu.content['avatar_url'] === 'string') p.avatar_url = pdu.pdu.content['avatar_url'];
        profiles[s] = p;
      }
      out['profile_info'] = profiles;
    }
    return out;
  }
}

export function initSearch(hs: Homeserver): SearchService {
  const s = new SearchService(hs);
  hs.services.search = s;
  return s;
}
