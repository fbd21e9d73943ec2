// State resolution in a big room: 10,000 joined members and a fork of two branches whose state differs in
// 100 keys (200 conflicting state events: power levels, topic, name, avatar, display names and kicks by
// several users). Resolves the two branch states with the room's algorithm (room version 12, state res
// v2.1, and room version 11, v2; the auth chain difference is computed by walking auth_events, no
// index) and prints the median.
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import type { IdentifiedPdu, JsonObject, Pdu, StateMap } from '../../spec/events.ts';
import { stateKey } from '../../spec/events.ts';
import { getRoomVersion } from '../../spec/room-versions.ts';
import type { RoomVersion } from '../../spec/room-versions.ts';
import { resolveState } from '../../spec/state-res.ts';

const MEMBERS = 10_000;
const RUNS = 9;

interface Fork {
  rv: RoomVersion;
  events: Map<string, IdentifiedPdu>;
  stateSets: StateMap<string>[];
  conflicting: number;
}

function buildFork(version: string): Fork {
  const rv = getRoomVersion(version)!;
  const events = new Map<string, IdentifiedPdu>();
  let roomId = '!bench:example.com';
  let ts = 1_700_000_000_000;
  const user = (i: number): string => (i === 0 ? '@alice:example.com' : `@u${i}:example.com`);
  const alice = user(0);

  // Appends a state event on top of `state` with the auth events "auth events selection" picks.
  const send = (state: StateMap<string>, prev: string | undefined, id: string, sender: string, type: string, sk: string, content: JsonObject): string => {
    const keys = type === 'm.room.create' ? [] : [stateKey('m.room.power_levels', ''), stateKey('m.room.member', sender)];
    if (type !== 'm.room.create' && !rv.roomIdFromCreateEvent) keys.unshift(stateKey('m.room.create', ''));
    if (type === 'm.room.member') {
      if (sk !== sender) keys.push(stateKey('m.room.member', sk));
      if (content['membership'] === 'join') keys.push(stateKey('m.room.join_rules', ''));
    }
    const auth: string[] = [];
    for (const k of keys) {
      const a = state.get(k);
      if (a !== undefined) auth.push(a);
    }
    const pdu: Pdu = {
      sender,
      type,
      state_key: sk,
      content,
      origin_server_ts: ts++,
      prev_events: prev === undefined ? [] : [prev],
      auth_events: auth,
      depth: prev === undefined ? 1 : events.get(prev)!.pdu.depth + 1,
    };
    if (type === 'm.room.create' && rv.roomIdFromCreateEvent) roomId = `!${id.slice(1)}`;
    else pdu.room_id = roomId;
    events.set(id, { eventId: id, pdu });
    state.set(stateKey(type, sk), id);
    return id;
  };

  const base: StateMap<string> = new Map();
  const mods: JsonObject = {};
  for (let i = 1; i <= 5; i++) mods[user(i)] = 50;
  let last = send(base, undefined, '$create', alice, 'm.room.create', '', rv.implicitRoomCreator ? { room_version: version } : { room_version: version, creator: alice });
  last = send(base, last, '$join-0', alice, 'm.room.member', alice, { membership: 'join' });
  const usersWithAlice = rv.privilegedCreators ? mods : { ...mods, [alice]: 100 };
  last = send(base, last, '$pl-0', alice, 'm.room.power_levels', '', { users: usersWithAlice, state_default: 50 });
  last = send(base, last, '$join-rules', alice, 'm.room.join_rules', '', { join_rule: 'public' });
  for (let i = 1; i < MEMBERS; i++) {
    last = send(base, last, `$join-${i}`, user(i), 'm.room.member', user(i), { membership: 'join', displayname: `user ${i}` });
  }

  // Two branches from the same point; within each, events chain through prev_events.
  const a = new Map(base);
  const b = new Map(base);
  let lastA = last;
  let lastB = last;
  lastA = send(a, lastA, '$a-pl', alice, 'm.room.power_levels', '', { users: { ...usersWithAlice, [user(6)]: 50 }, state_default: 50 });
  lastB = send(b, lastB, '$b-pl', alice, 'm.room.power_levels', '', { users: { ...usersWithAlice, [user(7)]: 50 }, state_default: 50, events_default: 0 });
  const stateTypes: Array<[string, string, JsonObject, JsonObject]> = [
    ['m.room.topic', 'topic', { topic: 'branch A' }, { topic: 'branch B' }],
    ['m.room.name', 'name', { name: 'Room A' }, { name: 'Room B' }],
    ['m.room.avatar', 'avatar', { url: 'mxc://example.com/a' }, { url: 'mxc://example.com/b' }],
  ];
  stateTypes.forEach(([type, short, ca, cb], i) => {
    lastA = send(a, lastA, `$a-${short}`, user(1 + i), type, '', ca);
    lastB = send(b, lastB, `$b-${short}`, user(3 + i), type, '', cb);
  });
  for (let i = 0; i < 96; i++) {
    const target = user(100 + i * 97); // spread over the member list
    lastA = send(a, lastA, `$a-rename-${i}`, target, 'm.room.member', target, { membership: 'join', displayname: `A ${i}` });
    if (i % 24 === 23) lastB = send(b, lastB, `$b-kick-${i}`, alice, 'm.room.member', target, { membership: 'leave' });
    else lastB = send(b, lastB, `$b-rename-${i}`, target, 'm.room.member', target, { membership: 'join', displayname: `B ${i}` });
  }
  void lastA;
  void lastB;

  let conflicting = 0;
  for (const [k, v] of a) if (b.get(k) !== v) conflicting += 2;
  return { rv, events, stateSets: [a, b], conflicting };
}

export default async function bench(): Promise<void> {
  // Room version 12 (state res v2.1, the default room version) and 11 (v2).
  for (const version of ['12', '11']) {
    const fork = buildFork(version);
    const fetchEvent = async (id: string): Promise<IdentifiedPdu | undefined> => fork.events.get(id);
    // As the homeserver passes it (RoomWriter.resolve: one cache/database lookup per batch).
    const fetchEvents = async (ids: string[]): Promise<Map<string, IdentifiedPdu>> => {
      const out = new Map<string, IdentifiedPdu>();
      for (const id of ids) {
        const e = fork.events.get(id);
        if (e) out.set(id, e);
      }
      return out;
    };
    const times: number[] = [];
    let size = 0;
    for (let r = 0; r < 2; r++) await resolveState({ roomVersion: fork.rv, stateSets: fork.stateSets, fetchEvent, fetchEvents }); // warm-up
    for (let r = 0; r < RUNS; r++) {
      const t0 = performance.now();
      const resolved = await resolveState({ roomVersion: fork.rv, stateSets: fork.stateSets, fetchEvent, fetchEvents });
      times.push(performance.now() - t0);
      size = resolved.size;
    }
    times.sort((x, y) => x - y);
    const median = times[Math.floor(times.length / 2)]!;
    console.log(`room version ${fork.rv.id} (state res ${fork.rv.stateRes}), ${fork.events.size} events, resolved state: ${size} entries, median of ${RUNS} runs after 2 warm-up runs`);
    console.log(`state-res v${fork.rv.id}: ${MEMBERS.toLocaleString('en-US')} members, ${fork.conflicting} conflicting: ${Math.round(median)} ms (target < 100 ms)`);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await bench();
