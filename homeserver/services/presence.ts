// Presence (modules/presence.md): online / unavailable / offline, status_msg, last_active_ago,
// currently_active; shared only with users who share a room with the user.
//
// State lives in the `presence` table on its own stream (sync/ordered-stream.ts), so every process
// sees the same state. Transitions:
// - PUT /presence/{userId}/status sets the state explicitly; "online" also counts as activity.
// - A sync with set_presence=online (the default) brings an offline user online; set_presence=
//   unavailable makes them unavailable; set_presence=offline leaves presence alone.
// - Sending an event is activity: an unavailable user comes back online, last_active moves.
// - Idle: an online user with no activity for presence.idle_timeout_ms becomes unavailable.
// - Gone: a user with no sync connection for presence.offline_timeout_ms becomes offline. Each process
//   refreshes `last_sync_ts` of the users it holds sync requests for, at a quarter of that timeout,
//   so a user connected to any process stays on; a sweeper in every process applies both timeouts.
import { sql } from 'kysely';
import { forbidden, invalidParam, notFound, badJson } from '../errors.ts';
import type { Homeserver } from '../homeserver.ts';
import { orderedPosition, orderedWrite, PRESENCE_STREAM } from '../sync/ordered-stream.ts';
import type { SyncContribution, SyncRequestInfo, SyncStream } from '../sync/extensions.ts';
import { excludesEverything, type SyncFilter } from '../sync/filter.ts';

export interface PresenceTable {
  user_id: string;
  state: string;
  status_msg: string | null;
  last_active_ts: number;
  last_sync_ts: number;
  currently_active: boolean;
  stream_id: number;
}

declare module '../storage/schema.ts' {
  interface Tables {
    presence: PresenceTable;
  }
}

declare module '../homeserver.ts' {
  interface Services {
    presence: PresenceService;
  }
}

export type PresenceState = 'online' | 'unavailable' | 'offline';
export const PRESENCE_STATES: readonly PresenceState[] = ['online', 'unavailable', 'offline'];
/** Activity closer together than this does not rewrite last_active_ts. */
const ACTIVE_WRITE_INTERVAL_MS = 60_000;
const STATUS_MSG_MAX_BYTES = 1024;
/** A user whose sync ended this recently (at most offlineMs / 4) still counts as syncing here: long-poll clients come straight back. */
const RECENT_SYNC_MS = 5_000;

export interface PresenceContent {
  presence: PresenceState;
  last_active_ago?: number;
  status_msg?: string;
  currently_active?: boolean;
}

interface LocalView {
  state: PresenceState;
  /** When this process last wrote last_sync_ts / last_active_ts, and read or wrote the state. */
  syncWritten: number;
  activeWritten: number;
  checked: number;
}

export class PresenceService {
  private readonly hs: Homeserver;
  readonly enabled: boolean;
  private readonly idleMs: number;
  private readonly offlineMs: number;
  /** Open sync requests in this process, by user. */
  private readonly syncing = new Map<string, number>();
  /** When each user's last sync here ended (oldest first), for users between two long-polls. */
  private readonly ended = new Map<string, number>();
  private readonly local = new Map<string, LocalView>();
  private sweeper: NodeJS.Timeout | null = null;
  private sweeping: Promise<void> | null = null;

  constructor(hs: Homeserver) {
    this.hs = hs;
    this.enabled = hs.config.presence.enabled;
    this.idleMs = hs.config.presence.idle_timeout_ms;
    this.offlineMs = hs.config.presence.offline_timeout_ms;
  }

  start(): void {
    if (!this.enabled) return;
    const every = this.sweepEveryMs;
    this.sweeper = setInterval(() => {
      if (this.sweeping || this.hs.stopping) return;
      this.sweeping = this.sweep()
        .catch((err) => this.hs.logger.warn({ err }, 'presence sweep failed'))
        .finally(() => (this.sweeping = null));
    }, every);
    this.sweeper.unref();
    this.hs.onShutdown(async () => {
      if (this.sweeper) clearInterval(this.sweeper);
      await this.sweeping;
    });
  }

  private get sweepEveryMs(): number {
    return Math.max(250, Math.min(5_000, Math.floor(Math.min(this.idleMs, this.offlineMs) / 4)));
  }

  /** How old a syncing user's last_sync_ts / view may get before the sweeper refreshes it: between half and all of (offlineMs / 2 - one sweep). */
  private refreshAfter(userId: string): number {
    const span = Math.max(0, this.offlineMs / 2 - this.sweepEveryMs);
    let h = 0;
    for (let i = 0; i < userId.length; i++) h = (h * 31 + userId.charCodeAt(i)) >>> 0;
    return span / 2 + ((h % 1000) / 1000) * (span / 2);
  }

  private view(userId: string): LocalView {
    let v = this.local.get(userId);
    if (!v) {
      if (this.local.size > 100_000) this.local.delete(this.local.keys().next().value!);
      this.local.set(userId, (v = { state: 'offline', syncWritten: 0, activeWritten: 0, checked: 0 }));
    }
    return v;
  }

  /** Writes a user's presence (upsert) with a new stream position, then tells them and their room-mates. */
  private async write(userId: string, change: { state: PresenceState; statusMsg?: string | null; active?: boolean }): Promise<void> {
    const now = this.hs.now();
    const active = change.active ?? false;
    const position = await orderedWrite(this.hs.db, PRESENCE_STREAM, async (tx, next) => {
      const id = await next();
      const set: Partial<PresenceTable> = { state: change.state, stream_id: id, last_sync_ts: now, currently_active: change.state === 'online' };
      if (change.statusMsg !== undefined) set.status_msg = change.statusMsg;
      if (active) set.last_active_ts = now;
      await tx
        .insertInto('presence')
        .values({
          user_id: userId,
          state: change.state,
          status_msg: change.statusMsg ?? null,
          last_active_ts: now,
          last_sync_ts: now,
          currently_active: change.state === 'online',
          stream_id: id,
        })
        .onConflict((oc) => oc.column('user_id').doUpdateSet(set))
        .execute();
      return id;
    });
    const v = this.view(userId);
    v.state = change.state;
    v.syncWritten = now;
    v.checked = now;
    if (active) v.activeWritten = now;
    await this.announce([userId], position);
  }

  private async announce(userIds: string[], position: number): Promise<void> {
    const rooms = new Set<string>();
    for (const u of userIds) {
      for (const r of await this.hs.services.rooms.getJoinedRoomIds(u)) rooms.add(r);
      await this.hs.bus.publish(`user:${u}`, { stream: 'presence', position });
    }
    for (const r of rooms) await this.hs.bus.publish(`room:${r}`, { stream: 'presence', position });
  }

  /** PUT /presence/{userId}/status. */
  async setStatus(userId: string, state: PresenceState, statusMsg: string | null): Promise<void> {
    if (!this.enabled) return;
    await this.write(userId, { state, statusMsg, active: state === 'online' });
  }

  /** GET /presence/{userId}/status on behalf of `viewer`. */
  async getStatus(viewer: string, userId: string): Promise<PresenceContent> {
    const exists = await this.hs.db.selectFrom('users').select('user_id').where('user_id', '=', userId).executeTakeFirst();
    if (!exists) throw notFound('Unknown user');
    if (viewer !== userId && !(await this.shareRoom(viewer, userId))) throw forbidden('You are not allowed to see their presence');
    if (!this.enabled) return { presence: 'offline' };
    const row = await this.hs.db.selectFrom('presence').selectAll().where('user_id', '=', userId).executeTakeFirst();
    return row ? this.content(row) : { presence: 'offline' };
  }

  private async shareRoom(a: string, b: string): Promise<boolean> {
    const r = await sql<{ x: number }>`
      select 1 as x from room_memberships m1 join room_memberships m2 on m2.room_id = m1.room_id
      where m1.user_id = ${a} and m1.membership = 'join' and m2.user_id = ${b} and m2.membership = 'join' limit 1`.execute(this.hs.db);
    return r.rows.length > 0;
  }

  private content(row: Pick<PresenceTable, 'state' | 'status_msg' | 'last_active_ts' | 'currently_active'>): PresenceContent {
    const state = (PRESENCE_STATES as readonly string[]).includes(row.state) ? (row.state as PresenceState) : 'offline';
    const c: PresenceContent = { presence: state, last_active_ago: Math.max(0, this.hs.now() - Number(row.last_active_ts)) };
    if (row.status_msg !== null) c.status_msg = row.status_msg;
    c.currently_active = state === 'online' && row.currently_active;
    return c;
  }

  /** A sync request starts (set_presence as given, default online). Returns whether syncEnded must be called. */
  async syncStarted(userId: string, setPresence: PresenceState): Promise<boolean> {
    if (!this.enabled || setPresence === 'offline') return false;
    this.syncing.set(userId, (this.syncing.get(userId) ?? 0) + 1);
    const now = this.hs.now();
    const v = this.view(userId);
    // Re-read the shared state now and then: another process may have changed it.
    if (now - v.checked > this.offlineMs / 2) {
      const row = await this.hs.db.selectFrom('presence').select(['state', 'last_sync_ts']).where('user_id', '=', userId).executeTakeFirst();
      v.state = (row?.state as PresenceState | undefined) ?? 'offline';
      v.syncWritten = row ? Number(row.last_sync_ts) : 0;
      v.checked = now;
    }
    if (setPresence === 'online' && v.state === 'offline') await this.write(userId, { state: 'online', active: true });
    else if (setPresence === 'unavailable' && v.state !== 'unavailable') await this.write(userId, { state: 'unavailable' });
    else if (now - v.syncWritten > this.offlineMs / 2) {
      v.syncWritten = now;
      await this.hs.db.updateTable('presence').set({ last_sync_ts: now }).where('user_id', '=', userId).execute();
    }
    return true;
  }

  syncEnded(userId: string): void {
    const n = (this.syncing.get(userId) ?? 1) - 1;
    if (n <= 0) {
      this.syncing.delete(userId);
      // A long-poll client is back within moments: the sweeper counts the user as syncing meanwhile.
      this.ended.delete(userId);
      this.ended.set(userId, this.hs.now());
    } else this.syncing.set(userId, n);
  }

  /** Users syncing here now, or whose last sync here ended moments ago (RECENT_SYNC_MS). */
  private syncingHere(now: number): string[] {
    for (const [u, t] of this.ended) {
      if (now - t < Math.min(RECENT_SYNC_MS, this.offlineMs / 4)) break;
      this.ended.delete(u);
    }
    const out = new Set(this.syncing.keys());
    for (const u of this.ended.keys()) out.add(u);
    return [...out];
  }

  /** The user did something (sent an event): back online, last_active now. */
  async userActive(userId: string): Promise<void> {
    if (!this.enabled) return;
    const v = this.view(userId);
    const now = this.hs.now();
    if (v.state === 'online' && now - v.activeWritten < ACTIVE_WRITE_INTERVAL_MS && now - v.checked < this.offlineMs / 2) return;
    await this.write(userId, { state: 'online', active: true });
  }

  /** Applies the idle and offline timeouts; keeps last_sync_ts of this process's syncing users fresh. */
  async sweep(): Promise<void> {
    const now = this.hs.now();
    // Ahead of syncStarted's own threshold (offlineMs / 2) by at least one sweep, so a user syncing here
    // all along never needs a write of their own; each user's threshold is shifted by a fixed amount of
    // their own so that users who came online together are not all refreshed by the same sweep.
    const here = this.syncingHere(now);
    const due = (u: string, since: number) => now - since > this.refreshAfter(u);
    const fresh = here.filter((u) => due(u, this.view(u).syncWritten));
    if (fresh.length > 0) {
      await this.hs.db.updateTable('presence').set({ last_sync_ts: now }).where(sql<boolean>`user_id = any(${fresh}::text[])`).execute();
      for (const u of fresh) this.view(u).syncWritten = now;
    }
    // The shared state of the users syncing here, re-read for all of them at once (another process may
    // have changed it), so their syncs need no read of their own (syncStarted re-reads only views
    // older than offlineMs / 2).
    const stale = here.filter((u) => due(u, this.view(u).checked));
    if (stale.length > 0) {
      const rows = await this.hs.db.selectFrom('presence').select(['user_id', 'state']).where(sql<boolean>`user_id = any(${stale}::text[])`).execute();
      const states = new Map(rows.map((r) => [r.user_id, r.state as PresenceState]));
      for (const u of stale) {
        const v = this.view(u);
        v.state = states.get(u) ?? 'offline';
        v.checked = now;
      }
    }
    const changed = await orderedWrite(this.hs.db, PRESENCE_STREAM, async (tx) => {
      const idle = await sql<{ user_id: string; stream_id: string }>`
        update presence set state = 'unavailable', currently_active = false, stream_id = nextval('presence_stream_seq')
        where state = 'online' and last_active_ts < ${now - this.idleMs}
        returning user_id, stream_id`.execute(tx);
      const gone = await sql<{ user_id: string; stream_id: string }>`
        update presence set state = 'offline', currently_active = false, stream_id = nextval('presence_stream_seq')
        where state <> 'offline' and last_sync_ts < ${now - this.offlineMs} and not (user_id = any(${here}::text[]))
        returning user_id, stream_id`.execute(tx);
      const out = new Map<string, { state: PresenceState; position: number }>();
      for (const r of idle.rows) out.set(r.user_id, { state: 'unavailable', position: Number(r.stream_id) });
      for (const r of gone.rows) out.set(r.user_id, { state: 'offline', position: Number(r.stream_id) });
      return out;
    });
    if (changed.size === 0) return;
    let top = 0;
    for (const [u, c] of changed) {
      const v = this.view(u);
      v.state = c.state;
      v.checked = now;
      top = Math.max(top, c.position);
    }
    await this.announce([...changed.keys()], top);
  }

  currentPosition(): Promise<number> {
    return orderedPosition(this.hs.db, PRESENCE_STREAM);
  }

  /** m.presence events of the user and everyone sharing a joined room with them, changed in (since, upTo]. */
  async visiblePresence(userId: string, since: number | null, upTo: number): Promise<Array<{ type: 'm.presence'; sender: string; content: PresenceContent }>> {
    const rows = await sql<PresenceTable>`
      select p.user_id, p.state, p.status_msg, p.last_active_ts, p.currently_active
      from presence p
      where p.stream_id <= ${upTo} and p.stream_id > ${since ?? 0}
        and (p.user_id = ${userId} or p.user_id in (
          select m2.user_id from room_memberships m1
          join room_memberships m2 on m2.room_id = m1.room_id and m2.membership = 'join'
          where m1.user_id = ${userId} and m1.membership = 'join'))`.execute(this.hs.db);
    return rows.rows.map((r) => ({ type: 'm.presence' as const, sender: r.user_id, content: this.content(r) }));
  }

  /** The `presence` sync stream: top-level presence.events. */
  syncStream(): SyncStream {
    return {
      name: 'presence',
      currentPosition: () => this.currentPosition(),
      positionOf: { table: PRESENCE_STREAM.table, column: PRESENCE_STREAM.column },
      quietWhenUnchanged: true,
      collect: async (info: SyncRequestInfo): Promise<SyncContribution> => {
        // A filter that drops every presence event (clients that hide presence): nothing to read.
        if (excludesEverything((info.filter as SyncFilter | undefined)?.presence)) return {};
        const events = await this.visiblePresence(info.requester.userId, info.since, info.upTo);
        return events.length > 0 ? { top: { presence: { events } } } : {};
      },
    };
  }
}

/** Parses a PUT /presence body. */
export function parsePresenceBody(body: Record<string, unknown>): { state: PresenceState; statusMsg: string | null } {
  const p = body['presence'];
  if (typeof p !== 'string') throw badJson('presence is required');
  if (!(PRESENCE_STATES as readonly string[]).includes(p)) throw invalidParam('presence must be online, unavailable or offline');
  const m = body['status_msg'];
  if (m !== undefined && m !== null && typeof m !== 'string') throw badJson('status_msg must be a string');
  if (typeof m === 'string' && Buffer.byteLength(m) > STATUS_MSG_MAX_BYTES) throw invalidParam('status_msg is too long');
  return { state: p as PresenceState, statusMsg: typeof m === 'string' ? m : null };
}

export function initPresence(hs: Homeserver): PresenceService {
  const s = new PresenceService(hs);
  hs.services.presence = s;
  if (s.enabled) hs.services.syncStreams.register(s.syncStream());
  return s;
}
