// The device_lists stream (client-server-api "Tracking the device list for a user", "Extensions to
// /sync"): which users' devices or cross-signing keys changed, and who now shares (or no longer shares)
// an encrypted room with the requester.
//
// Every change is a row of e2e_device_list_changes at a position of its own sequence. Writers take a
// transaction-scoped advisory lock before drawing the position, so rows commit in position order and
// max(stream_id) is always a position below which everything has committed (DESIGN.md §3).
//
// Memberships: the rooms writer tells us (persist listener) when a user joins or leaves an encrypted
// room, or a room turns encryption on; we record that here so "Bob now shares a room with Alice" lands
// in Alice's `changed` on her next sync. The listener runs after the events' transaction has committed;
// a crash in between loses that one hint (clients still track members they see join), never data.
import { sql } from 'kysely';
import type { Homeserver } from '../homeserver.ts';
import type { Queryable } from '../storage/schema.ts';
import { stateKey } from '../../spec/events.ts';

export interface DeviceListChangesTable {
  stream_id: number;
  kind: 'keys' | 'join' | 'leave' | 'encrypted';
  user_id: string | null;
  room_id: string | null;
  viewer: string | null;
}

declare module '../storage/schema.ts' {
  interface Tables {
    e2e_device_list_changes: DeviceListChangesTable;
  }
}

export interface DeviceListChange {
  kind: DeviceListChangesTable['kind'];
  userId?: string;
  roomId?: string;
  /** Only this user is told (signatures only their maker may see). */
  viewer?: string;
}

// An arbitrary constant: the advisory lock key of the device_lists stream.
const DEVICE_LISTS_LOCK = 7_270_001;

/** Appends changes inside the caller's transaction (call last: the lock is held until commit). Returns the last position. */
export async function recordDeviceListChanges(tx: Queryable, changes: DeviceListChange[]): Promise<number> {
  if (changes.length === 0) return 0;
  await sql`select pg_advisory_xact_lock(${DEVICE_LISTS_LOCK})`.execute(tx);
  const { rows } = await sql<{ id: string }>`select nextval('e2e_device_list_seq') as id from generate_series(1, ${changes.length}::int)`.execute(tx);
  const ids = rows.map((r) => Number(r.id)).sort((a, b) => a - b);
  await tx
    .insertInto('e2e_device_list_changes')
    .values(
      changes.map((c, i) => ({
        stream_id: ids[i]!,
        kind: c.kind,
        user_id: c.userId ?? null,
        room_id: c.roomId ?? null,
        viewer: c.viewer ?? null,
      })),
    )
    .execute();
  return ids.at(-1)!;
}

export async function deviceListPosition(db: Queryable): Promise<number> {
  const { rows } = await sql<{ p: string | null }>`select max(stream_id) as p from e2e_device_list_changes`.execute(db);
  return Number(rows[0]?.p ?? 0);
}

/** Rooms (ids) the user is joined to, only encrypted ones when `encryptedOnly`. */
export async function joinedRoomsOf(db: Queryable, userId: string, encryptedOnly: boolean): Promise<string[]> {
  const { rows } = encryptedOnly
    ? await sql<{ room_id: string }>`
        select m.room_id from room_memberships m
        join current_state cs on cs.room_id = m.room_id and cs.type = 'm.room.encryption' and cs.state_key = ''
        where m.user_id = ${userId} and m.membership = 'join'`.execute(db)
    : await sql<{ room_id: string }>`select room_id from room_memberships where user_id = ${userId} and membership = 'join'`.execute(db);
  return rows.map((r) => r.room_id);
}

/** Those of `candidates` who are joined to at least one (encrypted) room `userId` is joined to. */
export async function usersSharingRoom(db: Queryable, userId: string, candidates: string[], encryptedOnly: boolean): Promise<Set<string>> {
  if (candidates.length === 0) return new Set();
  const { rows } = encryptedOnly
    ? await sql<{ user_id: string }>`
        select distinct m2.user_id from room_memberships m1
        join current_state cs on cs.room_id = m1.room_id and cs.type = 'm.room.encryption' and cs.state_key = ''
        join room_memberships m2 on m2.room_id = m1.room_id and m2.membership = 'join'
        where m1.user_id = ${userId} and m1.membership = 'join' and m2.user_id = any(${candidates}::text[])`.execute(db)
    : await sql<{ user_id: string }>`
        select distinct m2.user_id from room_memberships m1
        join room_memberships m2 on m2.room_id = m1.room_id and m2.membership = 'join'
        where m1.user_id = ${userId} and m1.membership = 'join' and m2.user_id = any(${candidates}::text[])`.execute(db);
  return new Set(rows.map((r) => r.user_id));
}

async function joinedMembers(db: Queryable, roomIds: string[]): Promise<string[]> {
  if (roomIds.length === 0) return [];
  const { rows } = await sql<{ user_id: string }>`
    select distinct user_id from room_memberships where room_id = any(${roomIds}::text[]) and membership = 'join'`.execute(db);
  return rows.map((r) => r.user_id);
}

/**
 * Users whose device lists changed for `userId` in (from, to]: `changed` (keys changed, or they now
 * share a room) and `left` (they no longer share any room). With `encryptedOnly`, rooms means
 * encrypted rooms (sync's device_lists); /keys/changes counts every joined room.
 */
export async function deviceListChangesFor(db: Queryable, userId: string, from: number, to: number, encryptedOnly: boolean): Promise<{ changed: string[]; left: string[] }> {
  if (to <= from) return { changed: [], left: [] };
  const { rows } = await sql<{ kind: DeviceListChangesTable['kind']; user_id: string | null; room_id: string | null }>`
    select kind, user_id, room_id from e2e_device_list_changes
    where stream_id > ${from} and stream_id <= ${to}
      and (viewer is null or viewer = ${userId})
      and (user_id = ${userId}
           or (kind = 'keys' and user_id in (
                 select m2.user_id from room_memberships m1
                 join room_memberships m2 on m2.room_id = m1.room_id and m2.membership = 'join'
                 where m1.user_id = ${userId} and m1.membership = 'join'))
           or (kind <> 'keys' and room_id in (select room_id from room_memberships where user_id = ${userId} and membership = 'join')))
    order by stream_id`.execute(db);
  if (rows.length === 0) return { changed: [], left: [] };
  const changedCandidates = new Set<string>();
  const leftCandidates = new Set<string>();
  const roomsWithNewPeers: string[] = [];
  const roomsLeft: string[] = [];
  for (const r of rows) {
    if (r.kind === 'keys' && r.user_id) {
      changedCandidates.add(r.user_id);
      leftCandidates.delete(r.user_id);
    } else if (r.kind === 'join' && r.user_id) {
      if (r.user_id === userId && r.room_id) roomsWithNewPeers.push(r.room_id);
      else changedCandidates.add(r.user_id);
    } else if (r.kind === 'encrypted' && r.room_id) {
      roomsWithNewPeers.push(r.room_id);
    } else if (r.kind === 'leave' && r.user_id) {
      if (r.user_id === userId && r.room_id) roomsLeft.push(r.room_id);
      else leftCandidates.add(r.user_id);
    }
  }
  for (const u of await joinedMembers(db, roomsWithNewPeers)) changedCandidates.add(u);
  for (const u of await joinedMembers(db, roomsLeft)) leftCandidates.add(u);
  const all = [...new Set([...changedCandidates, ...leftCandidates])].filter((u) => u !== userId);
  const sharing = await usersSharingRoom(db, userId, all, encryptedOnly);
  const changed = [...changedCandidates].filter((u) => u === userId || sharing.has(u));
  const left = [...leftCandidates].filter((u) => u !== userId && !sharing.has(u) && !changedCandidates.has(u));
  return { changed: changed.sort(), left: left.sort() };
}

interface PersistedEventLike {
  roomId: string;
  eventId: string;
  event: { pdu: { type: string; state_key?: string | undefined; content: Record<string, unknown> } };
}

/**
 * Records memberships of encrypted rooms and rooms turning encryption on, from events the rooms writer
 * has just persisted, and wakes the affected users' syncs.
 */
export async function onPersistedEvents(hs: Homeserver, events: PersistedEventLike[]): Promise<void> {
  const rooms = hs.services.rooms;
  const changes: DeviceListChange[] = [];
  const encryptedCache = new Map<string, boolean>();
  const isEncrypted = async (roomId: string): Promise<boolean> => {
    let v = encryptedCache.get(roomId);
    if (v === undefined) {
      const { rows } = await sql`select 1 from current_state where room_id = ${roomId} and type = 'm.room.encryption' and state_key = ''`.execute(hs.db);
      encryptedCache.set(roomId, (v = rows.length > 0));
    }
    return v;
  };
  const stateBefore = async (eventId: string, type: string, sk: string): Promise<Record<string, unknown> | null> => {
    const state = await rooms.getStateIdsAtEvent(eventId, 'before');
    const id = state?.get(stateKey(type, sk));
    if (!id) return null;
    return ((await rooms.getPdu(id))?.content as Record<string, unknown> | undefined) ?? null;
  };
  for (const e of events) {
    const { type, state_key: sk, content } = e.event.pdu;
    if (typeof sk !== 'string') continue;
    if (type === 'm.room.member') {
      if (!(await isEncrypted(e.roomId))) continue;
      const now = content.membership === 'join';
      const before = (await stateBefore(e.eventId, type, sk))?.membership === 'join';
      if (now !== before) changes.push({ kind: now ? 'join' : 'leave', userId: sk, roomId: e.roomId });
    } else if (type === 'm.room.encryption' && sk === '') {
      if (!(await stateBefore(e.eventId, type, sk))) changes.push({ kind: 'encrypted', roomId: e.roomId });
    }
  }
  if (changes.length === 0) return;
  await hs.db.transaction().execute((tx) => recordDeviceListChanges(tx, changes));
  const log = (err: unknown) => hs.logger.warn({ err }, 'device_lists notification failed');
  for (const c of changes) {
    if (c.roomId) await hs.bus.publish(`room:${c.roomId}`, { stream: 'device_lists' }).catch(log);
    if (c.userId) await hs.bus.publish(`user:${c.userId}`, { stream: 'device_lists' }).catch(log);
  }
}

/** Wakes everyone who should hear that `userId`'s keys changed: the user and the members of their encrypted rooms. */
export async function notifyKeysChanged(hs: Homeserver, userId: string): Promise<void> {
  const log = (err: unknown) => hs.logger.warn({ err }, 'device_lists notification failed');
  await hs.bus.publish(`user:${userId}`, { stream: 'device_lists' }).catch(log);
  let roomIds: string[] = [];
  try {
    roomIds = await joinedRoomsOf(hs.db, userId, true);
  } catch (err) {
    log(err);
  }
  for (const r of roomIds) await hs.bus.publish(`room:${r}`, { stream: 'device_lists' }).catch(log);
}
