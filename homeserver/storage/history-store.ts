// Tables of the history, discovery and search module (migrations/0006_history.ts) and the SQL that pages
// through a room's events. The services in services/{visibility,history,relations,search,...}.ts decide.
import { sql, type Generated } from 'kysely';
import type { Queryable } from './schema.ts';
import { rowToStoredEvent, type StoredEvent } from './rooms-store.ts';

export interface EventRelationsTable {
  event_id: string;
  room_id: string;
  relates_to_id: string;
  rel_type: string;
  type: string;
  sender: string;
  aggregation_key: string | null;
  stream_ordering: number;
  depth: number;
  origin_server_ts: number;
  has_new_content: boolean;
}
export interface ThreadsTable {
  room_id: string;
  thread_id: string;
  latest_event_id: string;
  latest_stream_ordering: number;
}
export interface SearchSettingsTable {
  id: number;
  language: string;
}
export interface EventSearchTable {
  event_id: string;
  room_id: string;
  sender: string;
  key: string;
  type: string;
  stream_ordering: number;
  origin_server_ts: number;
  contains_url: boolean;
  vector: unknown;
}
export interface RoomStatsTable {
  room_id: string;
  name: string | null;
  topic: string | null;
  canonical_alias: string | null;
  avatar_url: string | null;
  join_rule: string | null;
  history_visibility: string | null;
  guest_access: string | null;
  room_type: string | null;
  encryption: string | null;
  room_version: string | null;
  allowed_room_ids: string | null;
  joined_members: number;
  search_text: string;
}
export interface UserDirectoryTable {
  user_id: string;
  display_name: string | null;
  avatar_url: string | null;
  is_local: boolean;
  vector: unknown;
}
export interface ContentReportsTable {
  id: Generated<number>;
  kind: 'event' | 'room' | 'user';
  reporter: string;
  room_id: string | null;
  event_id: string | null;
  target_user_id: string | null;
  reason: string | null;
  received_ts: number;
}

declare module './schema.ts' {
  interface Tables {
    event_relations: EventRelationsTable;
    threads: ThreadsTable;
    search_settings: SearchSettingsTable;
    event_search: EventSearchTable;
    room_stats: RoomStatsTable;
    room_stats_stale: { room_id: string };
    user_directory: UserDirectoryTable;
    user_directory_stale: { user_id: string };
    content_reports: ContentReportsTable;
  }
}

/** A position in a room's topological order: (depth, stream ordering), compared lexicographically. */
export interface TopoPosition {
  depth: number;
  stream: number;
}

const EVENT_COLUMNS = [
  'event_id', 'room_id', 'json', 'stream_ordering', 'depth', 'rejected_reason', 'soft_failed', 'outlier', 'redacted_by', 'state_group_before', 'state_group',
] as const;

export interface PageQuery {
  roomId: string;
  /** Exclusive bound on the side we start from (backwards: events before it; forwards: after it). */
  from: TopoPosition;
  /** Inclusive-exclusive bound on the far side, or null. */
  to: TopoPosition | null;
  dir: 'b' | 'f';
  limit: number;
  /** Only events with stream ordering at most this (the reader's horizon, e.g. when they left). */
  maxStream: number;
  types?: string[] | undefined;
  notTypes?: string[] | undefined;
  senders?: string[] | undefined;
  notSenders?: string[] | undefined;
}

/**
 * Accepted events of a room in topological order, starting strictly after (forwards) or at-or-before
 * (backwards) `from` — a position names the gap just after the event with that (depth, stream).
 */
export async function pageRoomEvents(db: Queryable, q: PageQuery): Promise<StoredEvent[]> {
  let query = db
    .selectFrom('events')
    .select(EVENT_COLUMNS)
    .where('room_id', '=', q.roomId)
    .where('outlier', '=', false)
    .where('rejected_reason', 'is', null)
    .where('soft_failed', '=', false);
  if (Number.isFinite(q.maxStream)) query = query.where('stream_ordering', '<=', q.maxStream);
  if (q.dir === 'b') {
    query = query.where(sql<boolean>`(depth, stream_ordering) <= (${q.from.depth}, ${q.from.stream})`);
    if (q.to) query = query.where(sql<boolean>`(depth, stream_ordering) > (${q.to.depth}, ${q.to.stream})`);
    query = query.orderBy('depth', 'desc').orderBy('stream_ordering', 'desc');
  } else {
    query = query.where(sql<boolean>`(depth, stream_ordering) > (${q.from.depth}, ${q.from.stream})`);
    if (q.to) query = query.where(sql<boolean>`(depth, stream_ordering) <= (${q.to.depth}, ${q.to.stream})`);
    query = query.orderBy('depth', 'asc').orderBy('stream_ordering', 'asc');
  }
  if (q.types && q.types.length > 0) query = query.where((eb) => eb.or(q.types!.map((t) => typePattern(eb, t, true))));
  if (q.notTypes && q.notTypes.length > 0) query = query.where((eb) => eb.and(q.notTypes!.map((t) => typePattern(eb, t, false))));
  if (q.senders && q.senders.length > 0) query = query.where('sender', 'in', q.senders);
  if (q.notSenders && q.notSenders.length > 0) query = query.where('sender', 'not in', q.notSenders);
  const rows = await query.limit(q.limit).execute();
  return rows.map(rowToStoredEvent);
}

// Filter type patterns may end in '*' (client-server-api "Filtering": "A '*' can be used as a wildcard").
function typePattern(eb: any, pattern: string, match: boolean) {
  if (pattern.includes('*')) {
    const like = pattern.replace(/[\\%_]/g, (c) => '\\' + c).replace(/\*/g, '%');
    return eb('type', match ? 'like' : 'not like', like);
  }
  return eb('type', match ? '=' : '<>', pattern);
}

/** The topological position of the latest accepted event with stream ordering at most `stream`. */
export async function positionAtStream(db: Queryable, roomId: string, stream: number): Promise<TopoPosition> {
  const r = await db
    .selectFrom('events')
    .select(['depth', 'stream_ordering'])
    .where('room_id', '=', roomId)
    .where('stream_ordering', '<=', stream)
    .where('outlier', '=', false)
    .orderBy('stream_ordering', 'desc')
    .limit(1)
    .executeTakeFirst();
  return r ? { depth: Number(r.depth), stream: Number(r.stream_ordering) } : { depth: 0, stream: 0 };
}

/** The topological position just after the newest event of the room. */
export async function endOfRoom(db: Queryable, roomId: string): Promise<TopoPosition> {
  const r = await db
    .selectFrom('events')
    .select(['depth', 'stream_ordering'])
    .where('room_id', '=', roomId)
    .where('outlier', '=', false)
    .orderBy('depth', 'desc')
    .orderBy('stream_ordering', 'desc')
    .limit(1)
    .executeTakeFirst();
  return r ? { depth: Number(r.depth), stream: Number(r.stream_ordering) } : { depth: 0, stream: 0 };
}
