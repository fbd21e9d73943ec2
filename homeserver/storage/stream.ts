// Positions of the `events` stream with several writers (DESIGN.md §3).
//
// Positions come from a PostgreSQL sequence, so two writers never share one, but they may commit out
// of order: writer A takes 10, writer B takes 11, B commits first. A reader that advanced to 11 would
// never see 10. So readers advance only to the position below which every write has committed.
//
// - One process (no Redis): allocation is serialised in this process, so positions are handed out in
//   order, and the safe position is "one below the lowest position still in flight here", or the last
//   allocated one when nothing is in flight. Positions are taken from the sequence in blocks, so most
//   flushes need no round trip for them.
// - Several processes (Redis configured): a writer records each allocated position in
//   `stream_in_flight` in the same statement that allocates it, under a transaction-scoped advisory
//   lock, so allocations become visible in position order; the row is deleted in the transaction that
//   persists the event (or right after a failed one). A reader computes, in one snapshot: one below the
//   lowest in-flight position, else the highest persisted position. Any position not yet visible was
//   allocated after everything visible, so it is above that answer. Rows of a crashed writer are
//   ignored after IN_FLIGHT_TIMEOUT_MS (a persisting transaction never lives that long) and swept.
//   The allocation commits with synchronous_commit off: the WAL is sequential, so the event's own
//   (synchronous) commit flushes it too.
import { sql } from 'kysely';
import type { Db, Queryable } from './schema.ts';

export const IN_FLIGHT_TIMEOUT_MS = 60_000;
const ALLOCATION_LOCK = 727_001; // pg_advisory_xact_lock key for the events stream
const RESERVE_BLOCK = 256;

export class EventStreamPositions {
  private readonly db: Db;
  private readonly instance: string;
  readonly multiWriter: boolean;
  private readonly now: () => number;
  private allocating: Promise<unknown> = Promise.resolve();
  private readonly inFlight = new Set<number>();
  private lastAllocated = 0;
  private lastSwept = 0;
  /** Single writer: positions taken from the sequence but not handed out yet (ascending). */
  private readonly reserve: number[] = [];

  constructor(db: Db, opts: { instance: string; multiWriter: boolean; now: () => number }) {
    this.db = db;
    this.instance = opts.instance;
    this.multiWriter = opts.multiWriter;
    this.now = opts.now;
  }

  async init(): Promise<void> {
    const r = await sql<{ p: number | null }>`select max(stream_ordering)::bigint as p from events`.execute(this.db);
    this.lastAllocated = Number(r.rows[0]?.p ?? 0);
  }

  /** Allocates `n` consecutive-in-order positions (ascending). Serialised within the process. */
  allocate(n: number): Promise<number[]> {
    const run = async (): Promise<number[]> => {
      let positions: number[];
      if (this.multiWriter) {
        const r = await sql<{ position: number }>`
          with l as (select pg_advisory_xact_lock(${ALLOCATION_LOCK}) as x, set_config('synchronous_commit', 'off', true) as y)
          insert into stream_in_flight (stream, position, instance, created_ts)
          select 'events', nextval('events_stream_seq'), ${this.instance}, ${this.now()} from generate_series(1, ${n}::int), l
          returning position`.execute(this.db);
        positions = r.rows.map((x) => Number(x.position));
      } else {
        // One writer: positions only need to be handed out in order here, so take them from the sequence
        // a block at a time (no round trip per flush; unused ones are gaps, which readers never wait on).
        if (this.reserve.length < n) {
          const want = Math.max(n - this.reserve.length, RESERVE_BLOCK);
          const r = await sql<{ position: number }>`select nextval('events_stream_seq') as position from generate_series(1, ${want}::int)`.execute(this.db);
          const got = r.rows.map((x) => Number(x.position)).sort((a, b) => a - b);
          this.reserve.push(...got.filter((p) => p > (this.reserve.at(-1) ?? 0)));
        }
        positions = this.reserve.splice(0, n);
      }
      positions.sort((a, b) => a - b);
      for (const p of positions) this.inFlight.add(p);
      this.lastAllocated = Math.max(this.lastAllocated, positions.at(-1) ?? 0);
      return positions;
    };
    const p = this.allocating.then(run, run);
    this.allocating = p.catch(() => undefined);
    return p;
  }

  /** Inside the persisting transaction: removes the in-flight markers of `positions` (multi-writer only). */
  async clearInFlight(tx: Queryable, positions: number[]): Promise<void> {
    if (!this.multiWriter || positions.length === 0) return;
    await sql`delete from stream_in_flight where stream = 'events' and position = any(${positions}::bigint[])`.execute(tx);
  }

  /**
   * One writer: resolves once this process's position reaches `position` (or after `timeoutMs`), woken
   * by the persists that advance it rather than by polling. With several writers the position is read
   * from the database: callers poll currentPosition instead.
   */
  whenReached(position: number, timeoutMs: number): Promise<void> {
    if (this.localPosition() >= position || timeoutMs <= 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const w = { position, resolve: () => {
        clearTimeout(timer);
        this.reachWaiters.delete(w);
        resolve();
      } };
      const timer = setTimeout(w.resolve, timeoutMs);
      timer.unref();
      this.reachWaiters.add(w);
    });
  }

  private readonly reachWaiters = new Set<{ position: number; resolve: () => void }>();

  /** After the persisting transaction committed or failed. On failure the markers are removed here. */
  async finished(positions: number[], committed: boolean): Promise<void> {
    for (const p of positions) this.inFlight.delete(p);
    if (this.reachWaiters.size > 0) {
      const now = this.localPosition();
      for (const w of [...this.reachWaiters]) if (w.position <= now) w.resolve();
    }
    if (!committed && this.multiWriter && positions.length > 0) {
      try {
        await this.clearInFlight(this.db, positions);
      } catch {
        // Swept after IN_FLIGHT_TIMEOUT_MS.
      }
    }
  }

  /** The highest position below which (inclusive) every write has committed. */
  async currentPosition(): Promise<number> {
    if (!this.multiWriter) return this.localPosition();
    const cutoff = this.now() - IN_FLIGHT_TIMEOUT_MS;
    if (this.now() - this.lastSwept > IN_FLIGHT_TIMEOUT_MS) {
      this.lastSwept = this.now();
      await sql`delete from stream_in_flight where stream = 'events' and created_ts < ${cutoff}`.execute(this.db);
    }
    const r = await sql<{ p: number | null }>`
      select coalesce(
        (select min(position) - 1 from stream_in_flight where stream = 'events' and created_ts >= ${cutoff}),
        (select max(stream_ordering) from events),
        0)::bigint as p`.execute(this.db);
    return Number(r.rows[0]?.p ?? 0);
  }

  /** This process's view (exact for a single writer). */
  localPosition(): number {
    let min = Infinity;
    for (const p of this.inFlight) if (p < min) min = p;
    return min === Infinity ? this.lastAllocated : min - 1;
  }
}
