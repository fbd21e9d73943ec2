// The membership lifecycle over HTTP: invite → join → kick → rejoin refused (invite-only) → ban →
// unban → knock (where the join rule allows it), leave and forget, joins by alias, restricted joins
// (join_authorised_via_users_server), and the errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../../testing.ts';
import { Client, enc, newClient, verifyStoredEvents } from './rooms-testkit.ts';

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

const membership = async (c: Client, roomId: string, userId: string) => (await c.state(roomId, 'm.room.member', userId)).body?.membership;

for (const version of ['1', '7', '11', '12']) {
  test(`membership lifecycle in room version ${version}`, async () => {
    const roomId = await alice.createRoom({ room_version: version, preset: 'private_chat' });
    const r = `/rooms/${enc(roomId)}`;
    // Not invited: cannot join an invite-only room.
    const uninvited = await bob.call('POST', `${r}/join`, {});
    assert.equal(uninvited.status, 403);
    assert.equal(uninvited.body.errcode, 'M_FORBIDDEN');

    await alice.ok('POST', `${r}/invite`, { user_id: bob.userId, reason: 'welcome' });
    assert.equal(await membership(alice, roomId, bob.userId), 'invite');
    // Inviting again is fine (inviting.yaml: "or was already invited").
    await alice.ok('POST', `${r}/invite`, { user_id: bob.userId });
    assert.equal((await bob.ok('POST', `${r}/join`, {})).room_id, roomId);
    assert.equal(await membership(alice, roomId, bob.userId), 'join');
    assert.ok((await bob.ok('GET', '/joined_rooms')).joined_rooms.includes(roomId));
    // Inviting a joined member is refused.
    assert.equal((await alice.call('POST', `${r}/invite`, { user_id: bob.userId })).status, 403);
    // Bob (power 0) cannot kick alice.
    assert.equal((await bob.call('POST', `${r}/kick`, { user_id: alice.userId })).status, 403);

    await alice.ok('POST', `${r}/kick`, { user_id: bob.userId, reason: 'bye' });
    const kicked = (await alice.state(roomId, 'm.room.member', bob.userId)).body;
    assert.deepEqual(kicked, { membership: 'leave', reason: 'bye' });
    assert.ok(!(await bob.ok('GET', '/joined_rooms')).joined_rooms.includes(roomId));
    // Rejoining an invite-only room after a kick needs a new invite.
    assert.equal((await bob.call('POST', `${r}/join`, {})).status, 403);
    // Kicking someone not in the room is refused.
    assert.equal((await alice.call('POST', `${r}/kick`, { user_id: bob.userId })).status, 403);

    await alice.ok('POST', `${r}/ban`, { user_id: bob.userId, reason: 'spam' });
    assert.equal(await membership(alice, roomId, bob.userId), 'ban');
    // Banned: cannot be invited, cannot join.
    assert.equal((await alice.call('POST', `${r}/invite`, { user_id: bob.userId })).status, 403);
    await alice.ok('PUT', `${r}/state/m.room.join_rules`, { join_rule: 'public' });
    assert.equal((await bob.call('POST', `${r}/join`, {})).status, 403);
    // Unbanning someone not banned is refused; unbanning bob works and he can join the public room.
    assert.equal((await alice.call('POST', `${r}/unban`, { user_id: carol.userId })).status, 403);
    await alice.ok('POST', `${r}/unban`, { user_id: bob.userId });
    assert.equal(await membership(alice, roomId, bob.userId), 'leave');
    await bob.ok('POST', `${r}/join`, {});
    assert.equal(await membership(alice, roomId, bob.userId), 'join');

    // Knocking: refused under a public join rule; allowed under `knock` (v7+).
    assert.equal((await carol.call('POST', `/knock/${enc(roomId)}`, {})).status, 403);
    await alice.ok('PUT', `${r}/state/m.room.join_rules`, { join_rule: 'knock' });
    if (version === '1') {
      // No knocking before v7: the knock join rule is unknown, so carol can neither knock nor join.
      assert.equal((await carol.call('POST', `/knock/${enc(roomId)}`, {})).status, 403);
      assert.equal((await carol.call('POST', `${r}/join`, {})).status, 403);
      // ... not even when invited (rooms/v1 rule 5.2.6), so back to invite-only for the rest.
      await alice.ok('PUT', `${r}/state/m.room.join_rules`, { join_rule: 'invite' });
    } else {
      assert.equal((await carol.ok('POST', `/knock/${enc(roomId)}`, { reason: 'let me in' })).room_id, roomId);
      assert.equal(await membership(alice, roomId, carol.userId), 'knock');
    }
    // A joined user cannot knock.
    assert.equal((await bob.call('POST', `/knock/${enc(roomId)}`, {})).status, 403);
    // Accept the knock with an invite, then carol joins.
    await alice.ok('POST', `${r}/invite`, { user_id: carol.userId });
    await carol.ok('POST', `/join/${enc(roomId)}`, {});
    assert.equal(await membership(alice, roomId, carol.userId), 'join');

    // Leave, then forget; forgetting while joined is refused.
    assert.equal((await bob.call('POST', `${r}/forget`, {})).status, 400);
    await bob.ok('POST', `${r}/leave`, {});
    assert.equal(await membership(alice, roomId, bob.userId), 'leave');
    // After leaving, bob sees the state as it was when he left, and cannot send.
    assert.equal((await bob.call('GET', `${r}/state/m.room.join_rules`)).status, 200);
    assert.equal((await bob.call('PUT', `${r}/send/m.room.message/after-leave`, { body: 'x' })).status, 403);
    await bob.ok('POST', `${r}/forget`, {});
    const rows = await s.hs.services.rooms.getRoomsForUser(bob.userId, ['leave']);
    assert.ok(!rows.some((x) => x.roomId === roomId));
    await verifyStoredEvents(s, roomId);
  });
}

test('knock is refused in room versions without knocking (v6)', async () => {
  const roomId = await alice.createRoom({ room_version: '6' });
  // v6 does not know the knock join rule: setting it is allowed as state, but knocking fails.
  await alice.ok('PUT', `/rooms/${enc(roomId)}/state/m.room.join_rules`, { join_rule: 'knock' });
  assert.equal((await carol.call('POST', `/knock/${enc(roomId)}`, {})).status, 403);
});

test('rejecting an invite, joining by alias, and the errors of unknown rooms', async () => {
  const roomId = await alice.createRoom({ preset: 'public_chat', room_alias_name: 'lobby', invite: [carol.userId] });
  await carol.ok('POST', `/rooms/${enc(roomId)}/leave`, {}); // rejects the invite
  assert.equal(await membership(alice, roomId, carol.userId), 'leave');
  assert.equal((await bob.ok('POST', `/join/${enc('#lobby:localhost')}`, {})).room_id, roomId);
  const noAlias = await bob.call('POST', `/join/${enc('#nothing:localhost')}`, {});
  assert.equal(noAlias.status, 404);
  assert.equal(noAlias.body.errcode, 'M_NOT_FOUND');
  const remote = await bob.call('POST', `/join/${enc('!abc:elsewhere.example')}`, {});
  assert.equal(remote.status, 404);
  assert.match(remote.body.error, /federation/);
  const garbage = await bob.call('POST', `/join/${enc('nonsense')}`, {});
  assert.equal(garbage.status, 400);
  const badUser = await alice.call('POST', `/rooms/${enc(roomId)}/invite`, { user_id: 'bob' });
  assert.equal(badUser.status, 400);
  const noUser = await alice.call('POST', `/rooms/${enc(roomId)}/ban`, {});
  assert.equal(noUser.status, 400);
  assert.equal(noUser.body.errcode, 'M_MISSING_PARAM');
  const remoteInvite = await alice.call('POST', `/rooms/${enc(roomId)}/invite`, { user_id: '@x:elsewhere.example' });
  assert.equal(remoteInvite.status, 403);
});

test('membership through PUT /state/m.room.member and profile changes update member events', async () => {
  const roomId = await alice.createRoom({ preset: 'public_chat' });
  await bob.ok('POST', `/rooms/${enc(roomId)}/join`, {});
  await alice.ok('PUT', `/rooms/${enc(roomId)}/state/m.room.member/${enc(bob.userId)}`, { membership: 'ban' });
  assert.equal(await membership(alice, roomId, bob.userId), 'ban');
  // Bob cannot set his own membership back to join.
  assert.equal((await bob.call('PUT', `/rooms/${enc(roomId)}/state/m.room.member/${enc(bob.userId)}`, { membership: 'join' })).status, 403);

  await alice.ok('PUT', `/profile/${enc(alice.userId)}/displayname`, { displayname: 'Alice A.' });
  const member = (await alice.state(roomId, 'm.room.member', alice.userId)).body;
  assert.equal(member.displayname, 'Alice A.');
  assert.equal(member.membership, 'join');
});

for (const [version, rule] of [
  ['8', 'restricted'],
  ['10', 'knock_restricted'],
  ['12', 'restricted'],
] as const) {
  test(`restricted join (v${version}, ${rule}): members of an allowed room join, authorised by a local user who may invite`, async () => {
    const space = await alice.createRoom({ room_version: version, preset: 'public_chat' });
    await bob.ok('POST', `/rooms/${enc(space)}/join`, {});
    const roomId = await alice.createRoom({
      room_version: version,
      preset: 'private_chat',
      initial_state: [{ type: 'm.room.join_rules', content: { join_rule: rule, allow: [{ type: 'm.room_membership', room_id: space }] } }],
    });
    const r = `/rooms/${enc(roomId)}`;
    // Carol is not in the space: no condition is met.
    const refused = await carol.call('POST', `${r}/join`, {});
    assert.equal(refused.status, 403);
    assert.equal(refused.body.errcode, 'M_FORBIDDEN');
    // Bob is: the join carries join_authorised_via_users_server naming alice (the only one who may invite).
    await bob.ok('POST', `/join/${enc(roomId)}`, {});
    const join = (await alice.call('GET', `${r}/state/m.room.member/${enc(bob.userId)}?format=event`)).body;
    assert.equal(join.content.membership, 'join');
    assert.equal(join.content.join_authorised_via_users_server, alice.userId);
    if (rule === 'knock_restricted') {
      // knock_restricted: those who meet no condition may knock instead.
      await carol.ok('POST', `/knock/${enc(roomId)}`, {});
      assert.equal(await membership(alice, roomId, carol.userId), 'knock');
    }
    // An invite lifts the restriction: no authoriser is named.
    await alice.ok('POST', `${r}/invite`, { user_id: carol.userId });
    await carol.ok('POST', `${r}/join`, {});
    const carolJoin = (await alice.call('GET', `${r}/state/m.room.member/${enc(carol.userId)}?format=event`)).body;
    assert.equal(carolJoin.content.membership, 'join');
    assert.equal(carolJoin.content.join_authorised_via_users_server, undefined);
    // Leaving the allowed room does not matter once joined; rejoining after leaving needs the condition again.
    await bob.ok('POST', `/rooms/${enc(space)}/leave`, {});
    assert.equal(await membership(alice, roomId, bob.userId), 'join');
    await bob.ok('POST', `${r}/leave`, {});
    assert.equal((await bob.call('POST', `${r}/join`, {})).status, 403);
    await verifyStoredEvents(s, roomId);
  });
}

test('restricted join rules in room versions without them (v7) are unknown: nobody joins uninvited', async () => {
  const space = await alice.createRoom({ room_version: '7', preset: 'public_chat' });
  await bob.ok('POST', `/rooms/${enc(space)}/join`, {});
  const roomId = await alice.createRoom({
    room_version: '7',
    initial_state: [{ type: 'm.room.join_rules', content: { join_rule: 'restricted', allow: [{ type: 'm.room_membership', room_id: space }] } }],
  });
  const r = await bob.call('POST', `/rooms/${enc(roomId)}/join`, {});
  assert.equal(r.status, 403);
  assert.equal(r.body.errcode, 'M_FORBIDDEN');
});
