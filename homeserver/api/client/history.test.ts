// /messages, /context, /timestamp_to_event and history visibility, over HTTP.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../../testing.ts';
import { Client, enc, newClient } from './rooms-testkit.ts';

let s: TestServer;
let alice: Client;
let bob: Client;
let carol: Client;

before(async () => {
  s = await startTestServer();
  alice = await newClient(s, 'alice');
  bob = await newClient(s, 'bob');
  carol = await newClient(s, 'carol');
});
after(async () => {
  await s.stop();
});

const bodies = (chunk: any[]) => chunk.filter((e) => e.type === 'm.room.message').map((e) => e.content.body);

async function setVisibility(c: Client, roomId: string, v: string): Promise<void> {
  await c.ok('PUT', `/rooms/${enc(roomId)}/state/m.room.history_visibility/`, { history_visibility: v });
}

async function join(c: Client, roomId: string): Promise<void> {
  await c.ok('POST', `/join/${enc(roomId)}`, {});
}

test('/messages pages backwards and forwards through the whole room', async () => {
  const roomId = await alice.createRoom({ preset: 'private_chat' });
  for (let i = 0; i < 25; i++) await alice.send(roomId, { msgtype: 'm.text', body: `m${i}` });
  const seen: string[] = [];
  let from: string | undefined;
  let pages = 0;
  for (;;) {
    const q = new URLSearchParams({ dir: 'b', limit: '7', ...(from ? { from } : {}) });
    const r = await alice.ok('GET', `/rooms/${enc(roomId)}/messages?${q}`);
    assert.equal(typeof r.start, 'string');
    seen.push(...bodies(r.chunk));
    pages++;
    if (!r.end) break;
    from = r.end;
    assert.ok(pages < 20, 'pagination ends');
  }
  assert.deepEqual(seen, Array.from({ length: 25 }, (_, i) => `m${24 - i}`));
  // The room's creation is the last thing backwards.
  const first = await alice.ok('GET', `/rooms/${enc(roomId)}/messages?dir=f&limit=3`);
  assert.equal(first.chunk[0].type, 'm.room.create');
  // Forwards from there, a page at a time, reaches the newest message.
  let fwd = first.end as string;
  const forward: string[] = [];
  for (let i = 0; i < 20; i++) {
    const r = await alice.ok('GET', `/rooms/${enc(roomId)}/messages?dir=f&limit=10&from=${enc(fwd)}`);
    forward.push(...bodies(r.chunk));
    if (r.chunk.length === 0 || !r.end) break;
    fwd = r.end;
  }
  assert.deepEqual(forward, Array.from({ length: 25 }, (_, i) => `m${i}`));
});

test('/messages: to, filters and lazy-loaded members', async () => {
  const roomId = await alice.createRoom({ preset: 'public_chat' });
  await join(bob, roomId);
  await alice.send(roomId, { msgtype: 'm.text', body: 'a1' });
  await bob.send(roomId, { msgtype: 'm.text', body: 'b1' });
  await alice.ok('PUT', `/rooms/${enc(roomId)}/send/m.custom.thing/t1`, { x: 1 });
  await alice.send(roomId, { msgtype: 'm.text', body: 'a2' });
  const filter = JSON.stringify({ types: ['m.room.message'], senders: [bob.userId], lazy_load_members: true });
  const r = await alice.ok('GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=10&filter=${enc(filter)}`);
  assert.deepEqual(bodies(r.chunk), ['b1']);
  assert.deepEqual(r.state.map((e: any) => e.state_key), [bob.userId]);
  const wildcard = JSON.stringify({ not_types: ['m.room.*'] });
  const w = await alice.ok('GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=10&filter=${enc(wildcard)}`);
  assert.deepEqual(w.chunk.map((e: any) => e.type), ['m.custom.thing']);
  const bad = await alice.call('GET', `/rooms/${enc(roomId)}/messages?dir=b&filter=${enc('{"types": 3}')}`);
  assert.equal(bad.status, 400);
  const noDir = await alice.call('GET', `/rooms/${enc(roomId)}/messages`);
  assert.equal(noDir.status, 400);
  // `to` stops the page: from the end back to the token after b1 returns a2 and the custom event only.
  const page = await alice.ok('GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=2`);
  const rest = await alice.ok('GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=50&from=${enc(page.end)}&to=${enc(page.end)}`);
  assert.equal(rest.chunk.length, 0);
  const badToken = await alice.call('GET', `/rooms/${enc(roomId)}/messages?dir=b&from=nonsense`);
  assert.equal(badToken.status, 400);
});

test('a late joiner of a `joined` room cannot page back before their join; of a `shared` room they can', async () => {
  for (const visibility of ['joined', 'shared', 'invited'] as const) {
    const roomId = await alice.createRoom({ preset: 'public_chat' });
    await setVisibility(alice, roomId, visibility);
    await alice.send(roomId, { msgtype: 'm.text', body: 'before invite' });
    await alice.ok('POST', `/rooms/${enc(roomId)}/invite`, { user_id: bob.userId });
    await alice.send(roomId, { msgtype: 'm.text', body: 'while invited' });
    await join(bob, roomId);
    await alice.send(roomId, { msgtype: 'm.text', body: 'after join' });
    const r = await bob.ok('GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=100`);
    const expected = { joined: ['after join'], invited: ['after join', 'while invited'], shared: ['after join', 'while invited', 'before invite'] }[visibility];
    assert.deepEqual(bodies(r.chunk), expected, visibility);
    // Their own join is always visible to them.
    assert.ok(r.chunk.some((e: any) => e.type === 'm.room.member' && e.state_key === bob.userId && e.content.membership === 'join'));
    // And /context, /event on an earlier message: 404.
    const early = (await alice.ok('GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=100`)).chunk.find((e: any) => e.content.body === 'before invite');
    const ctx = await bob.call('GET', `/rooms/${enc(roomId)}/context/${enc(early.event_id)}`);
    const ev = await bob.call('GET', `/rooms/${enc(roomId)}/event/${enc(early.event_id)}`);
    if (visibility === 'shared') {
      assert.equal(ctx.status, 200);
      assert.equal(ev.status, 200);
    } else {
      assert.equal(ctx.status, 404, `context ${visibility}`);
      assert.equal(ev.status, 404, `event ${visibility}`);
    }
  }
});

test('a non-member gets M_FORBIDDEN on /messages, /context and /members of a private room, and 404 on /event', async () => {
  const roomId = await alice.createRoom({ preset: 'private_chat' });
  const eventId = await alice.send(roomId, { msgtype: 'm.text', body: 'secret' });
  for (const path of [
    `/rooms/${enc(roomId)}/messages?dir=b`,
    `/rooms/${enc(roomId)}/context/${enc(eventId)}`,
    `/rooms/${enc(roomId)}/members`,
    `/rooms/${enc(roomId)}/joined_members`,
    `/rooms/${enc(roomId)}/state`,
  ]) {
    const r = await carol.call('GET', path);
    assert.equal(r.status, 403, path);
    assert.equal(r.body.errcode, 'M_FORBIDDEN', path);
  }
  // GET /event is the exception: rooms.yaml answers 404 M_NOT_FOUND both for unknown events and for events
  // the user may not read, so the response does not reveal that the event exists.
  const ev = await carol.call('GET', `/rooms/${enc(roomId)}/event/${enc(eventId)}`);
  assert.equal(ev.status, 404);
  assert.equal(ev.body.errcode, 'M_NOT_FOUND');
  const ts = await fetch(`${s.baseUrl}/_matrix/client/v1/rooms/${enc(roomId)}/timestamp_to_event?ts=0&dir=f`, { headers: { authorization: `Bearer ${carol.user.accessToken}` } });
  assert.equal(ts.status, 403);
  // An unknown room looks the same.
  const unknown = await carol.call('GET', `/rooms/${enc('!nope:localhost')}/messages?dir=b`);
  assert.equal(unknown.status, 403);
});

test('a member who left sees history up to their leave only; world_readable rooms can be read without joining', async () => {
  const roomId = await alice.createRoom({ preset: 'public_chat' });
  await join(bob, roomId);
  await alice.send(roomId, { msgtype: 'm.text', body: 'while bob was here' });
  await bob.ok('POST', `/rooms/${enc(roomId)}/leave`, {});
  await alice.send(roomId, { msgtype: 'm.text', body: 'after bob left' });
  const r = await bob.ok('GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=50`);
  assert.deepEqual(bodies(r.chunk), ['while bob was here']);

  await setVisibility(alice, roomId, 'world_readable');
  await alice.send(roomId, { msgtype: 'm.text', body: 'for everyone' });
  const peek = await carol.ok('GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=50`);
  assert.deepEqual(bodies(peek.chunk), ['for everyone']);
  const members = await carol.ok('GET', `/rooms/${enc(roomId)}/members`);
  assert.ok(members.chunk.some((e: any) => e.state_key === alice.userId));
});

test('/context returns events around the event, state, and tokens /messages continues from', async () => {
  const roomId = await alice.createRoom({ preset: 'private_chat', name: 'Context room' });
  const ids: string[] = [];
  for (let i = 0; i < 12; i++) ids.push(await alice.send(roomId, { msgtype: 'm.text', body: `c${i}` }));
  const r = await alice.ok('GET', `/rooms/${enc(roomId)}/context/${enc(ids[6]!)}?limit=4`);
  assert.equal(r.event.event_id, ids[6]);
  assert.deepEqual(bodies(r.events_before), ['c5', 'c4']);
  assert.deepEqual(bodies(r.events_after), ['c7', 'c8']);
  assert.ok(r.state.some((e: any) => e.type === 'm.room.name' && e.content.name === 'Context room'));
  const back = await alice.ok('GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=2&from=${enc(r.start)}`);
  assert.deepEqual(bodies(back.chunk), ['c3', 'c2']);
  const fwd = await alice.ok('GET', `/rooms/${enc(roomId)}/messages?dir=f&limit=2&from=${enc(r.end)}`);
  assert.deepEqual(bodies(fwd.chunk), ['c9', 'c10']);
  const missing = await alice.call('GET', `/rooms/${enc(roomId)}/context/${enc('$nope')}`);
  assert.equal(missing.status, 404);
});

test('/timestamp_to_event finds the closest event in each direction', async () => {
  const roomId = await alice.createRoom({ preset: 'private_chat' });
  const a = await alice.send(roomId, { msgtype: 'm.text', body: 'x' });
  const ev = await alice.ok('GET', `/rooms/${enc(roomId)}/event/${enc(a)}`);
  const v1 = async (q: string) =>
    fetch(`${s.baseUrl}/_matrix/client/v1/rooms/${enc(roomId)}/timestamp_to_event?${q}`, { headers: { authorization: `Bearer ${alice.user.accessToken}` } });
  const later = await v1(`ts=${ev.origin_server_ts + 60_000}&dir=b`);
  assert.equal(later.status, 200);
  const body = (await later.json()) as any;
  assert.equal(body.event_id, a);
  assert.equal(body.origin_server_ts, ev.origin_server_ts);
  const none = await v1(`ts=${ev.origin_server_ts + 60_000}&dir=f`);
  assert.equal(none.status, 404);
  const first = (await (await v1('ts=0&dir=f')).json()) as any;
  const created = await alice.ok('GET', `/rooms/${enc(roomId)}/messages?dir=f&limit=1`);
  assert.equal(first.event_id, created.chunk[0].event_id);
  assert.equal((await v1('ts=abc&dir=f')).status, 400);
});

test('/messages accepts /sync tokens', async () => {
  const roomId = await alice.createRoom({ preset: 'private_chat' });
  for (let i = 0; i < 5; i++) await alice.send(roomId, { msgtype: 'm.text', body: `s${i}` });
  const filter = JSON.stringify({ room: { timeline: { limit: 2 } } });
  const sync = await alice.ok('GET', `/sync?filter=${enc(filter)}`);
  const room = sync.rooms.join[roomId];
  assert.deepEqual(bodies(room.timeline.events), ['s3', 's4']);
  const r = await alice.ok('GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=2&from=${enc(room.timeline.prev_batch)}`);
  assert.deepEqual(bodies(r.chunk), ['s2', 's1']);
  const fromNext = await alice.ok('GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=1&from=${enc(sync.next_batch)}`);
  assert.deepEqual(bodies(fromNext.chunk), ['s4']);
});

test('sync timelines apply history visibility: a late joiner of a `joined` room gets nothing from before their join', async () => {
  const filter = enc(JSON.stringify({ room: { timeline: { limit: 20 } } }));
  for (const visibility of ['joined', 'shared'] as const) {
    const dave = await newClient(s, `dave_${visibility}`);
    const roomId = await alice.createRoom({ preset: 'public_chat' });
    await setVisibility(alice, roomId, visibility);
    // Dave's incremental sync starts before the message, so the new room's range covers it.
    const before = await dave.ok('GET', `/sync?filter=${filter}&timeout=0`);
    await alice.send(roomId, { msgtype: 'm.text', body: 'before dave' });
    await join(dave, roomId);
    await alice.send(roomId, { msgtype: 'm.text', body: 'after dave' });
    const expected = visibility === 'joined' ? ['after dave'] : ['before dave', 'after dave'];
    const incremental = await dave.ok('GET', `/sync?filter=${filter}&timeout=0&since=${enc(before.next_batch)}`);
    assert.deepEqual(bodies(incremental.rooms.join[roomId].timeline.events), expected, `incremental, ${visibility}`);
    const initial = await dave.ok('GET', `/sync?filter=${filter}&timeout=0`);
    assert.deepEqual(bodies(initial.rooms.join[roomId].timeline.events), expected, `initial, ${visibility}`);
    assert.ok(initial.rooms.join[roomId].timeline.events.some((e: any) => e.type === 'm.room.member' && e.state_key === dave.userId), 'their own join');
  }
});

test('/members at a token, with membership and not_membership; /joined_members and /joined_rooms', async () => {
  const roomId = await alice.createRoom({ preset: 'public_chat' });
  const early = await alice.ok('GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=1`);
  await join(bob, roomId);
  await alice.ok('POST', `/rooms/${enc(roomId)}/invite`, { user_id: carol.userId });
  const members = async (q: string) =>
    (await alice.ok('GET', `/rooms/${enc(roomId)}/members${q}`)).chunk.map((e: any) => `${e.state_key}:${e.content.membership}`).sort();
  assert.deepEqual(await members(''), [`${alice.userId}:join`, `${bob.userId}:join`, `${carol.userId}:invite`].sort());
  assert.deepEqual(await members('?membership=invite'), [`${carol.userId}:invite`]);
  assert.deepEqual(await members('?not_membership=invite'), [`${alice.userId}:join`, `${bob.userId}:join`].sort());
  // At a token from before bob joined, only alice was there.
  assert.deepEqual(await members(`?at=${enc(early.start)}`), [`${alice.userId}:join`]);
  assert.equal((await alice.call('GET', `/rooms/${enc(roomId)}/members?at=garbage`)).status, 400);
  // History visibility: in a `joined` room, a late joiner gets nothing from a token before their join.
  const closed = await alice.createRoom({ preset: 'public_chat' });
  await alice.ok('PUT', `/rooms/${enc(closed)}/state/m.room.history_visibility`, { history_visibility: 'joined' });
  await join(bob, closed);
  const before = await alice.ok('GET', `/rooms/${enc(closed)}/messages?dir=b&limit=1`);
  const dave = await newClient(s, 'dave_members_at');
  await join(dave, closed);
  const late = async (q: string) => (await dave.ok('GET', `/rooms/${enc(closed)}/members${q}`)).chunk.length;
  assert.equal(await late(`?at=${enc(before.start)}`), 0);
  assert.equal(await late(''), 3);
  assert.equal((await alice.ok('GET', `/rooms/${enc(closed)}/members?at=${enc(before.start)}`)).chunk.length, 2);
  const joined = await bob.ok('GET', `/rooms/${enc(roomId)}/joined_members`);
  assert.deepEqual(Object.keys(joined.joined).sort(), [alice.userId, bob.userId].sort());
  assert.ok((await bob.ok('GET', '/joined_rooms')).joined_rooms.includes(roomId));
  assert.ok(!(await carol.ok('GET', '/joined_rooms')).joined_rooms.includes(roomId), 'an invite is not a join');
});
