// State groups: chains of deltas resolve to the same state as a full snapshot, deltas are capped, and
// the store reads back (from the database) exactly what it planned. Also the auth chain index: its
// auth chain difference equals the one computed by walking auth events.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { stateKey, type StateMap } from '../../spec/events.ts';
import { openDatabase } from './database.ts';
import { MAX_DELTA_DEPTH, StateGroupStore, diffStates, stateFromChain, type GroupLink } from './state-groups.ts';
import { assignChainPosition, differenceRanges, setReach, type AuthEventPosition, type ChainPosition } from './auth-chain-index.ts';

function randomStates(n: number, seed: number): StateMap<string>[] {
  let x = seed;
  const rnd = () => ((x = (x * 1103515245 + 12345) % 2147483648) / 2147483648);
  const out: StateMap<string>[] = [];
  let cur: StateMap<string> = new Map([[stateKey('m.room.create', ''), '$create']]);
  for (let i = 0; i < n; i++) {
    cur = new Map(cur);
    const k = stateKey(rnd() < 0.5 ? 'm.room.member' : 'org.example', `@u${Math.floor(rnd() * 20)}:x`);
    if (rnd() < 0.1 && cur.size > 1) cur.delete([...cur.keys()][1 + Math.floor(rnd() * (cur.size - 1))]!);
    else cur.set(k, `$e${i}`);
    out.push(cur);
  }
  return out;
}

test('a chain of deltas resolves to the same state as the snapshot', () => {
  const states = randomStates(300, 7);
  const chain: GroupLink[] = [{ groupId: 'g0', prevGroup: null, entries: new Map(states[0]!) }];
  for (let i = 1; i < states.length; i++) {
    chain.unshift({ groupId: `g${i}`, prevGroup: `g${i - 1}`, entries: diffStates(states[i - 1]!, states[i]!) });
    assert.deepEqual(stateFromChain(chain), states[i]);
  }
});

test('the store writes deltas, caps chains, and reads back what it planned', async () => {
  const database = await openDatabase({ logger: pino({ level: 'silent' }) });
  try {
    const store = new StateGroupStore(database.db);
    const states = randomStates(250, 11);
    let prev: { id: string; depth: number; state: StateMap<string> } | null = null;
    const planned: Array<{ id: string; state: StateMap<string>; delta: boolean }> = [];
    for (let i = 0; i < states.length; i++) {
      const g = store.plan(`$g${i}`, '!r:x', prev?.id ?? null, prev?.state ?? null, prev?.depth ?? 0, states[i]!);
      assert.ok(g.deltaDepth < MAX_DELTA_DEPTH);
      if (prev && g.prevGroup !== null) assert.ok(g.entries.size <= 2, 'a delta holds only the change');
      await database.db.transaction().execute((tx) => store.insert(tx, [g]));
      planned.push({ id: g.groupId, state: states[i]!, delta: g.prevGroup !== null });
      prev = { id: g.groupId, depth: g.deltaDepth, state: states[i]! };
    }
    assert.ok(planned.filter((p) => !p.delta).length >= 3, 'snapshots every MAX_DELTA_DEPTH groups');
    const rows = Number((await database.db.selectFrom('state_group_entries').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n);
    const full = states.reduce((n, s) => n + s.size, 0);
    assert.ok(rows < full / 4, `deltas store far fewer rows (${rows}) than snapshots would (${full})`);
    const fresh = new StateGroupStore(database.db); // no cache: reads from the database
    for (const p of planned) assert.deepEqual((await fresh.get(p.id)).state, p.state, p.id);
  } finally {
    await database.close();
  }
});

// A small auth DAG: create, a power-levels chain, members; compare the index with a walk.
interface Ev {
  id: string;
  type: string;
  sk: string;
  auth: string[];
}
function authChainOf(events: Map<string, Ev>, ids: Iterable<string>): Set<string> {
  const seen = new Set<string>();
  const stack = [...ids].flatMap((id) => events.get(id)!.auth);
  while (stack.length) {
    const a = stack.pop()!;
    if (seen.has(a)) continue;
    seen.add(a);
    stack.push(...events.get(a)!.auth);
  }
  return seen;
}

test('auth chain index: difference equals the walked auth chain difference on a forked DAG', () => {
  const events = new Map<string, Ev>();
  const pos = new Map<string, ChainPosition>();
  const tips = new Map<string, number>();
  const add = (id: string, type: string, sk: string, auth: string[]) => {
    const e = { id, type, sk, auth };
    events.set(id, e);
    const ap: AuthEventPosition[] = auth.map((a) => ({ ...pos.get(a)!, type: events.get(a)!.type, stateKey: events.get(a)!.sk }));
    const p = assignChainPosition(id, type, sk, ap, (c, s) => (tips.get(c) ?? 0) === s);
    tips.set(p.chainId, p.seq);
    pos.set(id, p);
  };
  add('C', 'm.room.create', '', []);
  add('A1', 'm.room.member', '@a', ['C']);
  add('P1', 'm.room.power_levels', '', ['C', 'A1']);
  add('J1', 'm.room.join_rules', '', ['C', 'A1', 'P1']);
  add('B1', 'm.room.member', '@b', ['C', 'P1', 'J1']);
  // Fork: two power-level changes from P1 (the second cannot continue P1's chain: P2a took it).
  add('P2a', 'm.room.power_levels', '', ['C', 'A1', 'P1']);
  add('P2b', 'm.room.power_levels', '', ['C', 'A1', 'P1']);
  add('B2', 'm.room.member', '@b', ['C', 'P2a', 'J1', 'B1']);
  add('P3b', 'm.room.power_levels', '', ['C', 'A1', 'P2b']);
  add('D1', 'm.room.member', '@d', ['C', 'P3b', 'J1']);
  const sets: StateMap<string>[] = [
    new Map([['c', 'C'], ['a', 'A1'], ['p', 'P2a'], ['j', 'J1'], ['b', 'B2']]),
    new Map([['c', 'C'], ['a', 'A1'], ['p', 'P3b'], ['j', 'J1'], ['b', 'B1'], ['d', 'D1']]),
  ];
  const chains = sets.map((s) => authChainOf(events, s.values()));
  const union = new Set(chains.flatMap((c) => [...c]));
  const expected = new Set([...union].filter((x) => !chains.every((c) => c.has(x))));
  const ranges = differenceRanges(sets.map((s) => setReach([...s.values()].map((id) => pos.get(id)!))));
  const got = new Set<string>();
  for (const [id, p] of pos) {
    const r = ranges.get(p.chainId);
    if (r && p.seq > r[0] && p.seq <= r[1]) got.add(id);
  }
  assert.deepEqual([...got].sort(), [...expected].sort());
  assert.ok(expected.size > 0);
  // And each event's own auth chain is exactly its prefixes.
  for (const [id] of events) {
    const walked = authChainOf(events, [id]);
    const reach = setReach([pos.get(id)!]);
    const fromIndex = new Set([...pos].filter(([, p]) => p.seq <= (reach.get(p.chainId) ?? 0)).map(([x]) => x));
    assert.deepEqual([...fromIndex].sort(), [...walked].sort(), id);
  }
});
