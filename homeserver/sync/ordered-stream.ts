// Streams with one position per write, safe with several writer processes: each write takes a
// transaction-scoped advisory lock, then its position from the stream's sequence, so writes commit in
// position order and a reader that sees position N has seen every write below N. The highest committed
// position is then max(stream_id) of the stream's table (DESIGN.md §3; the account data stream works
// the same way). Good for streams whose writes are small and not too frequent (receipts, presence);
// the events stream has its own multi-writer scheme (storage/stream.ts), and push actions are written
// with their events at the events' positions.
import { sql, type RawBuilder } from 'kysely';
import type { Db, Tx } from '../storage/schema.ts';

export interface OrderedStream {
  /** pg_advisory_xact_lock key. */
  lock: number;
  /** The sequence the positions come from. */
  sequence: string;
  /** Table and column holding positions, for the current position. */
  table: string;
  column: string;
}

export const RECEIPTS_STREAM: OrderedStream = { lock: 727_101, sequence: 'receipts_stream_seq', table: 'receipts', column: 'stream_id' };
export const PRESENCE_STREAM: OrderedStream = { lock: 727_102, sequence: 'presence_stream_seq', table: 'presence', column: 'stream_id' };

/**
 * Runs `fn` in a transaction holding the stream's lock; `next()` hands out positions, `nextMany(n)` n
 * ascending positions in one round trip (for large writes: the lock is held for as short as possible).
 */
export async function orderedWrite<T>(
  db: Db,
  s: OrderedStream,
  fn: (tx: Tx, next: () => Promise<number>, nextMany: (n: number) => Promise<number[]>) => Promise<T>,
): Promise<T> {
  // Writes of one stream queue up in this process first: waiting for the advisory lock would hold a
  // pooled connection each, and a burst (push actions for every event of a busy room) would starve
  // the pool. Across processes the advisory lock still orders them.
  let localQueues = queuesByDb.get(db);
  if (!localQueues) queuesByDb.set(db, (localQueues = new Map()));
  const queues = localQueues;
  const prev = queues.get(s.lock) ?? Promise.resolve();
  const mine = prev.then(() => runOrdered(db, s, fn));
  const tail = mine.then(
    () => undefined,
    () => undefined,
  );
  queues.set(s.lock, tail);
  void tail.then(() => {
    if (queues.get(s.lock) === tail) queues.delete(s.lock);
  });
  return mine;
}

const queuesByDb = new WeakMap<Db, Map<number, Promise<void>>>();

async function runOrdered<T>(
  db: Db,
  s: OrderedStream,
  fn: (tx: Tx, next: () => Promise<number>, nextMany: (n: number) => Promise<number[]>) => Promise<T>,
): Promise<T> {
  return db.transaction().execute(async (tx) => {
    await sql`select pg_advisory_xact_lock(${s.lock})`.execute(tx);
    const next = async () => {
      const { rows } = await sql<{ id: string | number }>`select nextval(${s.sequence}) as id`.execute(tx);
      return Number(rows[0]!.id);
    };
    const nextMany = async (n: number) => {
      if (n <= 0) return [];
      const { rows } = await sql<{ id: string | number }>`select nextval(${s.sequence}) as id from generate_series(1, ${n}::int)`.execute(tx);
      return rows.map((r) => Number(r.id)).sort((a, b) => a - b);
    };
    return fn(tx, next, nextMany);
  });
}

/** The highest committed position of the stream (0 before the first write). */
export async function orderedPosition(db: Db, s: OrderedStream): Promise<number> {
  const { rows } = await sql<{ p: string | number | null }>`select max(${sql.ref(s.column)}) as p from ${sql.table(s.table)}`.execute(db);
  return Number(rows[0]?.p ?? 0);
}

/** The scalar subquery of a table-backed position (max of the column, null when the table is empty). */
export function maxPositionColumn(table: string, column: string): RawBuilder<unknown> {
  return sql`(select max(${sql.ref(column)}) from ${sql.table(table)})`;
}

/** Reads scalar subqueries in one statement (one round trip), by alias; `ctes` (the inside of a WITH) for them to read. */
export async function readColumns(db: Db, cols: ReadonlyArray<readonly [string, RawBuilder<unknown>]>, ctes: RawBuilder<unknown> | null = null): Promise<Record<string, unknown>> {
  if (cols.length === 0) return {};
  const list = sql.join(cols.map(([alias, c]) => sql`${c} as ${sql.ref(alias)}`));
  const { rows } = await sql<Record<string, unknown>>`${ctes ? sql`with ${ctes} ` : sql``}select ${list}`.execute(db);
  return rows[0] ?? {};
}
