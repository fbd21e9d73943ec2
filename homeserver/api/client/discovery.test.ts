// Discovery over HTTP (issue 6): server-side search and its privacy rules, the published room list,
// aliases, the user directory, space hierarchies and content reports.
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

const search = async (c: Client, term: string, extra: Record<string, unknown> = {}, nextBatch?: string) =>
  (await c.ok('POST', `/search${nextBatch ? `?next_batch=${enc(nextBatch)}` : ''}`, { search_categories: { room_events: { search_term: term, ...extra } } })).search_categories.room_events;
const bodiesOf = (re: any) => re.results.map((r: any) => r.result.content.body).sort();

test('search never returns events from rooms the searcher is not in, nor events they could not see', async () => {
  // Bob's private room: alice is not in it.
  const secret = await bob.createRoom({ preset: 'private_chat' });
  await bob.send(secret, { msgtype: 'm.text', body: 'walrus in the private room' });
  // A `joined` room alice joins late: only what follows her join is hers to find.
  const joinedOnly = await bob.createRoom({ preset: 'public_chat' });
  await bob.ok('PUT', `/rooms/${enc(joinedOnly)}/state/m.room.history_visibility/`, { history_visibility: 'joined' });
  await bob.send(joinedOnly, { msgtype: 'm.text', body: 'walrus before alice joined' });
  // A `shared` room alice joins late: she may see (and find) everything.
  const shared = await bob.createRoom({ preset: 'public_chat' });
  await bob.send(shared, { msgtype: 'm.text', body: 'walrus in a shared room' });
  await alice.ok('POST', `/join/${enc(joinedOnly)}`, {});
  await alice.ok('POST', `/join/${enc(shared)}`, {});
  await bob.send(joinedOnly, { msgtype: 'm.text', body: 'walrus after alice joined' });
  // Encrypted events have no searchable text.
  await bob.ok('PUT', `/rooms/${enc(shared)}/send/m.room.encrypted/e1`, { algorithm: 'm.megolm.v1.aes-sha2', ciphertext: 'walrus', sender_key: 'k', session_id: 's', device_id: 'D' });

  const re = await search(alice, 'walrus');
  assert.deepEqual(bodiesOf(re), ['walrus after alice joined', 'walrus in a shared room']);
  assert.ok(re.results.every((r: any) => r.result.room_id !== secret));
  // Carol is in none of these rooms.
  assert.deepEqual((await search(carol, 'walrus')).results, []);
  // Bob, in all three, finds all four messages.
  assert.equal((await search(bob, 'walrus')).results.length, 4);
  // Once alice leaves, the room is no longer searched.
  await alice.ok('POST', `/rooms/${enc(shared)}/leave`, {});
  assert.deepEqual(bodiesOf(await search(alice, 'walrus')), ['walrus after alice joined']);
  // A room filter cannot reach rooms the searcher is not in.
  assert.deepEqual((await search(alice, 'walrus', { filter: { rooms: [secret] } })).results, []);
});

test('search: order_by recent, filters, room names and topics, groupings, state, context and errors', async () => {
  const roomId = await alice.createRoom({ preset: 'public_chat', name: 'Otter watchers', topic: 'Where the otters swim' });
  await bob.ok('POST', `/join/${enc(roomId)}`, {});
  await alice.send(roomId, { msgtype: 'm.text', body: 'first otter of the day' });
  await bob.send(roomId, { msgtype: 'm.text', body: 'second otter sighting' });
  await alice.send(roomId, { msgtype: 'm.text', body: 'third otter, a big one' });
  const recent = await search(alice, 'otter', { order_by: 'recent', keys: ['content.body'], filter: { rooms: [roomId] } });
  assert.deepEqual(recent.results.map((r: any) => r.result.content.body), ['third otter, a big one', 'second otter sighting', 'first otter of the day']);
  const bySender = await search(alice, 'otter', { keys: ['content.body'], filter: { senders: [bob.userId] } });
  assert.deepEqual(bodiesOf(bySender), ['second otter sighting']);
  const names = await search(alice, 'otters', { keys: ['content.name', 'content.topic'] });
  assert.deepEqual(names.results.map((r: any) => r.result.type).sort(), ['m.room.name', 'm.room.topic']);
  // Pages of one in recent order continue where they stopped.
  const seen: string[] = [];
  let next: string | undefined;
  for (let i = 0; i < 10; i++) {
    const page = await search(alice, 'otter', { order_by: 'recent', keys: ['content.body'], filter: { limit: 1 } }, next);
    seen.push(...page.results.map((r: any) => r.result.content.body));
    if (!page.next_batch) break;
    next = page.next_batch;
  }
  assert.deepEqual(seen, ['third otter, a big one', 'second otter sighting', 'first otter of the day']);
  const rich = await search(alice, 'second', {
    keys: ['content.body'],
    groupings: { group_by: [{ key: 'room_id' }, { key: 'sender' }] },
    include_state: true,
    event_context: { before_limit: 1, after_limit: 1, include_profile: true },
  });
  assert.equal(rich.results.length, 1);
  assert.deepEqual(rich.groups.room_id[roomId].results, [rich.results[0].result.event_id]);
  assert.deepEqual(Object.keys(rich.groups.sender), [bob.userId]);
  assert.ok(rich.state[roomId].some((e: any) => e.type === 'm.room.create'));
  const ctx = rich.results[0].context;
  assert.deepEqual(ctx.events_before.map((e: any) => e.content.body), ['first otter of the day']);
  assert.deepEqual(ctx.events_after.map((e: any) => e.content.body), ['third otter, a big one']);
  assert.ok(bob.userId in ctx.profile_info);
  assert.ok(rich.highlights.includes('second'));
  // Errors are the spec's.
  const badKey = await alice.call('POST', '/search', { search_categories: { room_events: { search_term: 'x', keys: ['content.secret'] } } });
  assert.equal(badKey.status, 400);
  const noTerm = await alice.call('POST', '/search', { search_categories: { room_events: {} } });
  assert.equal(noTerm.status, 400);
  assert.equal(noTerm.body.errcode, 'M_BAD_JSON');
  const badToken = await alice.call('POST', '/search?next_batch=garbage', { search_categories: { room_events: { search_term: 'otter' } } });
  assert.equal(badToken.status, 400);
});

test('the published room list: search term over name, topic and alias; room types; limit and since', async () => {
  const made: string[] = [];
  for (let i = 0; i < 5; i++) {
    const roomId = await alice.createRoom({ preset: 'public_chat', name: `Listed ${i}`, topic: i === 2 ? 'All about Crème brûlée' : 'misc', room_alias_name: `listed${i}` });
    await alice.ok('PUT', `/directory/list/room/${enc(roomId)}`, { visibility: 'public' });
    made.push(roomId);
  }
  const space = await alice.createRoom({ preset: 'public_chat', name: 'Listed space', creation_content: { type: 'm.space' } });
  await alice.ok('PUT', `/directory/list/room/${enc(space)}`, { visibility: 'public' });
  // A room with more members comes first.
  await bob.ok('POST', `/join/${enc(made[3]!)}`, {});

  const all = await alice.ok('POST', '/publicRooms', { filter: { generic_search_term: 'listed' } });
  assert.equal(all.chunk.length, 6);
  assert.equal(all.chunk[0].room_id, made[3]);
  assert.equal(all.chunk[0].num_joined_members, 2);
  assert.equal(all.total_room_count_estimate, 6);
  // Accents and case do not matter; aliases match too.
  assert.deepEqual((await alice.ok('POST', '/publicRooms', { filter: { generic_search_term: 'CREME brulee' } })).chunk.map((r: any) => r.room_id), [made[2]]);
  assert.deepEqual((await alice.ok('POST', '/publicRooms', { filter: { generic_search_term: '#listed4' } })).chunk.map((r: any) => r.room_id), [made[4]]);
  // room_types: null means rooms without a type.
  const spaces = await alice.ok('POST', '/publicRooms', { filter: { generic_search_term: 'listed', room_types: ['m.space'] } });
  assert.deepEqual(spaces.chunk.map((r: any) => r.room_id), [space]);
  assert.equal(spaces.chunk[0].room_type, 'm.space');
  assert.equal((await alice.ok('POST', '/publicRooms', { filter: { generic_search_term: 'listed', room_types: [null] } })).chunk.length, 5);
  // Pages of two over GET, with no access token, forwards then back.
  const anon = async (q: string) => {
    const r = await fetch(`${s.baseUrl}/_matrix/client/v3/publicRooms?${q}`);
    assert.equal(r.status, 200);
    return (await r.json()) as any;
  };
  const ids: string[] = [];
  let since: string | undefined;
  let pages = 0;
  for (;;) {
    const page = await anon(`limit=2${since ? `&since=${enc(since)}` : ''}`);
    assert.ok(page.chunk.length <= 2);
    ids.push(...page.chunk.map((r: any) => r.room_id));
    pages++;
    if (pages > 1) assert.ok(page.prev_batch, 'prev_batch after the first page');
    if (!page.next_batch) break;
    since = page.next_batch;
  }
  assert.equal(new Set(ids).size, ids.length, 'no room twice');
  for (const r of [...made, space]) assert.ok(ids.includes(r));
  assert.equal((await alice.call('GET', '/publicRooms?since=nonsense')).status, 400);
  assert.equal((await alice.call('GET', '/publicRooms?server=elsewhere.example')).status, 404);
  // Only a moderator may publish; unpublishing removes the room.
  assert.equal((await bob.call('PUT', `/directory/list/room/${enc(made[3]!)}`, { visibility: 'private' })).status, 403);
  await alice.ok('PUT', `/directory/list/room/${enc(made[3]!)}`, { visibility: 'private' });
  assert.ok(!(await anon('limit=100')).chunk.some((r: any) => r.room_id === made[3]));
});

test('aliases: create, resolve, list for a room, and who may delete them', async () => {
  const roomId = await alice.createRoom({ preset: 'public_chat' });
  await bob.ok('POST', `/join/${enc(roomId)}`, {});
  const alias = `#bobs-alias:${s.serverName}`;
  await bob.ok('PUT', `/directory/room/${enc(alias)}`, { room_id: roomId });
  assert.equal((await carol.call('PUT', `/directory/room/${enc(alias)}`, { room_id: roomId })).status, 409);
  assert.deepEqual((await carol.ok('GET', `/directory/room/${enc(alias)}`)).room_id, roomId);
  assert.ok((await alice.ok('GET', `/rooms/${enc(roomId)}/aliases`)).aliases.includes(alias));
  // Carol is no member: the room's alias list is not hers to read (unless world_readable).
  assert.equal((await carol.call('GET', `/rooms/${enc(roomId)}/aliases`)).status, 403);
  // Neither its creator nor a moderator: carol may not delete it; alice (room admin) may.
  assert.equal((await carol.call('DELETE', `/directory/room/${enc(alias)}`)).status, 403);
  await alice.ok('DELETE', `/directory/room/${enc(alias)}`);
  assert.equal((await carol.call('GET', `/directory/room/${enc(alias)}`)).status, 404);
  // The creator of an alias may delete it.
  const mine = `#bobs-second:${s.serverName}`;
  await bob.ok('PUT', `/directory/room/${enc(mine)}`, { room_id: roomId });
  await bob.ok('DELETE', `/directory/room/${enc(mine)}`);
});

test('user directory: room-mates and members of public rooms, by id or name, case- and accent-insensitive, limited', async () => {
  const dora = await newClient(s, 'dora');
  const erik = await newClient(s, 'erik_the_red');
  const hermit = await newClient(s, 'hermit');
  await dora.ok('PUT', `/profile/${enc(dora.userId)}/displayname`, { displayname: 'Dörte Ångström' });
  await hermit.ok('PUT', `/profile/${enc(hermit.userId)}/displayname`, { displayname: 'Dörte Hidden' });
  // Dora and erik share a private room; nobody shares one with the hermit, who is in no public room.
  const room = await dora.createRoom({ preset: 'private_chat', invite: [erik.userId] });
  await erik.ok('POST', `/join/${enc(room)}`, {});
  const find = async (c: Client, term: string, limit?: number) =>
    c.ok('POST', '/user_directory/search', { search_term: term, ...(limit !== undefined ? { limit } : {}) });

  assert.deepEqual((await find(erik, 'dorte')).results, [{ user_id: dora.userId, display_name: 'Dörte Ångström' }]);
  assert.deepEqual((await find(erik, 'ANGSTR')).results.map((r: any) => r.user_id), [dora.userId]);
  assert.deepEqual((await find(dora, 'erik_the')).results.map((r: any) => r.user_id), [erik.userId]);
  assert.deepEqual((await find(dora, 'red')).results.map((r: any) => r.user_id), [erik.userId], 'a word of the user id');
  // Carol shares nothing with dora: not found.
  assert.deepEqual((await find(carol, 'dorte')).results, []);
  // Once dora joins a public room, anyone can find her.
  const lobby = await alice.createRoom({ preset: 'public_chat' });
  await dora.ok('POST', `/join/${enc(lobby)}`, {});
  assert.deepEqual((await find(carol, 'dorte')).results.map((r: any) => r.user_id), [dora.userId]);
  // A display name change is searchable at once.
  await dora.ok('PUT', `/profile/${enc(dora.userId)}/displayname`, { displayname: 'Dolores' });
  assert.deepEqual((await find(carol, 'dolo')).results.map((r: any) => r.user_id), [dora.userId]);
  assert.deepEqual((await find(carol, 'dorte')).results, []);
  // limited when more match than the limit.
  for (const n of ['zed1', 'zed2', 'zed3']) {
    const u = await newClient(s, n);
    await u.ok('POST', `/join/${enc(lobby)}`, {});
  }
  const limited = await find(carol, 'zed', 2);
  assert.equal(limited.results.length, 2);
  assert.equal(limited.limited, true);
  assert.equal((await find(carol, 'zed', 3)).limited, false);
  assert.equal((await carol.call('POST', '/user_directory/search', { limit: 3 })).status, 400);
  assert.deepEqual((await find(carol, '  ')).results, []);
});

test('user directory: search_all_users finds every local user', async () => {
  const s2 = await startTestServer({ config: { user_directory: { search_all_users: true } } as never });
  try {
    const a = await newClient(s2, 'anna');
    const hidden = await newClient(s2, 'lonely');
    await hidden.ok('PUT', `/profile/${enc(hidden.userId)}/displayname`, { displayname: 'Léa Lonely' });
    const r = await a.ok('POST', '/user_directory/search', { search_term: 'lea' });
    assert.deepEqual(r.results.map((x: any) => x.user_id), [hidden.userId]);
  } finally {
    await s2.stop();
  }
});

test('space hierarchy: pagination tokens, max_depth, suggested_only, join rules and errors', async () => {
  const sv = `${s.serverName}`;
  const space = await alice.createRoom({ preset: 'public_chat', name: 'Top', creation_content: { type: 'm.space' } });
  const kids: string[] = [];
  for (let i = 0; i < 4; i++) {
    const id = await alice.createRoom({ preset: i === 3 ? 'private_chat' : 'public_chat', name: `Kid ${i}` });
    await alice.ok('PUT', `/rooms/${enc(space)}/state/m.space.child/${enc(id)}`, { via: [sv], order: `${i}`, ...(i === 0 ? { suggested: true } : {}) });
    kids.push(id);
  }
  // A child without `via` is not a child.
  const orphan = await alice.createRoom({ preset: 'public_chat', name: 'Orphan' });
  await alice.ok('PUT', `/rooms/${enc(space)}/state/m.space.child/${enc(orphan)}`, {});
  // Restricted to members of kid 0: visible to bob once he is in kid 0.
  const restricted = await alice.createRoom({
    preset: 'private_chat',
    name: 'Restricted',
    room_version: '12',
    initial_state: [{ type: 'm.room.join_rules', state_key: '', content: { join_rule: 'restricted', allow: [{ type: 'm.room_membership', room_id: kids[0] }] } }],
  });
  await alice.ok('PUT', `/rooms/${enc(space)}/state/m.space.child/${enc(restricted)}`, { via: [sv], order: '9' });

  const v1 = async (c: Client, path: string) => {
    const r = await fetch(`${s.baseUrl}/_matrix/client/v1${path}`, { headers: { authorization: `Bearer ${c.user.accessToken}` } });
    return { status: r.status, body: (await r.json()) as any };
  };
  const h = async (q = '') => {
    const r = await v1(bob, `/rooms/${enc(space)}/hierarchy${q}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body;
  };
  const names = async (q = '') => (await h(q)).rooms.map((r: any) => r.name);
  assert.deepEqual(await names(), ['Top', 'Kid 0', 'Kid 1', 'Kid 2']);
  await bob.ok('POST', `/join/${enc(kids[0]!)}`, {});
  assert.deepEqual(await names(), ['Top', 'Kid 0', 'Kid 1', 'Kid 2', 'Restricted']);
  const top = (await h()).rooms[0];
  assert.equal(top.children_state.length, 5, 'children with via, previewable or not');
  assert.ok(top.children_state.every((c: any) => c.type === 'm.space.child' && typeof c.origin_server_ts === 'number'));
  assert.deepEqual(await names('?max_depth=0'), ['Top']);
  assert.deepEqual(await names('?suggested_only=true'), ['Top', 'Kid 0']);
  const first = await h('?limit=2');
  assert.equal(first.rooms.length, 2);
  const rest = await h(`?limit=10&from=${enc(first.next_batch)}`);
  assert.deepEqual([...first.rooms, ...rest.rooms].map((r: any) => r.name), ['Top', 'Kid 0', 'Kid 1', 'Kid 2', 'Restricted']);
  assert.equal(rest.next_batch, undefined);
  // Changing the parameters mid-walk, or an invented token, is M_INVALID_PARAM.
  const changed = await v1(bob, `/rooms/${enc(space)}/hierarchy?limit=2&max_depth=1&from=${enc(first.next_batch)}`);
  assert.equal(changed.status, 400);
  assert.equal((await v1(bob, `/rooms/${enc(space)}/hierarchy?from=zzz`)).status, 400);
  // A private space is not previewable by non-members.
  const privateSpace = await alice.createRoom({ preset: 'private_chat', creation_content: { type: 'm.space' } });
  assert.equal((await v1(carol, `/rooms/${enc(privateSpace)}/hierarchy`)).status, 403);
});

test('reports: events need the reporter joined; rooms and users do not; reasons are checked; admins can list them', async () => {
  const roomId = await alice.createRoom({ preset: 'private_chat' });
  const eventId = await alice.send(roomId, { msgtype: 'm.text', body: 'spam' });
  // Carol is not in the room: 404, and the same for an unknown event.
  assert.equal((await carol.call('POST', `/rooms/${enc(roomId)}/report/${enc(eventId)}`, { reason: 'x' })).status, 404);
  assert.equal((await alice.call('POST', `/rooms/${enc(roomId)}/report/${enc('$nope')}`, { reason: 'x' })).body.errcode, 'M_NOT_FOUND');
  await alice.ok('POST', `/rooms/${enc(roomId)}/report/${enc(eventId)}`, { reason: 'spam' });
  // Room and user reports from someone who shares nothing.
  await carol.ok('POST', `/rooms/${enc(roomId)}/report`, { reason: 'bad room' });
  await carol.ok('POST', `/users/${enc(alice.userId)}/report`, { reason: '' });
  assert.equal((await carol.call('POST', `/rooms/${enc('!unknown:' + s.serverName)}/report`, { reason: 'x' })).status, 404);
  assert.equal((await carol.call('POST', `/users/${enc('@nobody:' + s.serverName)}/report`, { reason: 'x' })).status, 404);
  assert.equal((await carol.call('POST', `/rooms/${enc(roomId)}/report`, { reason: 7 })).status, 400);
  assert.equal((await carol.call('POST', `/rooms/${enc(roomId)}/report`, {})).status, 400, 'reason is required for room reports');
  assert.equal((await carol.call('POST', `/rooms/${enc(roomId)}/report`, { reason: 'x'.repeat(20_000) })).status, 400);
  const stored = await s.hs.services.reports.list();
  const mine = stored.filter((r) => r.room_id === roomId || r.target_user_id === alice.userId);
  assert.deepEqual(mine.map((r) => r.kind).sort(), ['event', 'room', 'user']);
  const ev = mine.find((r) => r.kind === 'event')!;
  assert.equal(ev.event_id, eventId);
  assert.equal(ev.reporter, alice.userId);
  assert.equal(ev.target_user_id, alice.userId);
});
