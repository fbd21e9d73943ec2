// State resolution: room version 1 (rooms/v1.md "State resolution"), version 2 for room versions 2–11
// (rooms/fragments/v2-state-res.md) and the revised version 2.1 for room version 12 (rooms/v12.md
// "State resolution", MSC4297). Pure and deterministic: events come in through `fetchEvent`, and the
// answer depends only on the state sets as sets, not on their order or on Map insertion order.

import { createHash } from 'node:crypto';
import { checkEventAuth } from './auth-rules.ts';
import { getUserPowerLevel } from './power-levels.ts';
import type { IdentifiedPdu, JsonValue, Pdu, StateKey, StateMap } from './events.ts';
import { isStateEvent, refIds, stateKey } from './events.ts';
import type { RoomVersion } from './room-versions.ts';

export interface StateResolutionInput {
  roomVersion: RoomVersion;
  stateSets: StateMap<string>[]; // each: (type,state_key) → event id
  fetchEvent(eventId: string): Promise<IdentifiedPdu | undefined>;
  /**
   * Optional: many events at once (missing ones absent from the result). Walking a big room's auth
   * chains fetches thousands of events a step; one call (one database query) beats one call each.
   */
  fetchEvents?(eventIds: string[]): Promise<Map<string, IdentifiedPdu>>;
  /** Optional oracle: the auth chain difference of the state sets (the homeserver has an index for it). Default: computed via fetchEvent by walking auth_events. */
  authChainDifference?(stateSets: StateMap<string>[]): Promise<Set<string>>;
  /**
   * Optional: whether an event was rejected on receipt. The iterative auth checks only fall back to an
   * event's `auth_events` "if the auth event is not rejected" (v2-state-res "Iterative auth checks").
   * Default: no event is rejected.
   */
  isRejected?(eventId: string): boolean;
}

const CREATE = stateKey('m.room.create', '');
const POWER_LEVELS = stateKey('m.room.power_levels', '');
const JOIN_RULES = stateKey('m.room.join_rules', '');

// ---------------------------------------------------------------------------------------------------
// Event cache: every event is fetched at most once per resolution; walks fetch a whole frontier at a
// time so a database-backed fetchEvent can run in parallel.

class EventCache {
  readonly #fetch: (eventId: string) => Promise<IdentifiedPdu | undefined>;
  readonly #fetchMany: ((eventIds: string[]) => Promise<Map<string, IdentifiedPdu>>) | undefined;
  readonly #events = new Map<string, IdentifiedPdu | null>();
  readonly #auth = new Map<string, readonly string[]>();

  constructor(fetch: (eventId: string) => Promise<IdentifiedPdu | undefined>, fetchMany?: (eventIds: string[]) => Promise<Map<string, IdentifiedPdu>>) {
    this.#fetch = fetch;
    this.#fetchMany = fetchMany;
  }

  /** The event if it has been loaded (undefined if not loaded or not found). */
  peek(id: string): IdentifiedPdu | undefined {
    return this.#events.get(id) ?? undefined;
  }

  async get(id: string): Promise<IdentifiedPdu | undefined> {
    const have = this.#events.get(id);
    if (have !== undefined) return have ?? undefined;
    const ev = await this.#fetch(id);
    this.#events.set(id, ev ?? null);
    return ev;
  }

  async load(ids: Iterable<string>): Promise<void> {
    const want = new Set<string>();
    for (const id of ids) if (!this.#events.has(id)) want.add(id);
    if (want.size === 0) return;
    const missing = [...want];
    if (this.#fetchMany && missing.length > 1) {
      const got = await this.#fetchMany(missing);
      for (const id of missing) this.#events.set(id, got.get(id) ?? null);
      return;
    }
    const got = await Promise.all(missing.map((id) => this.#fetch(id)));
    for (let i = 0; i < missing.length; i++) this.#events.set(missing[i]!, got[i] ?? null);
  }

  /** Ids in the loaded event's `auth_events` ([] if not loaded / not found). */
  authOf(id: string): readonly string[] {
    let a = this.#auth.get(id);
    if (a === undefined) {
      const ev = this.#events.get(id);
      if (!ev) return [];
      const refs = ev.pdu.auth_events;
      if (!Array.isArray(refs)) return [];
      // From room version 3 on the refs are plain ids: use the array as it is, no copy to keep.
      let plain = true;
      for (const r of refs) if (typeof r !== 'string') { plain = false; break; }
      if (plain) return refs as string[];
      a = refIds(refs);
      this.#auth.set(id, a);
    }
    return a;
  }
}

/**
 * Walks `auth_events` breadth first from `starts`. Returns every event reached (the starts themselves only
 * if reached from another start). `skip` prunes the walk: a skipped event is neither added nor followed.
 */
async function walkAuthEvents(
  cache: EventCache,
  starts: Iterable<string>,
  skip?: (id: string) => boolean,
): Promise<Set<string>> {
  const seen = new Set<string>();
  let frontier = Array.isArray(starts) ? (starts as string[]) : [...starts];
  while (frontier.length > 0) {
    await cache.load(frontier);
    const next: string[] = [];
    for (const id of frontier) {
      for (const a of cache.authOf(id)) {
        if (seen.has(a) || (skip !== undefined && skip(a))) continue;
        seen.add(a);
        next.push(a);
      }
    }
    frontier = next;
  }
  return seen;
}

/**
 * The auth chain of a set of events: "all of E's auth events, all of their auth events, and so on
 * recursively" (v2-state-res "Auth chain"), united over `eventIds`. A start event is only in the result
 * if it is in the auth chain of another start event.
 */
export async function authChain(
  eventIds: Iterable<string>,
  fetchEvent: (eventId: string) => Promise<IdentifiedPdu | undefined>,
): Promise<Set<string>> {
  return walkAuthEvents(new EventCache(fetchEvent), eventIds);
}

// ---------------------------------------------------------------------------------------------------
// Unconflicted state map and conflicted state set.

interface Split {
  /** One of the state sets; every unconflicted key is in it. */
  base: StateMap<string>;
  /** Keys of `base` that are not unconflicted (keys missing from `base` are conflicted anyway). */
  conflictedKeys: Set<StateKey>;
  conflicted: Set<string>;
  /** Per state set: its event ids that are not in the unconflicted state map. */
  conflictedPerSet: string[][];
}

/**
 * v2-state-res "Unconflicted state map and conflicted state set": (K, V) is unconflicted when K is present
 * in every S_i with the same V; every other value is in the conflicted state set (a key missing from
 * some S_i is therefore conflicted). The unconflicted state map is kept as `base` minus `conflictedKeys`,
 * so a 10,000-member state is not copied.
 */
function splitV2(sets: readonly StateMap<string>[]): Split {
  let base = sets[0]!;
  for (const s of sets) if (s.size < base.size) base = s;
  // One pass over `base` per other set finds the keys whose values differ or are missing; a set only
  // needs its own pass when it has keys `base` lacks. Big rooms' state sets mostly agree, so this is
  // about |base| × (n − 1) lookups.
  const conflictedKeys = new Set<StateKey>();
  for (const s of sets) {
    if (s === base) continue;
    let missing = 0;
    for (const [k, v] of base) {
      const w = s.get(k);
      if (w !== v) {
        conflictedKeys.add(k);
        if (w === undefined) missing++;
      }
    }
    if (s.size > base.size - missing) for (const k of s.keys()) if (!base.has(k)) conflictedKeys.add(k);
  }
  const conflicted = new Set<string>();
  const conflictedPerSet = sets.map((s) => {
    const out: string[] = [];
    for (const k of conflictedKeys) {
      const v = s.get(k);
      if (v !== undefined) {
        conflicted.add(v);
        out.push(v);
      }
    }
    return out;
  });
  return { base, conflictedKeys, conflicted, conflictedPerSet };
}

function unconflictedGet(split: Split, k: StateKey): string | undefined {
  return split.conflictedKeys.has(k) ? undefined : split.base.get(k);
}

function unconflictedValues(split: Split): string[] {
  const out: string[] = [];
  for (const [k, v] of split.base) if (!split.conflictedKeys.has(k)) out.push(v);
  return out;
}

/**
 * v2-state-res "Auth difference": with C_i the union of the auth chains of the events of S_i, the auth
 * difference is ∪C_i − ∩C_i.
 *
 * Computed without walking every state set's whole chain: with U the auth chain of the unconflicted
 * events (common to every S_i) and K_i the auth chain of S_i's other events, C_i = U ∪ K_i, so
 * ∪C_i − ∩C_i = ∪(K_i − U) − ∩(K_i − U). U is closed under auth_events, so the K_i walks stop at U.
 */
async function computeAuthDifference(cache: EventCache, split: Split): Promise<Set<string>> {
  const n = split.conflictedPerSet.length;
  const common = await walkAuthEvents(cache, unconflictedValues(split));
  const count = new Map<string, number>();
  for (const starts of split.conflictedPerSet) {
    const k = await walkAuthEvents(cache, starts, (id) => common.has(id));
    for (const id of k) count.set(id, (count.get(id) ?? 0) + 1);
  }
  const diff = new Set<string>();
  for (const [id, c] of count) if (c < n) diff.add(id);
  return diff;
}

/** The auth chain difference of state sets (v2-state-res "Auth difference"), by walking auth_events. */
export async function authChainDifference(
  stateSets: StateMap<string>[],
  fetchEvent: (eventId: string) => Promise<IdentifiedPdu | undefined>,
): Promise<Set<string>> {
  if (stateSets.length < 2) return new Set();
  return computeAuthDifference(new EventCache(fetchEvent), splitV2(stateSets));
}

/**
 * rooms/v12.md "Conflicted state subgraph": the union of all auth_events paths between any pair of events
 * in the conflicted state set, endpoints included. An event is on such a path iff it is reachable from a
 * conflicted event (it is in that event's auth chain) and a conflicted event is reachable from it (it is
 * conflicted itself, or one of its auth events is on a path).
 */
async function conflictedStateSubgraph(cache: EventCache, conflicted: Set<string>): Promise<Set<string>> {
  const below = await walkAuthEvents(cache, conflicted); // everything reachable from a conflicted event
  const reaches = new Map<string, boolean>(); // event → "some conflicted event is reachable from it, or it is one"
  const onStack = new Set<string>();
  for (const root of below) {
    if (reaches.has(root)) continue;
    const stack: Array<[string, boolean]> = [[root, false]];
    while (stack.length > 0) {
      const [id, expanded] = stack.pop()!;
      if (reaches.has(id)) continue;
      if (!expanded) {
        if (onStack.has(id)) continue; // a cycle (forged v1/v2 ids): ignore the back edge
        onStack.add(id);
        stack.push([id, true]);
        for (const a of cache.authOf(id)) if (!reaches.has(a) && !onStack.has(a)) stack.push([a, false]);
      } else {
        let r = conflicted.has(id);
        if (!r) for (const a of cache.authOf(id)) if (reaches.get(a) === true) { r = true; break; }
        reaches.set(id, r);
        onStack.delete(id);
      }
    }
  }
  const sub = new Set(conflicted);
  for (const id of below) if (reaches.get(id) === true) sub.add(id);
  return sub;
}

// ---------------------------------------------------------------------------------------------------
// Events by kind.

function contentObject(v: JsonValue | undefined): { [key: string]: JsonValue } | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? v : undefined;
}

function isPowerEvent(pdu: Pdu): boolean {
  // v2-state-res "Power events"
  if (!isStateEvent(pdu)) return false;
  if (pdu.type === 'm.room.power_levels' || pdu.type === 'm.room.join_rules') return true;
  if (pdu.type !== 'm.room.member') return false;
  const m = pdu.content['membership'];
  return (m === 'leave' || m === 'ban') && pdu.sender !== pdu.state_key;
}

function keyOf(pdu: Pdu): StateKey {
  return stateKey(pdu.type, pdu.state_key ?? '');
}

/** Room version 12: the room id is the create event's id with `!` for `$`; the create event has none. */
function createIdFromRoomId(ev: IdentifiedPdu): string | undefined {
  if (ev.pdu.type === 'm.room.create' && ev.pdu.state_key === '') return ev.eventId;
  const r = ev.pdu.room_id;
  return typeof r === 'string' && r.startsWith('!') ? `$${r.slice(1)}` : undefined;
}

// ---------------------------------------------------------------------------------------------------
// A small binary heap for Kahn's algorithm.

class Heap<T> {
  readonly #items: T[] = [];
  readonly #less: (a: T, b: T) => boolean;
  constructor(less: (a: T, b: T) => boolean) {
    this.#less = less;
  }
  get size(): number {
    return this.#items.length;
  }
  push(x: T): void {
    const a = this.#items;
    a.push(x);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.#less(a[i]!, a[p]!)) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }
  pop(): T | undefined {
    const a = this.#items;
    if (a.length === 0) return undefined;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.#less(a[l]!, a[m]!)) m = l;
        if (r < a.length && this.#less(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }
}

function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------------
// The resolution context shared by the steps.

/** What the auth checks read from a state: a Map, or a partial state laid over the unconflicted map. */
interface ReadableState {
  get(k: StateKey): string | undefined;
}

/**
 * The partially resolved state of the v2 algorithm: the events the iterative auth checks applied, over a
 * starting map that is never copied (the unconflicted state map for v2, nothing for v2.1).
 */
class PartialState implements ReadableState {
  readonly applied: StateMap<string> = new Map();
  readonly #start: (k: StateKey) => string | undefined;
  constructor(start: (k: StateKey) => string | undefined) {
    this.#start = start;
  }
  get(k: StateKey): string | undefined {
    return this.applied.get(k) ?? this.#start(k);
  }
  set(k: StateKey, eventId: string): void {
    this.applied.set(k, eventId);
  }
}

interface Ctx {
  rv: RoomVersion;
  cache: EventCache;
  isRejected: (eventId: string) => boolean;
}

/**
 * The (type, state_key) pairs the auth rules read for an event: server-server-api "Auth events
 * selection" (create, power levels, sender's membership; for m.room.member the target's membership, the
 * join rules for join/invite/knock, the third-party invite for an invite carrying one, and the
 * authorising user's membership for a restricted join).
 */
function authKeysFor(rv: RoomVersion, pdu: Pdu): StateKey[] {
  if (pdu.type === 'm.room.create') return [];
  const keys = [CREATE, POWER_LEVELS, stateKey('m.room.member', pdu.sender)];
  if (pdu.type === 'm.room.member' && typeof pdu.state_key === 'string') {
    keys.push(stateKey('m.room.member', pdu.state_key));
    const m = pdu.content['membership'];
    if (m === 'join' || m === 'invite' || m === 'knock') keys.push(JOIN_RULES);
    if (m === 'invite') {
      const tpi = contentObject(pdu.content['third_party_invite']);
      const token = contentObject(tpi?.['signed'])?.['token'];
      if (typeof token === 'string') keys.push(stateKey('m.room.third_party_invite', token));
    }
    if (m === 'join' && rv.restrictedJoin) {
      const via = pdu.content['join_authorised_via_users_server'];
      if (typeof via === 'string') keys.push(stateKey('m.room.member', via));
    }
  }
  return [...new Set(keys)];
}

/**
 * The state an event is authorised against during the iterative auth checks: v2-state-res "Iterative
 * auth checks" — each key the auth rules need comes from the partially resolved state; "if a
 * (event_type, state_key) key that is required for checking the authorisation rules is not present in
 * the state, then the appropriate state event from the event's auth_events is used if the auth event is
 * not rejected". In room version 12 the create event is never in auth_events (the room id names it), so
 * it comes from the room id when the state lacks it.
 */
async function authStateFor(
  ctx: Ctx,
  ev: IdentifiedPdu,
  state: ReadableState,
  fallBackToAuthEvents: boolean,
): Promise<StateMap<IdentifiedPdu>> {
  const keys = authKeysFor(ctx.rv, ev.pdu);
  const out: StateMap<IdentifiedPdu> = new Map();
  let fromAuth: StateMap<IdentifiedPdu> | undefined;
  for (const k of keys) {
    const sid = state.get(k);
    if (sid !== undefined) {
      const se = await ctx.cache.get(sid);
      if (se !== undefined) {
        out.set(k, se);
        continue;
      }
    }
    if (!fallBackToAuthEvents) continue;
    if (fromAuth === undefined) {
      fromAuth = new Map();
      for (const a of ctx.cache.authOf(ev.eventId)) {
        if (ctx.isRejected(a)) continue;
        const ae = await ctx.cache.get(a);
        if (ae === undefined || !isStateEvent(ae.pdu)) continue;
        const ak = keyOf(ae.pdu);
        if (!fromAuth.has(ak)) fromAuth.set(ak, ae);
      }
    }
    const ae = fromAuth.get(k);
    if (ae !== undefined) out.set(k, ae);
  }
  if (keys.length > 0 && !out.has(CREATE) && ctx.rv.roomIdFromCreateEvent) {
    const cid = createIdFromRoomId(ev);
    const ce = cid === undefined ? undefined : await ctx.cache.get(cid);
    if (ce !== undefined && ce.pdu.type === 'm.room.create') out.set(CREATE, ce);
  }
  return out;
}

/**
 * v2-state-res "Iterative auth checks": apply each state event of the sorted list to the state if the
 * authorisation rules allow it against that state; events that fail are ignored.
 */
async function iterativeAuthChecks(ctx: Ctx, state: PartialState, list: readonly string[]): Promise<void> {
  await ctx.cache.load(list);
  for (const id of list) {
    const ev = ctx.cache.peek(id);
    if (ev === undefined || !isStateEvent(ev.pdu)) continue;
    await ctx.cache.load(ctx.cache.authOf(id));
    const authState = await authStateFor(ctx, ev, state, true);
    if (checkEventAuth(ctx.rv, ev, authState).allowed) state.set(keyOf(ev.pdu), id);
  }
}

/**
 * The power level of an event's sender "when looking at [its] auth_events" (reverse topological power
 * ordering): the power levels and create event among its auth events — in room version 12 the create
 * event named by the room id, whose creators have infinite power (rooms/v12.md).
 */
async function senderPowerFromAuthEvents(ctx: Ctx, ev: IdentifiedPdu): Promise<number> {
  const state: StateMap<IdentifiedPdu> = new Map();
  if (ev.pdu.type === 'm.room.create') state.set(CREATE, ev);
  for (const a of ctx.cache.authOf(ev.eventId)) {
    const ae = await ctx.cache.get(a);
    if (ae === undefined || ae.pdu.state_key !== '') continue;
    if (ae.pdu.type === 'm.room.power_levels') state.set(POWER_LEVELS, ae);
    else if (ae.pdu.type === 'm.room.create') state.set(CREATE, ae);
  }
  if (!state.has(CREATE) && ctx.rv.roomIdFromCreateEvent) {
    const cid = createIdFromRoomId(ev);
    const ce = cid === undefined ? undefined : await ctx.cache.get(cid);
    if (ce !== undefined && ce.pdu.type === 'm.room.create') state.set(CREATE, ce);
  }
  return getUserPowerLevel(ctx.rv, state, ev.pdu.sender);
}

/**
 * v2-state-res "Reverse topological power ordering": the lexicographically smallest topological order of
 * the auth DAG over `events`, earliest first, where x < y if x's sender has the greater power level (from
 * x's auth_events), then the smaller origin_server_ts, then the smaller event id; computed with Kahn's
 * algorithm picking the smallest ready event at each step.
 *
 * The DAG is the auth_events graph restricted to `events`: y precedes x when y is reachable from x along
 * auth_events, also through events outside the set. `events` (and their auth chains) must be loaded.
 */
async function reverseTopologicalPowerOrder(ctx: Ctx, events: Set<string>): Promise<string[]> {
  const { cache } = ctx;
  // Nearest members of `events` below each outside event, memoised (post-order, iterative).
  const EMPTY: readonly string[] = [];
  const below = new Map<string, readonly string[]>();
  const onStack = new Set<string>();
  const nearestBelow = (root: string): readonly string[] => {
    const stack: Array<[string, boolean]> = [[root, false]];
    while (stack.length > 0) {
      const [id, expanded] = stack.pop()!;
      if (below.has(id)) continue;
      if (!expanded) {
        if (onStack.has(id)) continue;
        onStack.add(id);
        stack.push([id, true]);
        for (const a of cache.authOf(id)) if (!events.has(a) && !below.has(a) && !onStack.has(a)) stack.push([a, false]);
      } else {
        const out = new Set<string>();
        for (const a of cache.authOf(id)) {
          if (events.has(a)) out.add(a);
          else for (const b of below.get(a) ?? EMPTY) out.add(b);
        }
        below.set(id, out.size > 0 ? [...out] : EMPTY);
        onStack.delete(id);
      }
    }
    return below.get(root) ?? EMPTY;
  };

  const indegree = new Map<string, number>();
  const children = new Map<string, string[]>();
  for (const x of events) {
    const parents = new Set<string>();
    for (const a of cache.authOf(x)) {
      if (events.has(a)) parents.add(a);
      else for (const b of nearestBelow(a)) parents.add(b);
    }
    parents.delete(x);
    indegree.set(x, parents.size);
    for (const p of parents) {
      let c = children.get(p);
      if (c === undefined) children.set(p, (c = []));
      c.push(x);
    }
  }

  interface Item { id: string; power: number; ts: number }
  const items = new Map<string, Item>();
  for (const x of events) {
    const ev = cache.peek(x)!;
    const ts = typeof ev.pdu.origin_server_ts === 'number' ? ev.pdu.origin_server_ts : 0;
    items.set(x, { id: x, power: await senderPowerFromAuthEvents(ctx, ev), ts });
  }
  const heap = new Heap<Item>((a, b) => {
    if (a.power !== b.power) return a.power > b.power;
    if (a.ts !== b.ts) return a.ts < b.ts;
    return a.id < b.id;
  });
  for (const [x, d] of indegree) if (d === 0) heap.push(items.get(x)!);
  const out: string[] = [];
  while (heap.size > 0) {
    const { id } = heap.pop()!;
    out.push(id);
    for (const c of children.get(id) ?? []) {
      const d = indegree.get(c)! - 1;
      indegree.set(c, d);
      if (d === 0) heap.push(items.get(c)!);
    }
  }
  // Events left over sit on an auth_events cycle (impossible with hash ids); they are not ordered.
  return out;
}

/**
 * v2-state-res "Mainline ordering": the mainline of P is P and its chain of power-levels auth events;
 * an event's mainline position is the index of the first event of its own power-levels auth chain
 * (the event itself excluded) that is on the mainline, or ∞. Events sort by greater position first,
 * then smaller origin_server_ts, then smaller event id.
 */
async function mainlineOrder(ctx: Ctx, events: readonly string[], powerLevelsId: string | undefined): Promise<string[]> {
  const { cache } = ctx;
  const plAuthOf = async (id: string): Promise<string | undefined> => {
    for (const a of cache.authOf(id)) {
      const ae = await cache.get(a);
      if (ae !== undefined && ae.pdu.type === 'm.room.power_levels' && ae.pdu.state_key === '') return a;
    }
    return undefined;
  };
  const mainline = new Map<string, number>();
  for (let p = powerLevelsId, i = 0; p !== undefined && !mainline.has(p); i++) {
    mainline.set(p, i);
    await cache.load([p]);
    p = await plAuthOf(p);
  }
  const memo = new Map<string, number>(); // power-levels event → mainline position of an event citing it
  const position = async (id: string): Promise<number> => {
    await cache.load([id]);
    const walked: string[] = [];
    const seen = new Set<string>();
    let pos = Infinity;
    for (let p = await plAuthOf(id); p !== undefined && !seen.has(p); ) {
      const onMain = mainline.get(p);
      if (onMain !== undefined) { pos = onMain; break; }
      const known = memo.get(p);
      if (known !== undefined) { pos = known; break; }
      seen.add(p);
      walked.push(p);
      await cache.load([p]);
      p = await plAuthOf(p);
    }
    for (const p of walked) memo.set(p, pos);
    return pos;
  };
  const keyed: Array<{ id: string; pos: number; ts: number }> = [];
  for (const id of events) {
    const ev = await cache.get(id);
    if (ev === undefined) continue;
    const ts = typeof ev.pdu.origin_server_ts === 'number' ? ev.pdu.origin_server_ts : 0;
    keyed.push({ id, pos: await position(id), ts });
  }
  keyed.sort((a, b) => (a.pos !== b.pos ? (a.pos > b.pos ? -1 : 1) : a.ts !== b.ts ? a.ts - b.ts : compareIds(a.id, b.id)));
  return keyed.map((k) => k.id);
}

// ---------------------------------------------------------------------------------------------------
// Version 2 and 2.1.

async function resolveV2(input: StateResolutionInput, ctx: Ctx, v21: boolean): Promise<StateMap<string>> {
  const { cache } = ctx;
  const split = splitV2(input.stateSets);
  const { conflicted } = split;
  if (conflicted.size === 0) return new Map(split.base);

  // "Full conflicted set": the conflicted state set ∪ the auth difference (∪ the conflicted state
  // subgraph from room version 12 on).
  const authDiff = input.authChainDifference
    ? await input.authChainDifference(input.stateSets)
    : await computeAuthDifference(cache, split);
  const fullConflicted = new Set<string>(conflicted);
  for (const id of authDiff) fullConflicted.add(id);
  if (v21) for (const id of await conflictedStateSubgraph(cache, conflicted)) fullConflicted.add(id);
  await cache.load(fullConflicted);
  for (const id of fullConflicted) {
    const ev = cache.peek(id);
    if (ev === undefined || !isStateEvent(ev.pdu)) fullConflicted.delete(id); // unknown: cannot be resolved
  }

  // Step 1: the power events of the full conflicted set, enlarged by the events of their auth chains that
  // are in the full conflicted set, in reverse topological power ordering.
  const powerEvents: string[] = [];
  for (const id of fullConflicted) if (isPowerEvent(cache.peek(id)!.pdu)) powerEvents.push(id);
  const x = new Set(powerEvents);
  for (const id of await walkAuthEvents(cache, powerEvents)) if (fullConflicted.has(id)) x.add(id);
  const powerOrdered = await reverseTopologicalPowerOrder(ctx, x);

  // Step 2: iterative auth checks starting from the unconflicted state map (v2) or from an empty map
  // (v2.1, rooms/v12.md: the unconflicted state map only comes back in step 5).
  const partial = new PartialState(v21 ? () => undefined : (k) => unconflictedGet(split, k));
  await iterativeAuthChecks(ctx, partial, powerOrdered);

  // Step 3: the remaining events in mainline order, based on the power levels of the partial state.
  const rest: string[] = [];
  for (const id of fullConflicted) if (!x.has(id)) rest.push(id);
  const mainlineOrdered = await mainlineOrder(ctx, rest, partial.get(POWER_LEVELS));

  // Step 4: iterative auth checks on top of the partial state.
  await iterativeAuthChecks(ctx, partial, mainlineOrdered);

  // Step 5: every key of the unconflicted state map keeps its unconflicted event; the other keys take what
  // the iterative auth checks applied.
  const resolved = new Map(split.base);
  for (const k of split.conflictedKeys) resolved.delete(k);
  for (const [k, v] of partial.applied) if (unconflictedGet(split, k) === undefined) resolved.set(k, v);
  return resolved;
}

// ---------------------------------------------------------------------------------------------------
// Version 1 (room version 1).

function sha1Hex(s: string): string {
  return createHash('sha1').update(s, 'utf8').digest('hex');
}

/**
 * rooms/v1.md "State resolution". A conflict is a key with different event ids in the states (a key
 * missing from some state is not a conflict); R starts as the union of the states without conflicting
 * events. Power levels, then join rules, then each member key: sort by ascending depth then descending
 * sha1(event_id), take the first, and keep applying the next while the auth rules allow it in R, stopping at
 * the first that fails. Every other conflicted key: the event with the highest depth and lowest
 * sha1(event_id) that passes authentication in R.
 */
async function resolveV1(input: StateResolutionInput, ctx: Ctx): Promise<StateMap<string>> {
  const { cache } = ctx;
  const first = new Map<StateKey, string>();
  const conflictedKeys = new Set<StateKey>();
  for (const s of input.stateSets) {
    for (const [k, v] of s) {
      const f = first.get(k);
      if (f === undefined) first.set(k, v);
      else if (f !== v) conflictedKeys.add(k);
    }
  }
  const r: StateMap<string> = new Map();
  for (const [k, v] of first) if (!conflictedKeys.has(k)) r.set(k, v);
  if (conflictedKeys.size === 0) return r;

  const candidates = new Map<StateKey, IdentifiedPdu[]>();
  for (const k of conflictedKeys) {
    const ids = new Set<string>();
    for (const s of input.stateSets) {
      const v = s.get(k);
      if (v !== undefined) ids.add(v);
    }
    await cache.load(ids);
    const evs: IdentifiedPdu[] = [];
    for (const id of ids) {
      const ev = cache.peek(id);
      if (ev !== undefined) evs.push(ev);
    }
    candidates.set(k, evs);
  }
  const hashes = new Map<string, string>();
  const hash = (id: string): string => {
    let h = hashes.get(id);
    if (h === undefined) hashes.set(id, (h = sha1Hex(id)));
    return h;
  };
  const depth = (ev: IdentifiedPdu): number => (typeof ev.pdu.depth === 'number' ? ev.pdu.depth : 0);
  const allowedIn = async (ev: IdentifiedPdu): Promise<boolean> =>
    checkEventAuth(ctx.rv, ev, await authStateFor(ctx, ev, r, false)).allowed;

  const sortedKeys = [...conflictedKeys].sort(compareIds);
  const byType = (t: string): StateKey[] => sortedKeys.filter((k) => k.startsWith(`${t}\u0000`));
  const authKeys = [...byType('m.room.power_levels'), ...byType('m.room.join_rules'), ...byType('m.room.member')];
  for (const k of authKeys) {
    const list = [...candidates.get(k)!].sort(
      (a, b) => depth(a) - depth(b) || compareIds(hash(b.eventId), hash(a.eventId)) || compareIds(a.eventId, b.eventId),
    );
    if (list.length === 0) continue;
    r.set(k, list[0]!.eventId);
    for (const ev of list.slice(1)) {
      if (!(await allowedIn(ev))) break;
      r.set(k, ev.eventId);
    }
  }
  const done = new Set(authKeys);
  for (const k of sortedKeys) {
    if (done.has(k)) continue;
    const list = [...candidates.get(k)!].sort(
      (a, b) => depth(b) - depth(a) || compareIds(hash(a.eventId), hash(b.eventId)) || compareIds(a.eventId, b.eventId),
    );
    for (const ev of list) {
      if (await allowedIn(ev)) {
        r.set(k, ev.eventId);
        break;
      }
    }
  }
  return r;
}

// ---------------------------------------------------------------------------------------------------

/**
 * Resolves a set of room states into one, with the algorithm the room version names (`stateRes`). The
 * result is a new map (the inputs are not modified); its entries depend only on the state sets as a set,
 * its iteration order is unspecified.
 */
export async function resolveState(input: StateResolutionInput): Promise<StateMap<string>> {
  const sets = input.stateSets;
  if (sets.length === 0) return new Map();
  if (sets.length === 1) return new Map(sets[0]!);
  const isRejected = input.isRejected;
  const ctx: Ctx = {
    rv: input.roomVersion,
    cache: new EventCache((id) => input.fetchEvent(id), input.fetchEvents ? (ids) => input.fetchEvents!(ids) : undefined),
    isRejected: isRejected ? (id) => isRejected(id) : () => false,
  };
  switch (input.roomVersion.stateRes) {
    case 'v1':
      return resolveV1(input, ctx);
    case 'v2':
      return resolveV2(input, ctx, false);
    case 'v2.1':
      return resolveV2(input, ctx, true);
  }
}
