// An index that makes "auth chain difference" (state resolution v2, rooms/fragments/v2-state-res.md
// "Auth chain difference") cheap: a simplified chain cover index.
//
// Every state event gets a position (chain, seq). A chain is a sequence of events in which each event
// is a direct auth event of the next: an event continues the chain of its auth event of the same
// (type, state_key) when that auth event is the chain's tip (a member's join continues their invite,
// a new power-levels event continues the previous one); otherwise it starts a new chain, named by its
// own event id. So an event's auth chain contains every earlier event of its own chain.
//
// Every state event also stores its *reach*: for each other chain, the highest seq its auth chain
// contains. By induction the auth chain of an event is exactly the union of the prefixes
// (c, 1..reach[c]) plus (own chain, 1..seq-1): the auth chain of E is its auth events plus their auth
// chains, each auth event (c, s) brings the prefix up to s (its own chain prefix up to s-1 is already
// in its auth chain), and a union of prefixes is the prefix of the maximum. A reach entry per chain
// (rather than per ancestor event) keeps the index small: a member event's reach names a handful of
// chains (create, power levels, join rules, a few members), however long the room's history.
//
// The auth chain of a state set is then, per chain, the prefix up to the maximum over the set; the
// union of several sets' chains is the per-chain maximum, the intersection the per-chain minimum,
// and the difference is, per chain, the seqs in (min, max] — a range scan on (auth_chain_id, seq).
import { sql } from 'kysely';
import type { StateMap } from '../../spec/events.ts';
import type { Db, Queryable } from './schema.ts';

export interface AuthChainReachTable {
  event_id: string;
  chain_id: string;
  max_seq: number;
}
declare module './schema.ts' {
  interface Tables {
    auth_chain_reach: AuthChainReachTable;
  }
}

export interface ChainPosition {
  chainId: string;
  seq: number;
  /** chain id → highest seq reached, excluding the event's own chain. */
  reach: Map<string, number>;
}

/** What the index needs to know about one auth event. */
export interface AuthEventPosition extends ChainPosition {
  type: string;
  stateKey: string;
}

/**
 * The position of a new state event (type, stateKey) from its auth events' positions.
 * `isTip(chainId, seq)` says whether (chainId, seq) is currently the last event of its chain.
 */
export function assignChainPosition(
  eventId: string,
  type: string,
  stateKeyValue: string,
  authEvents: AuthEventPosition[],
  isTip: (chainId: string, seq: number) => boolean,
): ChainPosition {
  const reach = new Map<string, number>();
  const bump = (c: string, s: number) => {
    if ((reach.get(c) ?? 0) < s) reach.set(c, s);
  };
  for (const a of authEvents) {
    bump(a.chainId, a.seq);
    for (const [c, s] of a.reach) bump(c, s);
  }
  let chainId = eventId;
  let seq = 1;
  const same = authEvents.find((a) => a.type === type && a.stateKey === stateKeyValue);
  if (same && isTip(same.chainId, same.seq)) {
    chainId = same.chainId;
    seq = same.seq + 1;
  }
  reach.delete(chainId);
  return { chainId, seq, reach };
}

/** Per chain, the highest seq of the auth chain of a set of positioned events. */
export function setReach(positions: Iterable<ChainPosition>): Map<string, number> {
  const out = new Map<string, number>();
  for (const p of positions) {
    if (p.seq > 1 && (out.get(p.chainId) ?? 0) < p.seq - 1) out.set(p.chainId, p.seq - 1);
    for (const [c, s] of p.reach) if ((out.get(c) ?? 0) < s) out.set(c, s);
  }
  return out;
}

/** Per chain, the (min, max] ranges of seqs in the union but not the intersection of the sets' chains. */
export function differenceRanges(reaches: Map<string, number>[]): Map<string, [number, number]> {
  const chains = new Set<string>();
  for (const r of reaches) for (const c of r.keys()) chains.add(c);
  const out = new Map<string, [number, number]>();
  for (const c of chains) {
    let lo = Infinity;
    let hi = 0;
    for (const r of reaches) {
      const s = r.get(c) ?? 0;
      if (s < lo) lo = s;
      if (s > hi) hi = s;
    }
    if (hi > lo) out.set(c, [lo, hi]);
  }
  return out;
}

export class AuthChainIndex {
  private readonly db: Db;
  private readonly cache = new Map<string, ChainPosition | null>();
  private readonly maxCached: number;
  constructor(db: Db, maxCached = 200_000) {
    this.db = db;
    this.maxCached = maxCached;
  }

  remember(eventId: string, p: ChainPosition | null): void {
    if (this.cache.size >= this.maxCached) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(eventId, p);
  }
  forget(eventId: string): void {
    this.cache.delete(eventId);
  }

  /** Positions of events (null for events without one: messages, outliers, unknown). */
  async positions(eventIds: string[]): Promise<Map<string, ChainPosition | null>> {
    const out = new Map<string, ChainPosition | null>();
    const missing: string[] = [];
    for (const id of eventIds) {
      const c = this.cache.get(id);
      if (c !== undefined) out.set(id, c);
      else missing.push(id);
    }
    if (missing.length > 0) {
      const rows = await this.db
        .selectFrom('events')
        .select(['event_id', 'auth_chain_id', 'auth_chain_seq'])
        .where('event_id', 'in', missing)
        .execute();
      const reachRows = await this.db.selectFrom('auth_chain_reach').selectAll().where('event_id', 'in', missing).execute();
      const reach = new Map<string, Map<string, number>>();
      for (const r of reachRows) {
        let m = reach.get(r.event_id);
        if (!m) reach.set(r.event_id, (m = new Map()));
        m.set(r.chain_id, Number(r.max_seq));
      }
      for (const id of missing) out.set(id, null);
      for (const r of rows) {
        const p = r.auth_chain_id !== null && r.auth_chain_seq !== null ? { chainId: r.auth_chain_id, seq: Number(r.auth_chain_seq), reach: reach.get(r.event_id) ?? new Map() } : null;
        out.set(r.event_id, p);
        this.remember(r.event_id, p);
      }
    }
    return out;
  }

  /** The highest seq of a chain in the database. */
  async chainTip(chainId: string): Promise<number> {
    const r = await this.db
      .selectFrom('events')
      .select((eb) => eb.fn.max('auth_chain_seq').as('m'))
      .where('auth_chain_id', '=', chainId)
      .executeTakeFirst();
    return Number(r?.m ?? 0);
  }

  async insert(tx: Queryable, rows: Array<{ eventId: string; position: ChainPosition }>): Promise<void> {
    const values: AuthChainReachTable[] = [];
    for (const { eventId, position } of rows) for (const [c, s] of position.reach) values.push({ event_id: eventId, chain_id: c, max_seq: s });
    for (let i = 0; i < values.length; i += 15_000) await tx.insertInto('auth_chain_reach').values(values.slice(i, i + 15_000)).execute();
  }

  /**
   * The auth chain difference of state sets (event ids), or undefined when some event has no position
   * (the caller then falls back to walking auth events).
   */
  async authChainDifference(stateSets: StateMap<string>[]): Promise<Set<string> | undefined> {
    const all = new Set<string>();
    for (const s of stateSets) for (const id of s.values()) all.add(id);
    const pos = await this.positions([...all]);
    const reaches: Map<string, number>[] = [];
    for (const s of stateSets) {
      const ps: ChainPosition[] = [];
      for (const id of s.values()) {
        const p = pos.get(id);
        if (!p) return undefined;
        ps.push(p);
      }
      reaches.push(setReach(ps));
    }
    const ranges = differenceRanges(reaches);
    const out = new Set<string>();
    if (ranges.size === 0) return out;
    const ids: string[] = [];
    const los: number[] = [];
    const his: number[] = [];
    for (const [c, [lo, hi]] of ranges) {
      ids.push(c);
      los.push(lo);
      his.push(hi);
    }
    const r = await sql<{ event_id: string }>`
      select e.event_id from unnest(${ids}::text[], ${los}::int[], ${his}::int[]) as r(chain_id, lo, hi)
      join events e on e.auth_chain_id = r.chain_id and e.auth_chain_seq > r.lo and e.auth_chain_seq <= r.hi`.execute(this.db);
    for (const row of r.rows) out.add(row.event_id);
    return out;
  }
}
