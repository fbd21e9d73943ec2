// Relations between events (client-server-api "Forming relationships between events", "Aggregations of
// child events", modules/event_replacements.md, threading.md, reference_relations.md,
// event_annotations.md): bundled aggregations, the /relations and /threads queries, and the checks on
// new related events. The event_relations and threads tables are kept by triggers (0006_history.ts).
import type { JsonObject } from '../../spec/events.ts';
import { MatrixError } from '../errors.ts';
import type { Homeserver } from '../homeserver.ts';
import type { Requester } from '../http/api.ts';
import type { StoredEvent } from '../storage/rooms-store.ts';
import type { ClientEvent } from './client-events.ts';
import { filterEventsForUser } from './visibility.ts';

function relatesTo(content: unknown): { rel_type?: unknown; event_id?: unknown; key?: unknown } | undefined {
  if (content === null || typeof content !== 'object') return undefined;
  const r = (content as Record<string, unknown>)['m.relates_to'];
  return r !== null && typeof r === 'object' && !Array.isArray(r) ? (r as { rel_type?: unknown; event_id?: unknown; key?: unknown }) : undefined;
}

async function ignoredBy(hs: Homeserver, userId: string | null): Promise<string[]> {
  if (!userId || !hs.services.accounts?.accountData) return [];
  return [...(await hs.services.accounts.accountData.ignoredUsers(userId))];
}

export interface BundleOptions {
  /** Leave out room_id in nested events (sync's format). */
  withoutRoomId?: boolean;
  /** Internal: nested latest_event bundles do not nest threads again. */
  nested?: boolean;
}

/**
 * Adds `unsigned["m.relations"]` to the events (in place): the latest valid m.replace, the m.thread
 * summary (latest_event, count, current_user_participated) and m.reference chunks. State events get
 * none (the spec's warning under "Aggregations of child events"); a redacted event gets no m.replace.
 * Child events from users the viewer ignores are not counted.
 */
export async function bundleAggregations(hs: Homeserver, userId: string | null, events: ClientEvent[], opts: BundleOptions = {}): Promise<ClientEvent[]> {
  const targets = events.filter((e) => e.state_key === undefined);
  if (targets.length === 0) return events;
  const db = hs.db;
  // Most events have no children to bundle: one cheap query finds those that do, so a page of plain
  // messages costs one round trip rather than five (PGlite runs queries one at a time).
  const present = await db
    .selectFrom('event_relations')
    .select(['relates_to_id', 'rel_type'])
    .distinct()
    .where('relates_to_id', 'in', [...new Set(targets.map((e) => e.event_id))])
    .where('rel_type', 'in', opts.nested ? ['m.replace', 'm.reference'] : ['m.replace', 'm.thread', 'm.reference'])
    .execute();
  if (present.length === 0) return events;
  const ids = [...new Set(present.map((r) => r.relates_to_id))];
  const ignored = await ignoredBy(hs, userId);

  let edits = db
    .selectFrom('event_relations')
    .select(['event_id', 'relates_to_id', 'sender', 'type', 'origin_server_ts', 'has_new_content'])
    .where('relates_to_id', 'in', ids)
    .where('rel_type', '=', 'm.replace');
  if (ignored.length > 0) edits = edits.where('sender', 'not in', ignored);
  let threads = db
    .selectFrom('event_relations')
    .select((eb) => [
      'relates_to_id',
      eb.fn.countAll<string>().as('count'),
      ...(userId ? [eb.fn.countAll<string>().filterWhere('sender', '=', userId).as('mine')] : []),
    ])
    .where('relates_to_id', 'in', ids)
    .where('rel_type', '=', 'm.thread')
    .groupBy('relates_to_id');
  if (ignored.length > 0) threads = threads.where('sender', 'not in', ignored);
  let latest = db
    .selectFrom('event_relations')
    .select(['relates_to_id', 'event_id'])
    .distinctOn('relates_to_id')
    .where('relates_to_id', 'in', ids)
    .where('rel_type', '=', 'm.thread')
    .orderBy('relates_to_id')
    .orderBy('depth', 'desc')
    .orderBy('stream_ordering', 'desc');
  if (ignored.length > 0) latest = latest.where('sender', 'not in', ignored);
  let refs = db
    .selectFrom('event_relations')
    .select(['relates_to_id', 'event_id'])
    .where('relates_to_id', 'in', ids)
    .where('rel_type', '=', 'm.reference')
    .orderBy('stream_ordering');
  if (ignored.length > 0) refs = refs.where('sender', 'not in', ignored);

  const [editRows, threadRows, latestRows, refRows] = await Promise.all([
    edits.execute(),
    opts.nested ? Promise.resolve([]) : threads.execute(),
    opts.nested ? Promise.resolve([]) : latest.execute(),
    refs.execute(),
  ]);
  if (editRows.length + threadRows.length + refRows.length === 0) return events;

  // m.replace: the most recent valid replacement (modules/event_replacements.md "Validity of
  // replacement events"; most recent by origin_server_ts, then the lexicographically largest id).
  const byId = new Map(targets.map((e) => [e.event_id, e]));
  const bestEdit = new Map<string, { event_id: string; ts: number }>();
  for (const r of editRows) {
    const original = byId.get(r.relates_to_id);
    if (!original || original.unsigned?.['redacted_because'] !== undefined) continue;
    if (r.sender !== original.sender || r.type !== original.type || !r.has_new_content) continue;
    if (relatesTo(original.content)?.rel_type === 'm.replace') continue; // an edit cannot be edited
    const ts = Number(r.origin_server_ts);
    const cur = bestEdit.get(r.relates_to_id);
    if (!cur || ts > cur.ts || (ts === cur.ts && r.event_id > cur.event_id)) bestEdit.set(r.relates_to_id, { event_id: r.event_id, ts });
  }
  const latestIds = new Map(latestRows.map((r) => [r.relates_to_id, r.event_id]));
  const childIds = [...new Set([...[...bestEdit.values()].map((x) => x.event_id), ...latestIds.values()])];
  const children = new Map<string, ClientEvent>();
  if (childIds.length > 0) {
    const stored = await filterEventsForUser(hs, userId, await hs.services.rooms.getEvents(childIds), { hideIgnored: false });
    const formatted = await hs.services.rooms.formatEvents(stored, opts.withoutRoomId ? { withoutRoomId: true } : {});
    // Thread latest events carry their own aggregations (edits; no thread of a thread).
    await bundleAggregations(hs, userId, formatted.filter((f) => [...latestIds.values()].includes(f.event_id)), { ...opts, nested: true });
    for (const f of formatted) children.set(f.event_id, f);
  }
  const threadInfo = new Map(threadRows.map((r) => [r.relates_to_id, r as { relates_to_id: string; count: string | number; mine?: string | number }]));
  const refsBy = new Map<string, Array<{ event_id: string }>>();
  for (const r of refRows) {
    const list = refsBy.get(r.relates_to_id) ?? [];
    list.push({ event_id: r.event_id });
    refsBy.set(r.relates_to_id, list);
  }

  for (const e of targets) {
    const rel: Record<string, unknown> = {};
    const edit = bestEdit.get(e.event_id);
    const editEvent = edit ? children.get(edit.event_id) : undefined;
    if (editEvent) rel['m.replace'] = editEvent;
    const t = threadInfo.get(e.event_id);
    const latestId = latestIds.get(e.event_id);
    const latestEvent = latestId ? children.get(latestId) : undefined;
    if (t && Number(t.count) > 0 && latestEvent) {
      rel['m.thread'] = {
        latest_event: latestEvent,
        count: Number(t.count),
        current_user_participated: userId !== null && (e.sender === userId || Number(t.mine ?? 0) > 0),
      };
    }
    const r = refsBy.get(e.event_id);
    if (r) rel['m.reference'] = { chunk: r };
    if (Object.keys(rel).length > 0) {
      e.unsigned ??= {};
      const existing = (e.unsigned['m.relations'] ?? {}) as Record<string, unknown>;
      e.unsigned['m.relations'] = { ...existing, ...rel };
    }
  }
  return events;
}

/** Formats stored events for a user and bundles their aggregations. */
export async function formatWithAggregations(hs: Homeserver, requester: Requester | null, events: StoredEvent[], opts: BundleOptions = {}): Promise<ClientEvent[]> {
  const formatted = await hs.services.rooms.formatEvents(events, { ...(requester ? { requester } : {}), ...(opts.withoutRoomId ? { withoutRoomId: true } : {}) });
  return bundleAggregations(hs, requester?.userId ?? null, formatted, opts);
}

/**
 * Checks a new event's relation before it is sent: a thread may not start from an event that itself
 * relates to another (threading.md "Validation of m.thread relationships": 400 M_UNKNOWN), and a user
 * may not annotate the same event twice with the same type and key (event_annotations.md:
 * 400 M_DUPLICATE_ANNOTATION). A retried transaction is not checked again.
 */
export async function checkNewRelation(hs: Homeserver, requester: Requester, roomId: string, type: string, content: JsonObject, txnId?: string): Promise<void> {
  const rel = relatesTo(content);
  if (!rel || typeof rel.rel_type !== 'string' || typeof rel.event_id !== 'string') return;
  if (txnId !== undefined) {
    const seen = await hs.db
      .selectFrom('event_txn_ids')
      .select('event_id')
      .where('user_id', '=', requester.userId)
      .where('device_id', '=', requester.deviceId ?? '')
      .where('room_id', '=', roomId)
      .where('txn_id', '=', txnId)
      .executeTakeFirst();
    if (seen) return;
  }
  if (rel.rel_type === 'm.thread') {
    const parent = await hs.services.rooms.getEvent(rel.event_id);
    if (parent && parent.roomId === roomId && relatesTo(parent.pdu.content) !== undefined) {
      throw new MatrixError(400, 'M_UNKNOWN', 'Cannot start a thread from an event with a relation');
    }
  }
  if (rel.rel_type === 'm.annotation' && typeof rel.key === 'string') {
    const dup = await hs.db
      .selectFrom('event_relations')
      .select('event_id')
      .where('relates_to_id', '=', rel.event_id)
      .where('rel_type', '=', 'm.annotation')
      .where('sender', '=', requester.userId)
      .where('type', '=', type)
      .where('aggregation_key', '=', rel.key)
      .executeTakeFirst();
    if (dup) throw new MatrixError(400, 'M_DUPLICATE_ANNOTATION', 'You have already sent this annotation');
  }
}
