// Account data (client-server-api "Client Config"), global and per room, on the account_data stream.
// Every write takes a new position from a sequence; writes are serialised by a transaction-scoped
// advisory lock so they commit in position order — a reader that has seen position N has seen every
// write below N, even with several writer processes (no gaps to skip past).
import { sql, type RawBuilder } from 'kysely';
import type { Homeserver } from '../homeserver.ts';
import type { Queryable } from '../storage/schema.ts';

export interface AccountDataTable {
  user_id: string;
  /** '' for global account data. */
  room_id: string;
  type: string;
  content: string;
  stream_id: number;
}

export interface FiltersTable {
  user_id: string;
  filter_id: number;
  filter: string;
}

declare module '../storage/schema.ts' {
  interface Tables {
    account_data: AccountDataTable;
    filters: FiltersTable;
  }
}

export interface AccountDataChange {
  /** null for global account data. */
  roomId: string | null;
  type: string;
  content: Record<string, unknown>;
  streamPosition: number;
}

// An arbitrary constant: the advisory lock key of the account_data stream.
const ACCOUNT_DATA_LOCK = 7_240_001;
const FILTER_LOCK = 7_240_002;

export class AccountDataService {
  private readonly hs: Homeserver;
  constructor(hs: Homeserver) {
    this.hs = hs;
  }

  async get(userId: string, roomId: string | null, type: string): Promise<Record<string, unknown> | null> {
    const row = await this.hs.db
      .selectFrom('account_data')
      .select('content')
      .where('user_id', '=', userId)
      .where('room_id', '=', roomId ?? '')
      .where('type', '=', type)
      .executeTakeFirst();
    return row ? (JSON.parse(row.content) as Record<string, unknown>) : null;
  }

  /** Stores account data and tells the user's sync streams (bus channel user:<userId>) after commit. Returns the new position. */
  async set(userId: string, roomId: string | null, type: string, content: Record<string, unknown>): Promise<number> {
    const json = JSON.stringify(content);
    const position = await this.hs.db.transaction().execute(async (tx) => {
      await sql`select pg_advisory_xact_lock(${ACCOUNT_DATA_LOCK})`.execute(tx);
      const { rows } = await sql<{ id: number }>`select nextval('account_data_stream_seq') as id`.execute(tx);
      const id = Number(rows[0]!.id);
      await tx
        .insertInto('account_data')
        .values({ user_id: userId, room_id: roomId ?? '', type, content: json, stream_id: id })
        .onConflict((oc) => oc.columns(['user_id', 'room_id', 'type']).doUpdateSet({ content: json, stream_id: id }))
        .execute();
      return id;
    });
    await this.hs.bus.publish(`user:${userId}`, { stream: 'account_data', position });
    return position;
  }

  /** Read-modify-write of one entry under the stream lock (tags: add or remove one tag). */
  async update(
    userId: string,
    roomId: string | null,
    type: string,
    fn: (current: Record<string, unknown> | null) => Record<string, unknown>,
  ): Promise<number> {
    const position = await this.hs.db.transaction().execute(async (tx) => {
      await sql`select pg_advisory_xact_lock(${ACCOUNT_DATA_LOCK})`.execute(tx);
      const cur = await tx
        .selectFrom('account_data')
        .select('content')
        .where('user_id', '=', userId)
        .where('room_id', '=', roomId ?? '')
        .where('type', '=', type)
        .executeTakeFirst();
      const next = JSON.stringify(fn(cur ? (JSON.parse(cur.content) as Record<string, unknown>) : null));
      const { rows } = await sql<{ id: number }>`select nextval('account_data_stream_seq') as id`.execute(tx);
      const id = Number(rows[0]!.id);
      await tx
        .insertInto('account_data')
        .values({ user_id: userId, room_id: roomId ?? '', type, content: next, stream_id: id })
        .onConflict((oc) => oc.columns(['user_id', 'room_id', 'type']).doUpdateSet({ content: next, stream_id: id }))
        .execute();
      return id;
    });
    await this.hs.bus.publish(`user:${userId}`, { stream: 'account_data', position });
    return position;
  }

  /** Changes with a position above `since` (0: everything), oldest first. */
  async getSince(userId: string, since: number, db: Queryable = this.hs.db): Promise<AccountDataChange[]> {
    const rows = await db
      .selectFrom('account_data')
      .select(['room_id', 'type', 'content', 'stream_id'])
      .where('user_id', '=', userId)
      .where('stream_id', '>', since)
      .orderBy('stream_id')
      .execute();
    return rows.map((r) => ({
      roomId: r.room_id === '' ? null : r.room_id,
      type: r.type,
      content: JSON.parse(r.content) as Record<string, unknown>,
      streamPosition: Number(r.stream_id),
    }));
  }

  /** The highest committed position (0 when nothing was written yet). */
  async currentPosition(): Promise<number> {
    const { rows } = await sql<{ p: number | null }>`select max(stream_id) as p from account_data`.execute(this.hs.db);
    return Number(rows[0]?.p ?? 0);
  }

  async ignoredUsers(userId: string): Promise<Set<string>> {
    return ignoredFromContent(await this.get(userId, null, 'm.ignored_user_list'));
  }

  /** The user's m.ignored_user_list content (text, or null) as a scalar subquery, for a statement that reads several things at once. */
  ignoredUsersColumn(userId: string): RawBuilder<unknown> {
    return sql`(select content from account_data where user_id = ${userId} and room_id = '' and type = 'm.ignored_user_list')`;
  }

  /** ignoredUsers from what ignoredUsersColumn read. */
  ignoredUsersFrom(value: unknown): Set<string> {
    return ignoredFromContent(typeof value === 'string' ? (JSON.parse(value) as Record<string, unknown>) : null);
  }

  async isIgnoring(userId: string, other: string): Promise<boolean> {
    return (await this.ignoredUsers(userId)).has(other);
  }

  // ---- filters (client-server-api "Filtering") ------------------------------------------------

  async createFilter(userId: string, filter: Record<string, unknown>): Promise<string> {
    const json = JSON.stringify(filter);
    const id = await this.hs.db.transaction().execute(async (tx) => {
      // Per-user ids 0, 1, 2 …, handed out under a per-user lock so concurrent creations do not collide.
      await sql`select pg_advisory_xact_lock(${FILTER_LOCK}, hashtext(${userId}))`.execute(tx);
      const { rows } = await sql<{ n: number | null }>`select max(filter_id) as n from filters where user_id = ${userId}`.execute(tx);
      const next = rows[0]?.n === null || rows[0]?.n === undefined ? 0 : Number(rows[0].n) + 1;
      await tx.insertInto('filters').values({ user_id: userId, filter_id: next, filter: json }).execute();
      return next;
    });
    return String(id);
  }

  async getFilter(userId: string, filterId: string): Promise<Record<string, unknown> | null> {
    if (!/^\d{1,15}$/.test(filterId)) return null;
    const row = await this.hs.db
      .selectFrom('filters')
      .select('filter')
      .where('user_id', '=', userId)
      .where('filter_id', '=', Number(filterId))
      .executeTakeFirst();
    return row ? (JSON.parse(row.filter) as Record<string, unknown>) : null;
  }
}

function ignoredFromContent(content: Record<string, unknown> | null): Set<string> {
  const ignored = content?.['ignored_users'];
  if (!ignored || typeof ignored !== 'object' || Array.isArray(ignored)) return new Set();
  return new Set(Object.keys(ignored));
}
