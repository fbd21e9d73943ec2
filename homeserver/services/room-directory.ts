// What the server shows of rooms to people looking for them: room statistics (name, topic, alias,
// join rule, joined members …, kept in room_stats), the published room list (/publicRooms,
// list_public_rooms.yaml) and space hierarchies (/hierarchy, space_hierarchy.yaml, modules/spaces.md).
//
// A trigger on current_state marks rooms stale (0006_history.ts); readers refresh stale rooms first, so
// the statistics follow every state change whichever process wrote it.
import type { JsonObject, Pdu } from '../../spec/events.ts';
import { redactEvent } from '../../spec/redaction.ts';
import { getRoomVersion } from '../../spec/room-versions.ts';
import { MatrixError, forbidden, invalidParam } from '../errors.ts';
import type { Homeserver } from '../homeserver.ts';
import type { RoomStatsTable } from '../storage/history-store.ts';
import { normaliseText } from './user-directory.ts';

const STATS_TYPES = [
  'm.room.create', 'm.room.name', 'm.room.topic', 'm.room.canonical_alias', 'm.room.avatar', 'm.room.join_rules',
  'm.room.history_visibility', 'm.room.guest_access', 'm.room.encryption',
];

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

/** The plain-text topic: content.topic, or the text/plain m.topic representation (m.room.topic, v1.15). */
function topicOf(c: JsonObject): string | null {
  if (typeof c['topic'] === 'string') return c['topic'];
  const mt = c['m.topic'] as { 'm.text'?: Array<{ body?: unknown; mimetype?: unknown }> } | undefined;
  const text = mt?.['m.text']?.find((t) => t.mimetype === undefined || t.mimetype === 'text/plain');
  return typeof text?.body === 'string' ? text.body : null;
}

/** A published room as /publicRooms and /hierarchy show it (definitions/public_rooms_chunk.yaml, room_summary.yaml). */
export interface RoomSummary {
  room_id: string;
  num_joined_members: number;
  world_readable: boolean;
  guest_can_join: boolean;
  name?: string;
  topic?: string;
  avatar_url?: string;
  canonical_alias?: string;
  join_rule?: string;
  room_type?: string;
  encryption?: string;
  room_version?: string;
  allowed_room_ids?: string[];
}

export function summaryOf(s: RoomStatsTable, full = false): RoomSummary {
  const out: RoomSummary = {
    room_id: s.room_id,
    num_joined_members: Number(s.joined_members),
    world_readable: s.history_visibility === 'world_readable',
    guest_can_join: s.guest_access === 'can_join',
  };
  if (s.name !== null) out.name = s.name;
  if (s.topic !== null) out.topic = s.topic;
  if (s.avatar_url !== null) out.avatar_url = s.avatar_url;
  if (s.canonical_alias !== null) out.canonical_alias = s.canonical_alias;
  out.join_rule = s.join_rule ?? 'invite';
  if (s.room_type !== null) out.room_type = s.room_type;
  if (full) {
    if (s.encryption === 'm.megolm.v1.aes-sha2') out.encryption = s.encryption;
    if (s.room_version !== null) out.room_version = s.room_version;
    if (s.allowed_room_ids !== null) out.allowed_room_ids = JSON.parse(s.allowed_room_ids) as string[];
  }
  return out;
}

export class RoomDirectoryService {
  private readonly hs: Homeserver;
  private refreshing: Promise<void> | null = null;

  constructor(hs: Homeserver) {
    this.hs = hs;
  }

  /** Recomputes the statistics of rooms marked stale. Concurrent callers share one run. */
  async refreshStale(): Promise<void> {
    while (this.refreshing) await this.refreshing;
    this.refreshing = (async () => {
      for (;;) {
        const rows = await this.hs.db
          .deleteFrom('room_stats_stale')
          .where('room_id', 'in', (eb) => eb.selectFrom('room_stats_stale').select('room_id').limit(200))
          .returning('room_id')
          .execute();
        if (rows.length === 0) break;
        for (const r of rows) await this.computeStats(r.room_id);
      }
    })();
    try {
      await this.refreshing;
    } finally {
      this.refreshing = null;
    }
  }

  private async computeStats(roomId: string): Promise<void> {
    const room = await this.hs.db.selectFrom('rooms').select(['room_version']).where('room_id', '=', roomId).executeTakeFirst();
    if (!room) {
      await this.hs.db.deleteFrom('room_stats').where('room_id', '=', roomId).execute();
      return;
    }
    const rv = getRoomVersion(room.room_version);
    const rows = await this.hs.db
      .selectFrom('current_state as cs')
      .innerJoin('events as e', 'e.event_id', 'cs.event_id')
      .select(['cs.type', 'e.json', 'e.redacted_by'])
      .where('cs.room_id', '=', roomId)
      .where('cs.state_key', '=', '')
      .where('cs.type', 'in', STATS_TYPES)
      .execute();
    const content = new Map<string, JsonObject>();
    for (const r of rows) {
      let pdu = JSON.parse(r.json) as Pdu;
      if (r.redacted_by && rv) pdu = redactEvent(pdu, rv);
      content.set(r.type, (pdu.content ?? {}) as JsonObject);
    }
    const joined = await this.hs.db
      .selectFrom('current_state')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .where('room_id', '=', roomId)
      .where('type', '=', 'm.room.member')
      .where('membership', '=', 'join')
      .executeTakeFirstOrThrow();
    const joinRules = content.get('m.room.join_rules') ?? {};
    const allow = Array.isArray(joinRules['allow']) ? (joinRules['allow'] as JsonObject[]) : [];
    const allowed = allow.filter((a) => a && a['type'] === 'm.room_membership' && typeof a['room_id'] === 'string').map((a) => a['room_id'] as string);
    const aliasContent = content.get('m.room.canonical_alias') ?? {};
    const alt = Array.isArray(aliasContent['alt_aliases']) ? (aliasContent['alt_aliases'] as unknown[]).filter((a): a is string => typeof a === 'string') : [];
    const stats: RoomStatsTable = {
      room_id: roomId,
      name: str(content.get('m.room.name')?.['name']),
      topic: content.has('m.room.topic') ? topicOf(content.get('m.room.topic')!) : null,
      canonical_alias: str(aliasContent['alias']),
      avatar_url: str(content.get('m.room.avatar')?.['url']),
      join_rule: str(joinRules['join_rule']),
      history_visibility: str(content.get('m.room.history_visibility')?.['history_visibility']),
      guest_access: str(content.get('m.room.guest_access')?.['guest_access']),
      room_type: str(content.get('m.room.create')?.['type']),
      encryption: str(content.get('m.room.encryption')?.['algorithm']),
      room_version: room.room_version,
      allowed_room_ids: allowed.length > 0 ? JSON.stringify(allowed) : null,
      joined_members: Number(joined.n),
      search_text: '',
    };
    stats.search_text = normaliseText([stats.name, stats.topic, stats.canonical_alias, ...alt].filter((x) => x).join(' \u0001 '));
    const { room_id: _id, ...rest } = stats;
    await this.hs.db
      .insertInto('room_stats')
      .values(stats)
      .onConflict((oc) => oc.column('room_id').doUpdateSet(rest))
      .execute();
  }

  async getStats(roomIds: string[], refresh = true): Promise<Map<string, RoomStatsTable>> {
    if (roomIds.length === 0) return new Map();
    if (refresh) await this.refreshStale();
    const rows = await this.hs.db.selectFrom('room_stats').selectAll().where('room_id', 'in', roomIds).execute();
    return new Map(rows.map((r) => [r.room_id, r]));
  }

  // -----------------------------------------------------------------------------------------------
  // The published room list

  /** GET/POST /publicRooms. `since` tokens are offsets into the list ordered by joined members. */
  async publicRooms(q: { limit?: number; since?: string; searchTerm?: string; roomTypes?: Array<string | null> }): Promise<{
    chunk: RoomSummary[];
    next_batch?: string;
    prev_batch?: string;
    total_room_count_estimate: number;
  }> {
    await this.refreshStale();
    let offset = 0;
    if (q.since !== undefined) {
      const m = /^p(\d{1,9})$/.exec(q.since);
      if (!m) throw invalidParam('Unknown since token');
      offset = Number(m[1]);
    }
    const limit = q.limit ?? 100;
    let query = this.hs.db.selectFrom('rooms as r').innerJoin('room_stats as s', 's.room_id', 'r.room_id').where('r.is_public', '=', true);
    const term = q.searchTerm !== undefined ? normaliseText(q.searchTerm).trim() : '';
    if (term !== '') {
      // Every word of the term must appear in the name, topic or an alias (list_public_rooms.yaml generic_search_term).
      for (const word of term.split(/\s+/)) {
        const like = '%' + word.replace(/[\\%_]/g, (c) => '\\' + c) + '%';
        query = query.where('s.search_text', 'like', like);
      }
    }
    if (q.roomTypes && q.roomTypes.length > 0) {
      const types = q.roomTypes.filter((t): t is string => typeof t === 'string');
      const withNull = q.roomTypes.includes(null);
      query = query.where((eb) => {
        const ors = [];
        if (types.length > 0) ors.push(eb('s.room_type', 'in', types));
        if (withNull) ors.push(eb('s.room_type', 'is', null));
        return eb.or(ors);
      });
    }
    const [rows, count] = await Promise.all([
      query.selectAll('s').orderBy('s.joined_members', 'desc').orderBy('s.room_id').offset(offset).limit(limit + 1).execute(),
      query.select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow(),
    ]);
    const res: { chunk: RoomSummary[]; next_batch?: string; prev_batch?: string; total_room_count_estimate: number } = {
      chunk: rows.slice(0, limit).map((r) => summaryOf(r)),
      total_room_count_estimate: Number(count.n),
    };
    if (rows.length > limit) res.next_batch = `p${offset + limit}`;
    if (offset > 0) res.prev_batch = `p${Math.max(0, offset - limit)}`;
    return res;
  }

  // -----------------------------------------------------------------------------------------------
  // Spaces

  /**
   * Whether the user may see a room in a hierarchy (space_hierarchy.yaml `rooms`): joined or invited;
   * the join rule is public, knock or knock_restricted; restricted with the user in an allowed room; or
   * the room is world_readable.
   */
  private async canPreview(userId: string, stats: RoomStatsTable): Promise<boolean> {
    const m = await this.hs.services.rooms.getMembership(stats.room_id, userId);
    if (m?.membership === 'join' || m?.membership === 'invite') return true;
    if (m?.membership === 'ban') return false;
    if (stats.history_visibility === 'world_readable') return true;
    const jr = stats.join_rule;
    if (jr === 'public' || jr === 'knock' || jr === 'knock_restricted') return true;
    if ((jr === 'restricted' || jr === 'knock_restricted') && stats.allowed_room_ids) {
      for (const r of JSON.parse(stats.allowed_room_ids) as string[]) {
        if ((await this.hs.services.rooms.getMembership(r, userId))?.membership === 'join') return true;
      }
    }
    return false;
  }

  /** m.space.child events of a room with a non-empty `via`, in the spec's order (modules/spaces.md "Ordering"). */
  private async spaceChildren(roomId: string): Promise<Array<{ pdu: Pdu; roomId: string }>> {
    const rows = await this.hs.db
      .selectFrom('current_state as cs')
      .innerJoin('events as e', 'e.event_id', 'cs.event_id')
      .select(['cs.state_key', 'e.json', 'e.redacted_by'])
      .where('cs.room_id', '=', roomId)
      .where('cs.type', '=', 'm.space.child')
      .execute();
    const children: Array<{ pdu: Pdu; roomId: string; order: string | null }> = [];
    for (const r of rows) {
      if (r.redacted_by) continue;
      const pdu = JSON.parse(r.json) as Pdu;
      const via = pdu.content['via'];
      if (!Array.isArray(via) || via.length === 0) continue;
      const order = pdu.content['order'];
      const valid = typeof order === 'string' && order.length <= 50 && /^[\x20-\x7E]+$/.test(order) ? order : null;
      children.push({ pdu, roomId: r.state_key, order: valid });
    }
    children.sort((a, b) => {
      if (a.order !== null && b.order === null) return -1;
      if (a.order === null && b.order !== null) return 1;
      if (a.order !== null && b.order !== null && a.order !== b.order) return a.order < b.order ? -1 : 1;
      if (a.pdu.origin_server_ts !== b.pdu.origin_server_ts) return a.pdu.origin_server_ts - b.pdu.origin_server_ts;
      return a.roomId < b.roomId ? -1 : a.roomId > b.roomId ? 1 : 0;
    });
    return children;
  }

  /**
   * GET /rooms/{roomId}/hierarchy: depth-first from the root. The token records how many rooms earlier
   * pages returned and the parameters they used; the walk is repeated (it is deterministic) and skips them.
   */
  async hierarchy(userId: string, rootId: string, q: { suggestedOnly: boolean; maxDepth: number; limit: number; from?: string }): Promise<{ rooms: unknown[]; next_batch?: string }> {
    let skip = 0;
    if (q.from !== undefined) {
      const m = /^h(\d{1,6})_(\d{1,3})_([01])$/.exec(q.from);
      if (!m) throw invalidParam('Unknown pagination token');
      if (Number(m[2]) !== q.maxDepth || (m[3] === '1') !== q.suggestedOnly) throw invalidParam('suggested_only and max_depth cannot change while paginating');
      skip = Number(m[1]);
    }
    await this.refreshStale();
    const rootStats = (await this.getStats([rootId], false)).get(rootId);
    if (!rootStats || !(await this.canPreview(userId, rootStats))) throw forbidden('You cannot view this room');
    const out: unknown[] = [];
    const seen = new Set<string>();
    let index = 0;
    let more = false;
    const MAX_ROOMS = 2_000;
    const stack: Array<{ roomId: string; depth: number; suggestedOnly: boolean }> = [{ roomId: rootId, depth: 0, suggestedOnly: q.suggestedOnly }];
    while (stack.length > 0 && seen.size < MAX_ROOMS) {
      const { roomId, depth } = stack.shift()!;
      if (seen.has(roomId)) continue;
      seen.add(roomId);
      const stats = (await this.getStats([roomId], false)).get(roomId);
      if (!stats) continue; // unknown here (rooms on other servers need federation)
      if (roomId !== rootId && !(await this.canPreview(userId, stats))) continue;
      let children = await this.spaceChildren(roomId);
      if (q.suggestedOnly) children = children.filter((c) => c.pdu.content['suggested'] === true);
      if (index >= skip) {
        if (out.length >= q.limit) {
          more = true;
          break;
        }
        out.push({
          ...summaryOf(stats, true),
          children_state: children.map((c) => ({ type: 'm.space.child', state_key: c.roomId, content: c.pdu.content, sender: c.pdu.sender, origin_server_ts: c.pdu.origin_server_ts })),
        });
      }
      index++;
      // "When reached, no further child rooms will be returned."
      if (depth < q.maxDepth) stack.unshift(...children.filter((c) => !seen.has(c.roomId)).map((c) => ({ roomId: c.roomId, depth: depth + 1, suggestedOnly: q.suggestedOnly })));
    }
    const res: { rooms: unknown[]; next_batch?: string } = { rooms: out };
    if (more) res.next_batch = `h${skip + out.length}_${q.maxDepth}_${q.suggestedOnly ? 1 : 0}`;
    return res;
  }
}

export function requireLocalServer(hs: Homeserver, server: string | undefined): void {
  if (server !== undefined && server !== '' && server !== hs.serverName) {
    throw new MatrixError(404, 'M_NOT_FOUND', 'Room directories of other servers need federation, which is not available yet');
  }
}
