// /sync and its live signals over HTTP against a real server: sections, timelines and gaps, long-poll
// wake-ups, typing, receipts and unread counts, read markers, presence visibility, invites, leaves,
// filters, lazy-loaded members, and the token safety property with a delayed commit.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../testing.ts';
import { TestUser, type Json } from './test-client.ts';

let server: TestServer;
let n = 0;
const user = (name: string) => TestUser.register(server.baseUrl, `${name}${++n}`);
const enc = encodeURIComponent;

before(async () => {
  server = await startTestServer();
});
after(async () => {
  await server?.stop();
});

function joined(s: Json, roomId: string): Json | undefined {
  return s.rooms?.join?.[roomId];
}
function bodies(room: Json | undefined): string[] {
  return (room?.timeline?.events ?? []).filter((e: Json) => e.type === 'm.room.message').map((e: Json) => e.content.body);
}
/** Syncs from `since` until `pred` holds for a response (long-polls; fails after a few rounds). */
async function syncUntil(u: TestUser, since: string, pred: (s: Json) => boolean, params: Record<string, unknown> = {}): Promise<Json> {
  let token = since;
  for (let i = 0; i < 20; i++) {
    const s = await u.sync({ since: token, timeout: 2000, ...(params as Record<string, string>) });
    if (pred(s)) return s;
    token = s.next_batch;
  }
  throw new Error('condition not reached');
}

describe('sync', () => {
  test('initial sync: joined room with state, ordered timeline and summary; then incremental', async () => {
    const alice = await user('alice');
    const bob = await user('bob');
    const roomId = await alice.createRoom({ preset: 'public_chat', name: 'Garden' });
    await bob.join(roomId);
    for (const b of ['one', 'two', 'three']) await alice.send(roomId, b);

    const s = await bob.sync();
    assert.equal(typeof s.next_batch, 'string');
    const room = joined(s, roomId)!;
    assert.ok(room, 'room in join section');
    assert.deepEqual(bodies(room), ['one', 'two', 'three']);
    const types = [...room.state.events, ...room.timeline.events].map((e: Json) => e.type);
    for (const t of ['m.room.create', 'm.room.name', 'm.room.power_levels', 'm.room.member']) assert.ok(types.includes(t), `has ${t}`);
    assert.equal(room.summary['m.joined_member_count'], 2);
    assert.deepEqual(room.summary['m.heroes'], [alice.id]);
    assert.ok(room.timeline.events.every((e: Json) => e.room_id === undefined), 'sync format has no room_id');
    assert.ok(s.account_data.events.some((e: Json) => e.type === 'm.push_rules'), 'push rules in account data');

    // Nothing new: an immediate incremental sync is empty.
    const empty = await bob.sync({ since: s.next_batch });
    assert.equal(joined(empty, roomId), undefined);

    await alice.send(roomId, 'four');
    const inc = await bob.sync({ since: s.next_batch });
    assert.deepEqual(bodies(joined(inc, roomId)), ['four']);
    assert.equal(joined(inc, roomId)!.timeline.limited, false);
    assert.deepEqual(joined(inc, roomId)!.state.events, []);
  });

  test('long-poll returns when a message arrives, and transaction ids reach the sender', async () => {
    const alice = await user('alice');
    const bob = await user('bob');
    const roomId = await alice.createRoom({ preset: 'public_chat' });
    await bob.join(roomId);
    const s0 = await bob.sync();
    const a0 = await alice.sync();
    const waiting = bob.sync({ since: s0.next_batch, timeout: 20_000 });
    const aliceWaiting = alice.sync({ since: a0.next_batch, timeout: 20_000 });
    await alice.ok('PUT', `/rooms/${enc(roomId)}/send/m.room.message/txn-42`, { msgtype: 'm.text', body: 'ping' });
    const s1 = await waiting;
    assert.deepEqual(bodies(joined(s1, roomId)), ['ping']);
    const a1 = await aliceWaiting;
    const mine = joined(a1, roomId)!.timeline.events.find((e: Json) => e.content.body === 'ping');
    assert.equal(mine.unsigned.transaction_id, 'txn-42');
    assert.equal(joined(s1, roomId)!.timeline.events[0].unsigned.transaction_id, undefined);
  });

  test('a long-poll coming back with the token just returned: a message sent between the two requests, or a join made elsewhere, is not missed', async () => {
    const alice = await user('alice');
    const bob = await user('bob');
    const roomId = await alice.createRoom({ preset: 'public_chat' });
    await bob.join(roomId);
    const b0 = await bob.sync();
    // A long-poll answered by a message; its waiter is kept for the next request with its token.
    const waiting = bob.sync({ since: b0.next_batch, timeout: 20_000 });
    await alice.send(roomId, 'one');
    const b1 = await waiting;
    assert.deepEqual(bodies(joined(b1, roomId)), ['one']);
    // A message between the answer and the next request: the next request returns it at once.
    await alice.send(roomId, 'two');
    const t = Date.now();
    const b2 = await bob.sync({ since: b1.next_batch, timeout: 20_000 });
    assert.deepEqual(bodies(joined(b2, roomId)), ['two']);
    assert.ok(Date.now() - t < 15_000);
    // The same token again after a quiet answer (timeout): the kept waiter of a timed-out poll.
    const b3 = await bob.sync({ since: b2.next_batch, timeout: 200 });
    assert.equal(joined(b3, roomId), undefined);
    // Bob joins a new room from another request, then long-polls with the token: its messages reach him.
    const other = await alice.createRoom({ preset: 'public_chat' });
    await bob.join(other);
    const waiting2 = syncUntil(bob, b3.next_batch, (s) => bodies(joined(s, other)).includes('three'));
    await new Promise((r) => setTimeout(r, 100));
    await alice.send(other, 'three');
    const b4 = await waiting2;
    assert.deepEqual(bodies(joined(b4, other)), ['three']);
  });

  test('limited timeline with prev_batch; state delta over the gap', async () => {
    const alice = await user('alice');
    const bob = await user('bob');
    const roomId = await alice.createRoom({ preset: 'public_chat' });
    await bob.join(roomId);
    const filter = { room: { timeline: { limit: 2 } } };
    const s0 = await bob.sync({ filter });
    await alice.ok('PUT', `/rooms/${enc(roomId)}/state/m.room.topic/`, { topic: 'gap topic' });
    for (const b of ['a', 'b', 'c', 'd']) await alice.send(roomId, b);
    const s1 = await bob.sync({ since: s0.next_batch, filter });
    const room = joined(s1, roomId)!;
    assert.deepEqual(bodies(room), ['c', 'd']);
    assert.equal(room.timeline.limited, true);
    assert.match(room.timeline.prev_batch, /^s1~events\.\d+$/);
    assert.ok(room.state.events.some((e: Json) => e.type === 'm.room.topic' && e.content.topic === 'gap topic'), 'topic change in the gap is in state');
  });

  test('typing starts and stops', async () => {
    const alice = await user('alice');
    const bob = await user('bob');
    const roomId = await alice.createRoom({ preset: 'public_chat' });
    await bob.join(roomId);
    const s0 = await bob.sync();
    await alice.ok('PUT', `/rooms/${enc(roomId)}/typing/${enc(alice.id)}`, { typing: true, timeout: 30_000 });
    const typingOf = (s: Json) => joined(s, roomId)?.ephemeral.events.find((e: Json) => e.type === 'm.typing')?.content.user_ids;
    const s1 = await syncUntil(bob, s0.next_batch, (s) => typingOf(s) !== undefined);
    assert.deepEqual(typingOf(s1), [alice.id]);
    await alice.ok('PUT', `/rooms/${enc(roomId)}/typing/${enc(alice.id)}`, { typing: false });
    const s2 = await syncUntil(bob, s1.next_batch, (s) => typingOf(s) !== undefined);
    assert.deepEqual(typingOf(s2), []);
    // Someone else's typing state and rooms one is not in are refused.
    assert.equal((await bob.call('PUT', `/rooms/${enc(roomId)}/typing/${enc(alice.id)}`, { typing: true })).status, 403);
    const carol = await user('carol');
    assert.equal((await carol.call('PUT', `/rooms/${enc(roomId)}/typing/${enc(carol.id)}`, { typing: true })).status, 403);
  });

  test('typing expires after its timeout', async () => {
    const alice = await user('alice');
    const roomId = await alice.createRoom({});
    const s0 = await alice.sync();
    await alice.ok('PUT', `/rooms/${enc(roomId)}/typing/${enc(alice.id)}`, { typing: true, timeout: 50 });
    const typingOf = (s: Json) => joined(s, roomId)?.ephemeral.events.find((e: Json) => e.type === 'm.typing')?.content.user_ids;
    const s1 = await syncUntil(alice, s0.next_batch, (s) => typingOf(s) !== undefined);
    const s2 = typingOf(s1).length === 0 ? s1 : await syncUntil(alice, s1.next_batch, (s) => typingOf(s) !== undefined);
    assert.deepEqual(typingOf(s2), []);
  });

  test('m.read moves and resets unread counts; m.read.private is seen only by its owner', async () => {
    const alice = await user('alice');
    const bob = await user('bob');
    const roomId = await alice.createRoom({ preset: 'private_chat', invite: [bob.id] });
    await bob.join(roomId);
    const e1 = await alice.send(roomId, 'first');
    const e2 = await alice.send(roomId, 'second');
    const b0 = await bob.sync();
    assert.deepEqual(joined(b0, roomId)!.unread_notifications, { notification_count: 2, highlight_count: 0 });

    const a0 = await alice.sync();
    await bob.ok('POST', `/rooms/${enc(roomId)}/receipt/m.read/${enc(e1)}`, {});
    const receiptOf = (s: Json) => joined(s, roomId)?.ephemeral.events.find((e: Json) => e.type === 'm.receipt')?.content;
    const a1 = await syncUntil(alice, a0.next_batch, (s) => receiptOf(s) !== undefined);
    assert.equal(typeof receiptOf(a1)[e1]['m.read'][bob.id].ts, 'number');
    const b1 = await bob.sync({ since: b0.next_batch });
    assert.deepEqual(joined(b1, roomId)!.unread_notifications, { notification_count: 1, highlight_count: 0 });

    // The receipt moves to the later event; counts go to zero.
    await bob.ok('POST', `/rooms/${enc(roomId)}/receipt/m.read/${enc(e2)}`, {});
    const a2 = await syncUntil(alice, a1.next_batch, (s) => receiptOf(s) !== undefined);
    assert.ok(receiptOf(a2)[e2]['m.read'][bob.id]);
    const b2 = await bob.sync({ since: b1.next_batch });
    assert.deepEqual(joined(b2, roomId)!.unread_notifications, { notification_count: 0, highlight_count: 0 });

    // A private receipt: the owner sees it, alice does not.
    const e3 = await alice.send(roomId, 'third');
    const a3 = await syncUntil(alice, a2.next_batch, (s) => bodies(joined(s, roomId)).includes('third'));
    await bob.ok('POST', `/rooms/${enc(roomId)}/receipt/m.read.private/${enc(e3)}`, {});
    const b3 = await syncUntil(bob, b2.next_batch, (s) => receiptOf(s)?.[e3] !== undefined);
    assert.ok(receiptOf(b3)[e3]['m.read.private'][bob.id]);
    assert.deepEqual(joined(b3, roomId)!.unread_notifications, { notification_count: 0, highlight_count: 0 });
    const a4 = await alice.sync({ since: a3.next_batch });
    assert.equal(receiptOf(a4)?.[e3], undefined, 'private receipt not shared');
    const aFull = await alice.sync();
    assert.equal(receiptOf(aFull)?.[e3]?.['m.read.private'], undefined, 'not in an initial sync either');
  });

  test('threaded receipts and unread_thread_notifications', async () => {
    const alice = await user('alice');
    const bob = await user('bob');
    const roomId = await alice.createRoom({ preset: 'private_chat', invite: [bob.id] });
    await bob.join(roomId);
    const root = await alice.send(roomId, 'root');
    const inThread = await alice.send(roomId, { msgtype: 'm.text', body: 'reply', 'm.relates_to': { rel_type: 'm.thread', event_id: root } });
    const filter = { room: { timeline: { unread_thread_notifications: true } } };
    const s0 = await bob.sync({ filter });
    assert.deepEqual(joined(s0, roomId)!.unread_notifications, { notification_count: 1, highlight_count: 0 });
    assert.deepEqual(joined(s0, roomId)!.unread_thread_notifications, { [root]: { notification_count: 1, highlight_count: 0 } });
    await bob.ok('POST', `/rooms/${enc(roomId)}/receipt/m.read/${enc(inThread)}`, { thread_id: root });
    const s1 = await bob.sync({ filter });
    assert.deepEqual(joined(s1, roomId)!.unread_thread_notifications, {});
    assert.deepEqual(joined(s1, roomId)!.unread_notifications, { notification_count: 1, highlight_count: 0 });
    assert.equal((await bob.call('POST', `/rooms/${enc(roomId)}/receipt/m.read/${enc(root)}`, { thread_id: '' })).status, 400);
  });

  test('read markers: m.fully_read room account data, m.read receipt', async () => {
    const alice = await user('alice');
    const roomId = await alice.createRoom({});
    const e1 = await alice.send(roomId, 'x');
    const s0 = await alice.sync();
    await alice.ok('POST', `/rooms/${enc(roomId)}/read_markers`, { 'm.fully_read': e1, 'm.read': e1 });
    const s1 = await syncUntil(alice, s0.next_batch, (s) => (joined(s, roomId)?.account_data.events ?? []).length > 0);
    assert.deepEqual(joined(s1, roomId)!.account_data.events, [{ type: 'm.fully_read', content: { event_id: e1 } }]);
    assert.equal((await alice.call('POST', `/rooms/${enc(roomId)}/read_markers`, { 'm.fully_read': '$nope' })).status, 404);
  });

  test('presence reaches room-mates and not strangers', async () => {
    const alice = await user('alice');
    const bob = await user('bob');
    const stranger = await user('stranger');
    const roomId = await alice.createRoom({ preset: 'public_chat' });
    await bob.join(roomId);
    const b0 = await bob.sync({ set_presence: 'offline' });
    const x0 = await stranger.sync({ set_presence: 'offline' });
    await alice.ok('PUT', `/presence/${enc(alice.id)}/status`, { presence: 'online', status_msg: 'gardening' });
    const presenceOf = (s: Json, who: string) => s.presence.events.find((e: Json) => e.sender === who)?.content;
    const b1 = await syncUntil(bob, b0.next_batch, (s) => presenceOf(s, alice.id) !== undefined, { set_presence: 'offline' });
    assert.equal(presenceOf(b1, alice.id).presence, 'online');
    assert.equal(presenceOf(b1, alice.id).status_msg, 'gardening');
    assert.equal(presenceOf(b1, alice.id).currently_active, true);
    assert.equal(typeof presenceOf(b1, alice.id).last_active_ago, 'number');
    const x1 = await stranger.sync({ since: x0.next_batch, set_presence: 'offline' });
    assert.equal(presenceOf(x1, alice.id), undefined);
    assert.equal(presenceOf(await stranger.sync({ set_presence: 'offline' }), alice.id), undefined);
    assert.equal((await bob.ok('GET', `/presence/${enc(alice.id)}/status`)).status_msg, 'gardening');
    assert.equal((await stranger.call('GET', `/presence/${enc(alice.id)}/status`)).status, 403);
    assert.equal((await bob.call('PUT', `/presence/${enc(alice.id)}/status`, { presence: 'online' })).status, 403);
    assert.equal((await alice.call('PUT', `/presence/${enc(alice.id)}/status`, { presence: 'busy' })).status, 400);
    // A presence filter that lets nothing through (clients that hide presence) gets no presence events;
    // one that names the type still gets alice's.
    for (const presence of [{ types: [] }, { not_types: ['*'] }, { senders: [] }]) {
      const s = await bob.sync({ set_presence: 'offline', filter: { presence } });
      assert.deepEqual(s.presence?.events ?? [], [], JSON.stringify(presence));
    }
    const named = await bob.sync({ set_presence: 'offline', filter: { presence: { types: ['m.presence'] } } });
    assert.equal(presenceOf(named, alice.id).status_msg, 'gardening');
  });

  test('invite shows with stripped state; kick, ban and leave show in the others\u2019 timelines and the left user\u2019s leave section', async () => {
    const alice = await user('alice');
    const bob = await user('bob');
    const carol = await user('carol');
    const roomId = await alice.createRoom({ preset: 'private_chat', name: 'Secret' });
    const b0 = await bob.sync();
    await alice.ok('POST', `/rooms/${enc(roomId)}/invite`, { user_id: bob.id });
    const b1 = await syncUntil(bob, b0.next_batch, (s) => s.rooms.invite[roomId] !== undefined);
    const stripped = b1.rooms.invite[roomId].invite_state.events as Json[];
    assert.ok(stripped.some((e) => e.type === 'm.room.name' && e.content.name === 'Secret'));
    assert.ok(stripped.some((e) => e.type === 'm.room.member' && e.state_key === bob.id && e.content.membership === 'invite'));
    assert.ok(stripped.every((e) => e.event_id === undefined && typeof e.sender === 'string'));

    await bob.join(roomId);
    await alice.ok('POST', `/rooms/${enc(roomId)}/invite`, { user_id: carol.id });
    await carol.join(roomId);
    const b2 = await syncUntil(bob, b1.next_batch, (s) => joined(s, roomId) !== undefined && s.rooms.invite[roomId] === undefined);
    const a0 = await alice.sync();
    await alice.ok('POST', `/rooms/${enc(roomId)}/kick`, { user_id: bob.id, reason: 'bye' });
    const b3 = await syncUntil(bob, b2.next_batch, (s) => s.rooms.leave[roomId] !== undefined);
    const kick = b3.rooms.leave[roomId].timeline.events.find((e: Json) => e.type === 'm.room.member' && e.state_key === bob.id);
    assert.equal(kick.content.membership, 'leave');
    assert.equal(kick.sender, alice.id);
    await alice.ok('POST', `/rooms/${enc(roomId)}/ban`, { user_id: bob.id });
    await carol.ok('POST', `/rooms/${enc(roomId)}/leave`, {});
    const a1 = await syncUntil(alice, a0.next_batch, (s) => (joined(s, roomId)?.timeline.events ?? []).some((e: Json) => e.state_key === carol.id && e.content.membership === 'leave'), {
      filter: { room: { timeline: { limit: 20 } } },
    } as never);
    const members = joined(a1, roomId)!.timeline.events.filter((e: Json) => e.type === 'm.room.member');
    // Depending on wake-ups the three changes come in one or more responses; the last one has carol's leave.
    assert.ok(members.some((e: Json) => e.state_key === carol.id && e.content.membership === 'leave'));
    const full = await alice.sync({ filter: { room: { timeline: { limit: 50 } } } });
    const memberships = joined(full, roomId)!.timeline.events.filter((e: Json) => e.type === 'm.room.member').map((e: Json) => `${e.state_key === bob.id ? 'bob' : e.state_key === carol.id ? 'carol' : 'alice'}:${e.content.membership}`);
    assert.deepEqual(memberships.slice(-3), ['bob:leave', 'bob:ban', 'carol:leave']);
    // Left rooms are not in an initial sync unless include_leave.
    assert.equal((await carol.sync()).rooms.leave[roomId], undefined);
    assert.ok((await carol.sync({ filter: { room: { include_leave: true } } })).rooms.leave[roomId]);
  });

  test('filters: timeline types, not_senders, rooms; lazy-loaded members', async () => {
    const alice = await user('alice');
    const bob = await user('bob');
    const carol = await user('carol');
    const roomId = await alice.createRoom({ preset: 'public_chat' });
    const other = await alice.createRoom({ preset: 'public_chat' });
    await bob.join(roomId);
    await carol.join(roomId);
    await bob.join(other);
    await carol.send(roomId, 'from carol');
    await alice.send(roomId, { msgtype: 'm.text', body: 'custom' }, 'org.example.custom');

    const s = await bob.sync({ filter: { room: { rooms: [roomId], timeline: { types: ['m.room.*'], not_senders: [alice.id] } } } });
    assert.equal(joined(s, other), undefined, 'rooms filter');
    const tl = joined(s, roomId)!.timeline.events as Json[];
    assert.ok(tl.every((e) => e.type.startsWith('m.room.') && e.sender !== alice.id));
    assert.ok(tl.some((e) => e.content.body === 'from carol'));

    // Lazy loading: with a one-event timeline, only carol's and bob's own member events come along.
    await carol.send(roomId, 'carol again');
    const lazy = { room: { rooms: [roomId], state: { lazy_load_members: true }, timeline: { limit: 1 } } };
    const l0 = await bob.sync({ filter: lazy });
    const memberKeys = joined(l0, roomId)!.state.events.filter((e: Json) => e.type === 'm.room.member').map((e: Json) => e.state_key).sort();
    assert.deepEqual(memberKeys, [bob.id, carol.id].sort());
    // The next message from carol does not resend her member event (include_redundant_members false)…
    await carol.send(roomId, 'and again');
    const l1 = await bob.sync({ since: l0.next_batch, filter: lazy });
    assert.deepEqual(joined(l1, roomId)!.state.events, []);
    // …but a first message from alice brings hers.
    await alice.send(roomId, 'alice speaks');
    const l2 = await bob.sync({ since: l1.next_batch, filter: lazy });
    assert.deepEqual(joined(l2, roomId)!.state.events.map((e: Json) => e.state_key), [alice.id]);
    // Filters stored by id work too; a bad filter is refused.
    const { filter_id } = await bob.ok('POST', `/user/${enc(bob.id)}/filter`, { room: { timeline: { limit: 1 } } });
    assert.equal(joined(await bob.sync({ filter: filter_id }), roomId)!.timeline.events.length, 1);
    assert.equal((await bob.call('GET', `/sync?filter=${enc('{"room":{"timeline":{"limit":"x"}}}')}`)).status, 400);
    assert.equal((await bob.call('GET', '/sync?since=garbage')).status, 400);
  });

  test('include_redundant_members resends the senders\u2019 member events on every sync', async () => {
    const alice = await user('alice');
    const bob = await user('bob');
    const roomId = await alice.createRoom({ preset: 'public_chat' });
    await bob.join(roomId);
    await alice.send(roomId, 'one');
    const f = { room: { rooms: [roomId], state: { lazy_load_members: true, include_redundant_members: true }, timeline: { limit: 1 } } };
    const s0 = await bob.sync({ filter: f });
    assert.deepEqual(joined(s0, roomId)!.state.events.filter((e: Json) => e.type === 'm.room.member').map((e: Json) => e.state_key).sort(), [alice.id, bob.id].sort());
    await alice.send(roomId, 'two');
    const s1 = await syncUntil(bob, s0.next_batch, (s) => bodies(joined(s, roomId)).includes('two'), { filter: f });
    // Alice's member event comes again although bob's client already has it (the syncing user's own
    // may come along too: redundancy is allowed, client-server-api "Lazy-loading room members").
    const keys = joined(s1, roomId)!.state.events.map((e: Json) => e.state_key);
    assert.ok(keys.includes(alice.id), JSON.stringify(keys));
    assert.ok(keys.every((k: string) => k === alice.id || k === bob.id), JSON.stringify(keys));
  });

  test('ignored users: their messages and invites are hidden (sync and /messages), their state events are not', async () => {
    const alice = await user('alice');
    const bob = await user('bob');
    const carol = await user('carol');
    const roomId = await bob.createRoom({ preset: 'public_chat' });
    await alice.join(roomId);
    await carol.join(roomId);
    await alice.ok('PUT', `/user/${enc(alice.id)}/account_data/m.ignored_user_list`, { ignored_users: { [bob.id]: {} } });
    const a0 = await alice.sync();
    await bob.send(roomId, 'from bob');
    await bob.ok('PUT', `/rooms/${enc(roomId)}/state/m.room.topic/`, { topic: 'set by bob' });
    const other = await bob.createRoom({ preset: 'private_chat', invite: [alice.id] });
    await carol.send(roomId, 'from carol');
    const a1 = await syncUntil(alice, a0.next_batch, (s) => bodies(joined(s, roomId)).includes('from carol'));
    const tl = joined(a1, roomId)!.timeline.events as Json[];
    assert.ok(!bodies(joined(a1, roomId)).includes('from bob'), 'ignored message in the incremental sync');
    assert.ok(tl.some((e) => e.type === 'm.room.topic' && e.sender === bob.id), 'state events of ignored users still arrive');
    assert.equal(a1.rooms?.invite?.[other], undefined, 'invite from an ignored user');
    // A fresh initial sync and /messages agree.
    const fresh = await alice.sync();
    assert.ok(!bodies(joined(fresh, roomId)).includes('from bob'));
    assert.ok(bodies(joined(fresh, roomId)).includes('from carol'));
    assert.equal(fresh.rooms?.invite?.[other], undefined);
    const msgs = await alice.ok('GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=50`);
    assert.ok(!msgs.chunk.some((e: Json) => e.content?.body === 'from bob'));
    assert.ok(msgs.chunk.some((e: Json) => e.content?.body === 'from carol'));
    // Carol, who ignores nobody, sees everything; un-ignoring shows bob's new messages again.
    assert.ok(bodies(joined(await carol.sync(), roomId)).includes('from bob'));
    await alice.ok('PUT', `/user/${enc(alice.id)}/account_data/m.ignored_user_list`, { ignored_users: {} });
    await bob.send(roomId, 'bob again');
    await syncUntil(alice, a1.next_batch, (s) => bodies(joined(s, roomId)).includes('bob again'));
  });

  test('knock shows in the knocker\u2019s knock section with stripped state, then moves on when accepted', async () => {
    const alice = await user('alice');
    const carol = await user('carol');
    const roomId = await alice.createRoom({ preset: 'private_chat', name: 'Knock knock' });
    await alice.ok('PUT', `/rooms/${enc(roomId)}/state/m.room.join_rules`, { join_rule: 'knock' });
    const c0 = await carol.sync();
    await carol.ok('POST', `/knock/${enc(roomId)}`, { reason: 'let me in' });
    const c1 = await syncUntil(carol, c0.next_batch, (s) => s.rooms?.knock?.[roomId] !== undefined);
    const stripped = c1.rooms.knock[roomId].knock_state.events as Json[];
    assert.ok(stripped.every((e) => e.event_id === undefined && typeof e.sender === 'string'), 'stripped state has no event ids');
    assert.equal(stripped.find((e) => e.type === 'm.room.name')?.content.name, 'Knock knock');
    assert.equal(stripped.find((e) => e.type === 'm.room.join_rules')?.content.join_rule, 'knock');
    assert.equal(stripped.find((e) => e.type === 'm.room.member' && e.state_key === carol.id)?.content.membership, 'knock');
    assert.equal(joined(c1, roomId), undefined);
    // The room's members see the knock in their timeline; alice accepts with an invite.
    const a = await alice.sync();
    assert.ok((joined(a, roomId)!.timeline.events as Json[]).some((e) => e.type === 'm.room.member' && e.state_key === carol.id && e.content.membership === 'knock'));
    await alice.ok('POST', `/rooms/${enc(roomId)}/invite`, { user_id: carol.id });
    const c2 = await syncUntil(carol, c1.next_batch, (s) => s.rooms?.invite?.[roomId] !== undefined);
    assert.equal(c2.rooms.knock?.[roomId], undefined);
  });

  test('full_state returns the whole state on an incremental sync', async () => {
    const alice = await user('alice');
    const roomId = await alice.createRoom({ name: 'Full' });
    const s0 = await alice.sync();
    const s1 = await alice.sync({ since: s0.next_batch, full_state: true, timeout: 10_000 });
    const room = joined(s1, roomId)!;
    assert.ok(room.state.events.some((e: Json) => e.type === 'm.room.create'));
    assert.deepEqual(room.timeline.events, []);
  });

  test('use_state_after returns state_after instead of state', async () => {
    const alice = await user('alice');
    const roomId = await alice.createRoom({ name: 'After' });
    const s = await alice.sync({ use_state_after: true });
    const room = joined(s, roomId)!;
    assert.equal(room.state, undefined);
    assert.ok(room.state_after.events.some((e: Json) => e.type === 'm.room.name'));
  });
});
