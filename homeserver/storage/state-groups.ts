// Room state snapshots ("state groups", DESIGN.md §3). A group is immutable and is stored either as a
// full snapshot or as a delta from its parent group. Deltas chain at most MAX_DELTA_DEPTH hops to a
// snapshot, so a 10,000-member room stores one row per state change plus a full snapshot every
// MAX_DELTA_DEPTH state changes, and reading any state is one query over a bounded chain.
//
// Group ids are text: the id of the state event whose "state after" the group is, or a fresh id for a
// group made by state resolution. No sequence round trip is needed to name a group.
import { sql } from 'kysely';
import { splitStateKey, stateKey, type StateKey, type StateMap } from '../../spec/events.ts';
import type { Db, Queryable } from './schema.ts';

export const MAX_DELTA_DEPTH = 100;

export interface StateGroupsTable {
  group_id: string;
  room_id: string;
  prev_group: string | null;
  delta_depth: number;
}
export interface StateGroupEntriesTable {
  group_id: string;
  type: string;
  state_key: string;
  event_id: string | null;
}
declare module './schema.ts' {
  interface Tables {
    state_groups: StateGroupsTable;
    state_group_entries: StateGroupEntriesTable;
  }
}

/** One link of a chain as read from the database: a group's own entries (null = key removed). */
export interface GroupLink {
  groupId: string;
  prevGroup: string | null;
  entries: Map<StateKey, string | null>;
}

/**
 * The state of the first group of `chain`, where `chain` runs from the group to its snapshot
 * (each link's prevGroup is the next link's groupId; the last link has no parent). Later links are
 * overridden by earlier ones; null entries remove keys.
 */
export function stateFromChain(chain: GroupLink[]): StateMap<string> {
  const out: StateMap<string> = new Map();
  for (let i = chain.length - 1; i >= 0; i--) {
    for (const [k, v] of chain[i]!.entries) {
      if (v === null) out.delete(k);
      else out.set(k, v);
    }
  }
  return out;
}

/** The entries a delta from `from` to `to` needs (null for keys `to` lacks). */
export function diffStates(from: StateMap<string>, to: StateMap<string>): Map<StateKey, string | null> {
  const d = new Map<StateKey, string | null>();
  for (const [k, v] of to) if (from.get(k) !== v) d.set(k, v);
  for (const k of from.keys()) if (!to.has(k)) d.set(k, null);
  return d;
}

/** A group ready to insert: either a delta from `prevGroup` or (prevGroup null) a full snapshot. */
export interface NewStateGroup {
  groupId: string;
  roomId: string;
  prevGroup: string | null;
  deltaDepth: number;
  entries: Map<StateKey, string | null>;
}

interface CachedGroup {
  state: StateMap<string>;
  deltaDepth: number;
}

/** Reads and writes state groups; groups are immutable, so a cache of them is valid in every process. */
export class StateGroupStore {
  private readonly db: Db;
  private readonly cache = new Map<string, CachedGroup>();
  /** Entries held by the cache (a 10,000-member room's state is 10,000 entries). */
  private cachedEntries = 0;
  private readonly maxCachedEntries: number;

  constructor(db: Db, maxCachedEntries = 2_000_000) {
    this.db = db;
    this.maxCachedEntries = maxCachedEntries;
  }

  /**
   * Plans a new group with `state`, derived from `prevGroup` (whose state is `prevState`): a delta
   * unless there is no parent or the parent's chain is already MAX_DELTA_DEPTH long.
   */
  plan(groupId: string, roomId: string, prevGroup: string | null, prevState: StateMap<string> | null, prevDepth: number, state: StateMap<string>): NewStateGroup {
    if (prevGroup === null || prevState === null || prevDepth + 1 >= MAX_DELTA_DEPTH) {
      return { groupId, roomId, prevGroup: null, deltaDepth: 0, entries: new Map(state) };
    }
    return { groupId, roomId, prevGroup, deltaDepth: prevDepth + 1, entries: diffStates(prevState, state) };
  }

  /** Remembers a group planned by this process (so its state is known without reading it back). */
  remember(group: NewStateGroup, state: StateMap<string>): void {
    this.put(group.groupId, { state, deltaDepth: group.deltaDepth });
  }

  forget(groupId: string): void {
    const c = this.cache.get(groupId);
    if (c) {
      this.cache.delete(groupId);
      this.cachedEntries -= c.state.size;
    }
  }

  async insert(tx: Queryable, groups: NewStateGroup[]): Promise<void> {
    if (groups.length === 0) return;
    await tx
      .insertInto('state_groups')
      .values(groups.map((g) => ({ group_id: g.groupId, room_id: g.roomId, prev_group: g.prevGroup, delta_depth: g.deltaDepth })))
      .execute();
    const rows: StateGroupEntriesTable[] = [];
    for (const g of groups) {
      for (const [k, v] of g.entries) {
        const [type, sk] = splitStateKey(k);
        rows.push({ group_id: g.groupId, type, state_key: sk, event_id: v });
      }
    }
    // Stay under PostgreSQL's 65,535 bind parameters per statement.
    for (let i = 0; i < rows.length; i += 10_000) {
      await tx.insertInto('state_group_entries').values(rows.slice(i, i + 10_000)).execute();
    }
  }

  /** The state of a group and its delta depth. Throws if the group is unknown. */
  async get(groupId: string): Promise<{ state: StateMap<string>; deltaDepth: number }> {
    const hit = this.cache.get(groupId);
    if (hit) {
      // LRU: move to the end.
      this.cache.delete(groupId);
      this.cache.set(groupId, hit);
      return hit;
    }
    const chain = await this.loadChain(groupId);
    if (chain.length === 0) throw new Error(`unknown state group ${groupId}`);
    const state = stateFromChain(chain);
    const depth = chain.length - 1;
    const g = { state, deltaDepth: depth };
    this.put(groupId, g);
    return g;
  }

  /** Reads a group's chain up to its snapshot in one query (bounded by MAX_DELTA_DEPTH). */
  async loadChain(groupId: string): Promise<GroupLink[]> {
    const r = await sql<{ group_id: string; prev_group: string | null; lvl: number; type: string | null; state_key: string | null; event_id: string | null }>`
      with recursive chain(group_id, prev_group, lvl) as (
        select group_id, prev_group, 0 from state_groups where group_id = ${groupId}
        union all
        select g.group_id, g.prev_group, c.lvl + 1 from state_groups g join chain c on g.group_id = c.prev_group
        where c.lvl < ${MAX_DELTA_DEPTH + 1}
      )
      select c.group_id, c.prev_group, c.lvl, e.type, e.state_key, e.event_id
      from chain c left join state_group_entries e on e.group_id = c.group_id
      order by c.lvl`.execute(this.db);
    const links: GroupLink[] = [];
    for (const row of r.rows) {
      let link = links[row.lvl];
      if (!link) links[row.lvl] = link = { groupId: row.group_id, prevGroup: row.prev_group, entries: new Map() };
      if (row.type !== null && row.state_key !== null) link.entries.set(stateKey(row.type, row.state_key), row.event_id);
    }
    return links;
  }

  private put(groupId: string, g: CachedGroup): void {
    this.forget(groupId);
    this.cache.set(groupId, g);
    this.cachedEntries += g.state.size;
    while (this.cachedEntries > this.maxCachedEntries && this.cache.size > 1) {
      const oldest = this.cache.keys().next().value!;
      this.forget(oldest);
    }
  }
}
