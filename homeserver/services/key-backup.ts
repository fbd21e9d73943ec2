// Server-side key backups (client-server-api "Server-side key backups"): versions with opaque
// auth_data, and encrypted megolm session keys per room and session. The server only compares the
// metadata the spec names (is_verified, first_message_index, forwarded_count) to decide which copy of
// a session to keep; session_data is stored as given.
//
// Writes to one backup version serialise on the version row (SELECT ... FOR UPDATE), so the etag (a
// counter bumped by every change) and count always describe a state that existed.
import { sql } from 'kysely';
import type { Homeserver } from '../homeserver.ts';
import { MatrixError, badJson, invalidParam, notFound } from '../errors.ts';
import type { Queryable } from '../storage/schema.ts';

export interface RoomKeysVersionsTable {
  user_id: string;
  version: number;
  algorithm: string;
  auth_data: string;
  etag: number;
  deleted: boolean;
}
export interface RoomKeysTable {
  user_id: string;
  version: number;
  room_id: string;
  session_id: string;
  first_message_index: number;
  forwarded_count: number;
  is_verified: boolean;
  session_data: string;
}

declare module '../storage/schema.ts' {
  interface Tables {
    e2e_room_keys_versions: RoomKeysVersionsTable;
    e2e_room_keys: RoomKeysTable;
  }
}

type Json = Record<string, unknown>;

export interface KeyBackupData {
  first_message_index: number;
  forwarded_count: number;
  is_verified: boolean;
  session_data: Json;
}

export interface BackupVersionInfo {
  algorithm: string;
  auth_data: Json;
  count: number;
  etag: string;
  version: string;
}

/** Sessions in one request. */
const MAX_SESSIONS_PER_REQUEST = 10_000;

function isObject(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Parses a KeyBackupData object (key_backup_data.yaml); `where` names it in errors. */
export function parseKeyBackupData(v: unknown, where: string): KeyBackupData {
  if (!isObject(v)) throw badJson(`${where} must be an object`);
  if (!isCount(v.first_message_index)) throw badJson(`${where}.first_message_index must be a non-negative integer`);
  if (!isCount(v.forwarded_count)) throw badJson(`${where}.forwarded_count must be a non-negative integer`);
  if (typeof v.is_verified !== 'boolean') throw badJson(`${where}.is_verified must be a boolean`);
  if (!isObject(v.session_data)) throw badJson(`${where}.session_data must be an object`);
  return { first_message_index: v.first_message_index, forwarded_count: v.forwarded_count, is_verified: v.is_verified, session_data: v.session_data };
}

/**
 * The spec's rule for a session the backup already holds: keep the verified one; if both or neither
 * are verified, the one with the lower first_message_index; if those are equal, the one with the lower
 * forwarded_count. On a complete tie the stored copy stays.
 */
export function shouldReplace(existing: Pick<KeyBackupData, 'is_verified' | 'first_message_index' | 'forwarded_count'>, incoming: Pick<KeyBackupData, 'is_verified' | 'first_message_index' | 'forwarded_count'>): boolean {
  if (existing.is_verified !== incoming.is_verified) return incoming.is_verified;
  if (existing.first_message_index !== incoming.first_message_index) return incoming.first_message_index < existing.first_message_index;
  return incoming.forwarded_count < existing.forwarded_count;
}

/** A version path/query parameter: versions are decimal numbers here; anything else names no backup. */
function versionNumber(v: string): number | null {
  return /^[0-9]{1,15}$/.test(v) ? Number(v) : null;
}

export class KeyBackupService {
  private readonly hs: Homeserver;
  constructor(hs: Homeserver) {
    this.hs = hs;
  }

  async createVersion(userId: string, body: Json): Promise<string> {
    const { algorithm, authData } = parseVersionBody(body);
    return this.hs.db.transaction().execute(async (tx) => {
      // Serialise creations per user: the new version is one above every earlier one (deleted ones too).
      await sql`select pg_advisory_xact_lock(hashtext(${'room_keys:' + userId}))`.execute(tx);
      const { rows } = await sql<{ v: string | null }>`select max(version) as v from e2e_room_keys_versions where user_id = ${userId}`.execute(tx);
      const version = Number(rows[0]?.v ?? 0) + 1;
      await tx.insertInto('e2e_room_keys_versions').values({ user_id: userId, version, algorithm, auth_data: JSON.stringify(authData), etag: 0, deleted: false }).execute();
      return String(version);
    });
  }

  /** The newest live version, or the given one; null when there is none. */
  async getVersion(userId: string, version?: string): Promise<BackupVersionInfo | null> {
    const row = await this.versionRow(this.hs.db, userId, version);
    if (!row) return null;
    return {
      algorithm: row.algorithm,
      auth_data: JSON.parse(row.auth_data) as Json,
      count: await this.count(this.hs.db, userId, row.version),
      etag: String(row.etag),
      version: String(row.version),
    };
  }

  async updateVersion(userId: string, version: string, body: Json): Promise<void> {
    const { algorithm, authData } = parseVersionBody(body);
    if (body.version !== undefined && body.version !== version) throw invalidParam('version in the body does not match the path');
    const row = await this.versionRow(this.hs.db, userId, version);
    if (!row) throw notFound('Unknown backup version');
    if (row.algorithm !== algorithm) throw invalidParam('Algorithm does not match');
    await this.hs.db
      .updateTable('e2e_room_keys_versions')
      .set({ auth_data: JSON.stringify(authData) })
      .where('user_id', '=', userId)
      .where('version', '=', row.version)
      .execute();
  }

  /** Deletes a version and its keys; deleting an already deleted version succeeds. */
  async deleteVersion(userId: string, version: string): Promise<void> {
    const n = versionNumber(version);
    if (n === null) throw notFound('Unknown backup version');
    await this.hs.db.transaction().execute(async (tx) => {
      const row = await tx.selectFrom('e2e_room_keys_versions').select('deleted').where('user_id', '=', userId).where('version', '=', n).forUpdate().executeTakeFirst();
      if (!row) throw notFound('Unknown backup version');
      if (row.deleted) return;
      await tx.deleteFrom('e2e_room_keys').where('user_id', '=', userId).where('version', '=', n).execute();
      await tx.updateTable('e2e_room_keys_versions').set({ deleted: true }).where('user_id', '=', userId).where('version', '=', n).execute();
    });
  }

  /**
   * Stores sessions (room id → session id → data) in the current version, applying the replacement
   * rule to sessions already stored. M_WRONG_ROOM_KEYS_VERSION when `version` is not the current one.
   */
  async putKeys(userId: string, version: string | undefined, rooms: Map<string, Map<string, KeyBackupData>>): Promise<{ etag: string; count: number }> {
    if (version === undefined) throw new MatrixError(400, 'M_MISSING_PARAM', 'version is required');
    const total = [...rooms.values()].reduce((n, m) => n + m.size, 0);
    if (total > MAX_SESSIONS_PER_REQUEST) throw invalidParam(`At most ${MAX_SESSIONS_PER_REQUEST} sessions per request`);
    return this.hs.db.transaction().execute(async (tx) => {
      const v = await this.writableVersion(tx, userId, version);
      const rs: string[] = [];
      const ss: string[] = [];
      const incoming: KeyBackupData[] = [];
      for (const [roomId, sessions] of rooms) {
        for (const [sessionId, data] of sessions) {
          rs.push(roomId);
          ss.push(sessionId);
          incoming.push(data);
        }
      }
      let changed = false;
      if (rs.length > 0) {
        const { rows: existing } = await sql<{ room_id: string; session_id: string; first_message_index: string; forwarded_count: string; is_verified: boolean }>`
          select k.room_id, k.session_id, k.first_message_index, k.forwarded_count, k.is_verified
          from e2e_room_keys k join unnest(${rs}::text[], ${ss}::text[]) as t(r, s) on k.room_id = t.r and k.session_id = t.s
          where k.user_id = ${userId} and k.version = ${v}`.execute(tx);
        const have = new Map(existing.map((e) => [`${e.room_id}\u0000${e.session_id}`, { is_verified: e.is_verified, first_message_index: Number(e.first_message_index), forwarded_count: Number(e.forwarded_count) }]));
        const write: number[] = [];
        for (let i = 0; i < rs.length; i++) {
          const old = have.get(`${rs[i]}\u0000${ss[i]}`);
          if (!old || shouldReplace(old, incoming[i]!)) write.push(i);
        }
        if (write.length > 0) {
          changed = true;
          await sql`
            insert into e2e_room_keys (user_id, version, room_id, session_id, first_message_index, forwarded_count, is_verified, session_data)
            select ${userId}, ${v}, r, s, f, c, iv, d
            from unnest(${write.map((i) => rs[i]!)}::text[], ${write.map((i) => ss[i]!)}::text[], ${write.map((i) => incoming[i]!.first_message_index)}::bigint[],
                        ${write.map((i) => incoming[i]!.forwarded_count)}::bigint[], ${write.map((i) => incoming[i]!.is_verified)}::boolean[],
                        ${write.map((i) => JSON.stringify(incoming[i]!.session_data))}::text[]) as t(r, s, f, c, iv, d)
            on conflict (user_id, version, room_id, session_id) do update set
              first_message_index = excluded.first_message_index, forwarded_count = excluded.forwarded_count,
              is_verified = excluded.is_verified, session_data = excluded.session_data`.execute(tx);
        }
      }
      return this.finishWrite(tx, userId, v, changed);
    });
  }

  async getKeys(userId: string, version: string | undefined, roomId?: string, sessionId?: string): Promise<Map<string, Map<string, KeyBackupData>>> {
    if (version === undefined) throw new MatrixError(400, 'M_MISSING_PARAM', 'version is required');
    const row = await this.versionRow(this.hs.db, userId, version);
    if (!row) throw notFound('Unknown backup version');
    let q = this.hs.db
      .selectFrom('e2e_room_keys')
      .select(['room_id', 'session_id', 'first_message_index', 'forwarded_count', 'is_verified', 'session_data'])
      .where('user_id', '=', userId)
      .where('version', '=', row.version);
    if (roomId !== undefined) q = q.where('room_id', '=', roomId);
    if (sessionId !== undefined) q = q.where('session_id', '=', sessionId);
    const out = new Map<string, Map<string, KeyBackupData>>();
    for (const r of await q.execute()) {
      let m = out.get(r.room_id);
      if (!m) out.set(r.room_id, (m = new Map()));
      m.set(r.session_id, {
        first_message_index: Number(r.first_message_index),
        forwarded_count: Number(r.forwarded_count),
        is_verified: r.is_verified,
        session_data: JSON.parse(r.session_data) as Json,
      });
    }
    return out;
  }

  async deleteKeys(userId: string, version: string | undefined, roomId?: string, sessionId?: string): Promise<{ etag: string; count: number }> {
    if (version === undefined) throw new MatrixError(400, 'M_MISSING_PARAM', 'version is required');
    return this.hs.db.transaction().execute(async (tx) => {
      const row = await this.versionRow(tx, userId, version, true);
      if (!row) throw notFound('Unknown backup version');
      let q = tx.deleteFrom('e2e_room_keys').where('user_id', '=', userId).where('version', '=', row.version);
      if (roomId !== undefined) q = q.where('room_id', '=', roomId);
      if (sessionId !== undefined) q = q.where('session_id', '=', sessionId);
      const r = await q.executeTakeFirst();
      return this.finishWrite(tx, userId, row.version, Number(r.numDeletedRows) > 0);
    });
  }

  private async finishWrite(tx: Queryable, userId: string, version: number, changed: boolean): Promise<{ etag: string; count: number }> {
    let etag: number;
    if (changed) {
      const r = await tx
        .updateTable('e2e_room_keys_versions')
        .set((eb) => ({ etag: eb('etag', '+', 1) }))
        .where('user_id', '=', userId)
        .where('version', '=', version)
        .returning('etag')
        .executeTakeFirstOrThrow();
      etag = Number(r.etag);
    } else {
      const r = await tx.selectFrom('e2e_room_keys_versions').select('etag').where('user_id', '=', userId).where('version', '=', version).executeTakeFirstOrThrow();
      etag = Number(r.etag);
    }
    return { etag: String(etag), count: await this.count(tx, userId, version) };
  }

  /** The version a write may go to: it must be the current one (M_WRONG_ROOM_KEYS_VERSION otherwise). Locks its row. */
  private async writableVersion(tx: Queryable, userId: string, version: string): Promise<number> {
    const current = await tx
      .selectFrom('e2e_room_keys_versions')
      .select('version')
      .where('user_id', '=', userId)
      .where('deleted', '=', false)
      .orderBy('version', 'desc')
      .limit(1)
      .forUpdate()
      .executeTakeFirst();
    if (!current) throw notFound('No backup exists');
    const cur = Number(current.version);
    if (versionNumber(version) !== cur) {
      throw new MatrixError(403, 'M_WRONG_ROOM_KEYS_VERSION', 'Wrong backup version.', { current_version: String(cur) });
    }
    return cur;
  }

  private async versionRow(db: Queryable, userId: string, version: string | undefined, lock = false): Promise<RoomKeysVersionsTable | undefined> {
    let q = db.selectFrom('e2e_room_keys_versions').selectAll().where('user_id', '=', userId).where('deleted', '=', false);
    if (version !== undefined) {
      const n = versionNumber(version);
      if (n === null) return undefined;
      q = q.where('version', '=', n);
    } else q = q.orderBy('version', 'desc').limit(1);
    const row = await (lock ? q.forUpdate() : q).executeTakeFirst();
    return row ? { ...row, version: Number(row.version), etag: Number(row.etag) } : undefined;
  }

  private async count(db: Queryable, userId: string, version: number): Promise<number> {
    const r = await db
      .selectFrom('e2e_room_keys')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .where('user_id', '=', userId)
      .where('version', '=', version)
      .executeTakeFirstOrThrow();
    return Number(r.n);
  }
}

function parseVersionBody(body: Json): { algorithm: string; authData: Json } {
  if (typeof body.algorithm !== 'string' || body.algorithm.length === 0) throw badJson('algorithm must be a string');
  if (!isObject(body.auth_data)) throw badJson('auth_data must be an object');
  return { algorithm: body.algorithm, authData: body.auth_data };
}
