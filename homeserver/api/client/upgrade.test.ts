// POST /rooms/{roomId}/upgrade: tombstone, copied state, predecessor, moved aliases and published flag,
// restricted old room, creators per room version.
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

test('upgrade v10 → v12: tombstone, copied state, predecessor, aliases and published flag move', async () => {
  const old = await alice.createRoom({
    room_version: '10',
    visibility: 'public',
    name: 'Old room',
    topic: 'history',
    room_alias_name: 'upgrademe',
    creation_content: { type: 'm.space' },
  });
  await bob.ok('POST', `/rooms/${enc(old)}/join`, {});
  await alice.ok('PUT', `/rooms/${enc(old)}/state/m.room.encryption`, { algorithm: 'm.megolm.v1.aes-sha2' });
  // Bob may not upgrade (tombstone needs 100).
  const denied = await bob.call('POST', `/rooms/${enc(old)}/upgrade`, { new_version: '12' });
  assert.equal(denied.status, 403);

  const { replacement_room: fresh } = await alice.ok('POST', `/rooms/${enc(old)}/upgrade`, { new_version: '12', additional_creators: [bob.userId] });
  assert.match(fresh, /^![A-Za-z0-9_-]{43}$/);
  const tomb = (await alice.state(old, 'm.room.tombstone')).body;
  assert.equal(tomb.replacement_room, fresh);

  const create = (await alice.state(fresh, 'm.room.create')).body;
  assert.equal(create.room_version, '12');
  assert.equal(create.predecessor.room_id, old);
  assert.equal(typeof create.predecessor.event_id, 'string');
  assert.equal(create.type, 'm.space');
  assert.deepEqual(create.additional_creators, [bob.userId]);
  assert.equal(create.creator, undefined);

  for (const [type, want] of [
    ['m.room.name', { name: 'Old room' }],
    ['m.room.join_rules', { join_rule: 'public' }],
    ['m.room.encryption', { algorithm: 'm.megolm.v1.aes-sha2' }],
    ['m.room.canonical_alias', { alias: '#upgrademe:localhost' }],
  ] as const) {
    assert.deepEqual((await alice.state(fresh, type)).body, want, type);
  }
  assert.equal((await alice.state(fresh, 'm.room.topic')).body.topic, 'history');
  // v12 creators are not listed in the new power levels.
  const pl = (await alice.state(fresh, 'm.room.power_levels')).body;
  assert.equal(pl.users[alice.userId], undefined);
  assert.equal(pl.users[bob.userId], undefined);

  assert.equal((await alice.ok('GET', `/directory/room/${enc('#upgrademe:localhost')}`)).room_id, fresh);
  assert.deepEqual(await alice.ok('GET', `/directory/list/room/${enc(fresh)}`), { visibility: 'public' });
  assert.deepEqual(await alice.ok('GET', `/directory/list/room/${enc(old)}`), { visibility: 'private' });

  // The old room is restricted: ordinary members can no longer talk or invite.
  const oldPl = (await alice.state(old, 'm.room.power_levels')).body;
  assert.equal(oldPl.events_default, 50);
  assert.equal(oldPl.invite, 50);
  assert.equal((await bob.call('PUT', `/rooms/${enc(old)}/send/m.room.message/late`, { body: 'x' })).status, 403);
  // Members are not moved: bob joins the new room himself.
  await bob.ok('POST', `/rooms/${enc(fresh)}/join`, {});
  await verifyStoredEvents(s, old);
  await verifyStoredEvents(s, fresh);
});

test('upgrade v12 → v11: creators get 100 in the new power levels; errors', async () => {
  const old = await alice.createRoom({ room_version: '12', preset: 'private_chat' });
  const { replacement_room: fresh } = await alice.ok('POST', `/rooms/${enc(old)}/upgrade`, { new_version: '11' });
  const pl = (await alice.state(fresh, 'm.room.power_levels')).body;
  assert.equal(pl.users[alice.userId], 100);
  assert.equal((await alice.state(fresh, 'm.room.join_rules')).body.join_rule, 'invite');
  const bad = await alice.call('POST', `/rooms/${enc(fresh)}/upgrade`, { new_version: '99' });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.errcode, 'M_UNSUPPORTED_ROOM_VERSION');
  const missing = await alice.call('POST', `/rooms/${enc(fresh)}/upgrade`, {});
  assert.equal(missing.status, 400);
  const notMember = await bob.call('POST', `/rooms/${enc(fresh)}/upgrade`, { new_version: '12' });
  assert.equal(notMember.status, 403);
});

test('upgrade where the upgrader needs raised power to copy state (v11, custom levels)', async () => {
  const old = await alice.createRoom({ room_version: '11', power_level_content_override: { users: { [alice.userId]: 100, [bob.userId]: 100 }, events: { 'm.room.tombstone': 100, 'm.room.name': 150 } } });
  await alice.ok('POST', `/rooms/${enc(old)}/invite`, { user_id: bob.userId });
  await bob.ok('POST', `/rooms/${enc(old)}/join`, {});
  const { replacement_room: fresh } = await bob.ok('POST', `/rooms/${enc(old)}/upgrade`, { new_version: '11' });
  const pl = (await bob.state(fresh, 'm.room.power_levels')).body;
  assert.equal(pl.users[bob.userId], 100, 'restored to the old level after copying');
  assert.equal(pl.events['m.room.name'], 150);
  await verifyStoredEvents(s, fresh);
});
