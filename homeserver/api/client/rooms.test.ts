// POST /createRoom over HTTP: presets and room versions produce the state the spec's preset table and
// create_room.yaml describe; every stored event is a valid signed federation event.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../../testing.ts';
import { Client, enc, newClient, verifyStoredEvents } from './rooms-testkit.ts';

let s: TestServer;
let alice: Client;
let bob: Client;

before(async () => {
  s = await startTestServer();
  alice = await newClient(s, 'alice');
  bob = await newClient(s, 'bob');
});
after(async () => {
  await s.stop();
});

const PRESET_TABLE = {
  private_chat: { join_rule: 'invite', history_visibility: 'shared', guest_access: 'can_join' },
  trusted_private_chat: { join_rule: 'invite', history_visibility: 'shared', guest_access: 'can_join' },
  public_chat: { join_rule: 'public', history_visibility: 'shared', guest_access: 'forbidden' },
} as const;

for (const version of ['1', '6', '10', '11', '12']) {
  for (const preset of Object.keys(PRESET_TABLE) as Array<keyof typeof PRESET_TABLE>) {
    test(`createRoom v${version} ${preset}: preset state, power levels, creators, signed events`, async () => {
      const roomId = await alice.createRoom({ room_version: version, preset, invite: [bob.userId], is_direct: true });
      if (version === '12') assert.match(roomId, /^![A-Za-z0-9_-]{43}$/);
      else assert.match(roomId, /^!.+:localhost$/);
      const want = PRESET_TABLE[preset];
      assert.deepEqual((await alice.state(roomId, 'm.room.join_rules')).body, { join_rule: want.join_rule });
      assert.deepEqual((await alice.state(roomId, 'm.room.history_visibility')).body, { history_visibility: want.history_visibility });
      assert.deepEqual((await alice.state(roomId, 'm.room.guest_access')).body, { guest_access: want.guest_access });

      const create = (await alice.state(roomId, 'm.room.create')).body;
      assert.equal(create.room_version, version);
      if (['1', '6', '10'].includes(version)) assert.equal(create.creator, alice.userId);
      else assert.equal(create.creator, undefined);

      const pl = (await alice.state(roomId, 'm.room.power_levels')).body;
      if (version === '12') {
        // rooms/v12.md: creators have infinite power and are not listed.
        assert.equal(pl.users[alice.userId], undefined);
        assert.ok(pl.events['m.room.tombstone'] > pl.state_default, 'tombstone above state_default in v12');
        if (preset === 'trusted_private_chat') {
          assert.deepEqual(create.additional_creators, [bob.userId]);
          assert.equal(pl.users[bob.userId], undefined);
        } else assert.equal(create.additional_creators, undefined);
      } else {
        assert.equal(pl.users[alice.userId], 100);
        assert.equal(pl.users[bob.userId], preset === 'trusted_private_chat' ? 100 : undefined);
      }
      const invite = (await alice.state(roomId, 'm.room.member', bob.userId)).body;
      assert.equal(invite.membership, 'invite');
      assert.equal(invite.is_direct, true);
      assert.equal((await alice.state(roomId, 'm.room.member', alice.userId)).body.membership, 'join');

      const n = await verifyStoredEvents(s, roomId);
      assert.equal(n, 7); // create, join, power levels, 3 preset events, invite
      const createEvent = (await alice.call('GET', `/rooms/${enc(roomId)}/state/m.room.create/?format=event`)).body;
      if (version === '1') assert.match(createEvent.event_id, /^\$.+:localhost$/);
      else assert.match(createEvent.event_id, /^\$[A-Za-z0-9_-]{43}$/);
      assert.equal(createEvent.room_id, roomId);
    });
  }
}

test('createRoom: visibility public implies public_chat; name, topic, alias and initial_state precedence', async () => {
  const roomId = await alice.createRoom({
    visibility: 'public',
    name: 'The Pub',
    topic: 'Happy hour',
    room_alias_name: 'thepub',
    creation_content: { 'm.federate': false, type: 'org.example.room' },
    initial_state: [
      { type: 'm.room.name', content: { name: 'overridden by name' } },
      { type: 'm.room.history_visibility', state_key: '', content: { history_visibility: 'joined' } },
      { type: 'org.example.setting', state_key: 'k', content: { v: 1 } },
    ],
  });
  assert.deepEqual((await alice.state(roomId, 'm.room.join_rules')).body, { join_rule: 'public' });
  assert.deepEqual((await alice.state(roomId, 'm.room.name')).body, { name: 'The Pub' });
  const topic = (await alice.state(roomId, 'm.room.topic')).body;
  assert.equal(topic.topic, 'Happy hour');
  assert.deepEqual(topic['m.topic'], { 'm.text': [{ body: 'Happy hour', mimetype: 'text/plain' }] });
  // initial_state takes precedence over the preset.
  assert.deepEqual((await alice.state(roomId, 'm.room.history_visibility')).body, { history_visibility: 'joined' });
  assert.deepEqual((await alice.state(roomId, 'org.example.setting', 'k')).body, { v: 1 });
  assert.deepEqual((await alice.state(roomId, 'm.room.canonical_alias')).body, { alias: '#thepub:localhost' });
  const create = (await alice.state(roomId, 'm.room.create')).body;
  assert.equal(create['m.federate'], false);
  assert.equal(create.type, 'org.example.room');
  const dir = await alice.ok('GET', `/directory/room/${enc('#thepub:localhost')}`);
  assert.equal(dir.room_id, roomId);
  assert.deepEqual(await alice.ok('GET', `/directory/list/room/${enc(roomId)}`), { visibility: 'public' });
  // The alias is taken now.
  const again = await alice.call('POST', '/createRoom', { room_alias_name: 'thepub' });
  assert.equal(again.status, 400);
  assert.equal(again.body.errcode, 'M_ROOM_IN_USE');
  // Joining by alias works.
  assert.equal((await bob.ok('POST', `/join/${enc('#thepub:localhost')}`, {})).room_id, roomId);
  await verifyStoredEvents(s, roomId);
});

test('createRoom: power_level_content_override applies on top of the defaults', async () => {
  const roomId = await alice.createRoom({ room_version: '11', power_level_content_override: { events_default: 20, users: { [alice.userId]: 100, [bob.userId]: 30 } } });
  const pl = (await alice.state(roomId, 'm.room.power_levels')).body;
  assert.equal(pl.events_default, 20);
  assert.equal(pl.users[bob.userId], 30);
  assert.equal(pl.state_default, 50);
});

test('createRoom: default room version is 12; unknown versions give M_UNSUPPORTED_ROOM_VERSION', async () => {
  const roomId = await alice.createRoom({});
  assert.equal((await alice.state(roomId, 'm.room.create')).body.room_version, '12');
  const r = await alice.call('POST', '/createRoom', { room_version: '999' });
  assert.equal(r.status, 400);
  assert.equal(r.body.errcode, 'M_UNSUPPORTED_ROOM_VERSION');
});

test('createRoom: bad input never 500s and writes nothing', async () => {
  const count = async () => Number((await s.hs.db.selectFrom('rooms').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n);
  const before = await count();
  const cases: Array<[unknown, string]> = [
    [{ preset: 'nope' }, 'M_INVALID_PARAM'],
    [{ visibility: 'secret' }, 'M_INVALID_PARAM'],
    [{ name: 42 }, 'M_BAD_JSON'],
    [{ invite: 'bob' }, 'M_BAD_JSON'],
    [{ invite: ['not-a-user'] }, 'M_INVALID_PARAM'],
    [{ initial_state: [{ type: 'x' }] }, 'M_BAD_JSON'],
    [{ creation_content: [] }, 'M_BAD_JSON'],
    [{ room_version: 12 }, 'M_BAD_JSON'],
    [{ room_alias_name: 'a:b' }, 'M_INVALID_PARAM'],
    // The creator cannot set the name at level 200: the implied state is invalid.
    [{ room_version: '11', name: 'x', power_level_content_override: { events: { 'm.room.name': 200 } } }, 'M_INVALID_ROOM_STATE'],
    // v12: creators may not be listed in power levels (rooms/v12.md rule 10.4).
    [{ room_version: '12', power_level_content_override: { users: { [alice.userId]: 100 } } }, 'M_INVALID_ROOM_STATE'],
  ];
  for (const [body, errcode] of cases) {
    const r = await alice.call('POST', '/createRoom', body);
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.equal(r.body.errcode, errcode, JSON.stringify(body));
  }
  const notJson = await alice.call('POST', '/createRoom', undefined, '{nope');
  assert.equal(notJson.status, 400);
  assert.equal(notJson.body.errcode, 'M_NOT_JSON');
  assert.equal(await count(), before);
  const anon = await fetch(`${s.baseUrl}/_matrix/client/v3/createRoom`, { method: 'POST', body: '{}' });
  assert.equal(anon.status, 401);
});

test('GET /joined_rooms and /joined_members', async () => {
  const roomId = await alice.createRoom({ preset: 'public_chat' });
  await bob.ok('POST', `/rooms/${enc(roomId)}/join`, {});
  assert.ok((await bob.ok('GET', '/joined_rooms')).joined_rooms.includes(roomId));
  const members = await alice.ok('GET', `/rooms/${enc(roomId)}/joined_members`);
  assert.deepEqual(Object.keys(members.joined).sort(), [alice.userId, bob.userId].sort());
  assert.equal(members.joined[bob.userId].display_name, 'bob');
  const carol = await newClient(s, 'carol');
  assert.equal((await carol.call('GET', `/rooms/${enc(roomId)}/joined_members`)).status, 403);
});
