// Sending events over HTTP: transaction-id idempotency per device, state events and power levels,
// redactions, and the errors for bad input.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../../testing.ts';
import { Client, enc, newClient, verifyStoredEvents } from './rooms-testkit.ts';

let s: TestServer;
let alice: Client;
let bob: Client;
let roomId: string;

before(async () => {
  s = await startTestServer();
  alice = await newClient(s, 'alice');
  bob = await newClient(s, 'bob');
  roomId = await alice.createRoom({ preset: 'public_chat' });
  await bob.ok('POST', `/rooms/${enc(roomId)}/join`, {});
});
after(async () => {
  await s.stop();
});

const countEvents = async (type: string) =>
  Number((await s.hs.db.selectFrom('events').select((eb) => eb.fn.countAll().as('n')).where('room_id', '=', roomId).where('type', '=', type).executeTakeFirstOrThrow()).n);

test('send: the same txn id on the same device returns the same event and stores one', async () => {
  const before = await countEvents('m.room.message');
  const path = `/rooms/${enc(roomId)}/send/m.room.message/txn-1`;
  const [a, b] = await Promise.all([alice.ok('PUT', path, { msgtype: 'm.text', body: 'once' }), alice.ok('PUT', path, { msgtype: 'm.text', body: 'once' })]);
  const c = await alice.ok('PUT', path, { msgtype: 'm.text', body: 'once' });
  assert.equal(a.event_id, b.event_id);
  assert.equal(a.event_id, c.event_id);
  assert.equal(await countEvents('m.room.message'), before + 1);

  // Another device of the same user: a new event.
  const other = new Client(s, { ...(await loginAgain('alice')) });
  const d = await other.ok('PUT', path, { msgtype: 'm.text', body: 'once' });
  assert.notEqual(d.event_id, a.event_id);
  // Another user with the same txn id: a new event.
  const e = await bob.ok('PUT', path, { msgtype: 'm.text', body: 'once' });
  assert.notEqual(e.event_id, a.event_id);
  assert.equal(await countEvents('m.room.message'), before + 3);

  // The event is served with its transaction id to the sending device only.
  const mine = await alice.ok('GET', `/rooms/${enc(roomId)}/event/${enc(a.event_id)}`);
  assert.equal(mine.unsigned.transaction_id, 'txn-1');
  assert.equal(mine.content.body, 'once');
  const theirs = await bob.ok('GET', `/rooms/${enc(roomId)}/event/${enc(a.event_id)}`);
  assert.equal(theirs.unsigned.transaction_id, undefined);
});

async function loginAgain(localpart: string) {
  const r = await fetch(`${s.baseUrl}/_matrix/client/v3/login`, {
    method: 'POST',
    body: JSON.stringify({ type: 'm.login.password', identifier: { type: 'm.id.user', user: localpart }, password: 'correct horse battery staple' }),
  });
  const b = (await r.json()) as { user_id: string; access_token: string; device_id: string };
  assert.equal(r.status, 200, JSON.stringify(b));
  return { userId: b.user_id, accessToken: b.access_token, deviceId: b.device_id };
}

test('send: errors — not a member, unknown room, bad JSON, too large', async () => {
  const carol = await newClient(s, 'carol');
  const notMember = await carol.call('PUT', `/rooms/${enc(roomId)}/send/m.room.message/x1`, { body: 'hi' });
  assert.equal(notMember.status, 403);
  assert.equal(notMember.body.errcode, 'M_FORBIDDEN');
  const unknown = await alice.call('PUT', `/rooms/${enc('!nope:localhost')}/send/m.room.message/x2`, { body: 'hi' });
  assert.equal(unknown.status, 403);
  assert.equal(unknown.body.errcode, 'M_FORBIDDEN');
  const bad = await alice.call('PUT', `/rooms/${enc(roomId)}/send/m.room.message/x3`, undefined, '{"body":');
  assert.equal(bad.status, 400);
  assert.equal(bad.body.errcode, 'M_NOT_JSON');
  const arr = await alice.call('PUT', `/rooms/${enc(roomId)}/send/m.room.message/x4`, [1, 2]);
  assert.equal(arr.status, 400);
  const big = await alice.call('PUT', `/rooms/${enc(roomId)}/send/m.room.message/x5`, { body: 'x'.repeat(70_000) });
  assert.equal(big.status, 413);
  assert.equal(big.body.errcode, 'M_TOO_LARGE');
  const longType = await alice.call('PUT', `/rooms/${enc(roomId)}/send/${'t'.repeat(300)}/x6`, { body: 'x' });
  assert.equal(longType.status, 400);
});

test('state: PUT/GET with and without state key, power levels enforced, GET /state', async () => {
  const put = await alice.ok('PUT', `/rooms/${enc(roomId)}/state/m.room.name`, { name: 'Named' });
  assert.match(put.event_id, /^\$/);
  assert.deepEqual((await bob.call('GET', `/rooms/${enc(roomId)}/state/m.room.name`)).body, { name: 'Named' });
  assert.deepEqual((await bob.call('GET', `/rooms/${enc(roomId)}/state/m.room.name/`)).body, { name: 'Named' });
  const asEvent = await bob.ok('GET', `/rooms/${enc(roomId)}/state/m.room.name/?format=event`);
  assert.equal(asEvent.event_id, put.event_id);
  assert.equal(asEvent.state_key, '');
  await alice.ok('PUT', `/rooms/${enc(roomId)}/state/m.room.name/`, { name: 'Renamed' });
  const renamed = await bob.ok('GET', `/rooms/${enc(roomId)}/state/m.room.name?format=event`);
  assert.equal(renamed.unsigned.replaces_state, put.event_id);
  assert.deepEqual(renamed.unsigned.prev_content, { name: 'Named' });

  await alice.ok('PUT', `/rooms/${enc(roomId)}/state/org.example.thing/${enc('some key')}`, { a: 1 });
  assert.deepEqual((await bob.call('GET', `/rooms/${enc(roomId)}/state/org.example.thing/${enc('some key')}`)).body, { a: 1 });

  // Bob (power 0) may not set state (state_default 50).
  const denied = await bob.call('PUT', `/rooms/${enc(roomId)}/state/m.room.topic`, { topic: 'nope' });
  assert.equal(denied.status, 403);
  assert.equal(denied.body.errcode, 'M_FORBIDDEN');
  assert.match(denied.body.error, /rule/);
  // Nor another user's state key.
  const other = await bob.call('PUT', `/rooms/${enc(roomId)}/state/org.example.x/${enc(alice.userId)}`, {});
  assert.equal(other.status, 403);

  const missing = await bob.call('GET', `/rooms/${enc(roomId)}/state/m.room.avatar`);
  assert.equal(missing.status, 404);
  assert.equal(missing.body.errcode, 'M_NOT_FOUND');
  const carol = await newClient(s, 'carol2');
  assert.equal((await carol.call('GET', `/rooms/${enc(roomId)}/state/m.room.name`)).status, 403);
  assert.equal((await carol.call('GET', `/rooms/${enc(roomId)}/state`)).status, 403);

  const all = await bob.ok('GET', `/rooms/${enc(roomId)}/state`);
  const types = new Set(all.map((e: { type: string }) => e.type));
  for (const t of ['m.room.create', 'm.room.power_levels', 'm.room.join_rules', 'm.room.member', 'm.room.name', 'org.example.thing']) assert.ok(types.has(t), t);
  assert.ok(all.every((e: { room_id: string }) => e.room_id === roomId));

  // Canonical alias checks: bad syntax → M_INVALID_PARAM; a local alias of another room → M_BAD_ALIAS.
  const badAlias = await alice.call('PUT', `/rooms/${enc(roomId)}/state/m.room.canonical_alias`, { alias: 'nope' });
  assert.equal(badAlias.body.errcode, 'M_INVALID_PARAM');
  const notOurs = await alice.call('PUT', `/rooms/${enc(roomId)}/state/m.room.canonical_alias`, { alias: '#unknown:localhost' });
  assert.equal(notOurs.body.errcode, 'M_BAD_ALIAS');
  await alice.ok('PUT', `/directory/room/${enc('#sendtest:localhost')}`, { room_id: roomId });
  await alice.ok('PUT', `/rooms/${enc(roomId)}/state/m.room.canonical_alias`, { alias: '#sendtest:localhost' });

  // Raising bob lets him set the topic.
  const pl = (await alice.state(roomId, 'm.room.power_levels')).body;
  pl.users[bob.userId] = 50;
  await alice.ok('PUT', `/rooms/${enc(roomId)}/state/m.room.power_levels`, pl);
  await bob.ok('PUT', `/rooms/${enc(roomId)}/state/m.room.topic`, { topic: 'now allowed' });
  // ... but not above his own level.
  pl.users[bob.userId] = 100;
  assert.equal((await bob.call('PUT', `/rooms/${enc(roomId)}/state/m.room.power_levels`, pl)).status, 403);
});

test('redaction: own events, others need the redact level, served redacted with redacted_because', async () => {
  const ev = await bob.send(roomId, { msgtype: 'm.text', body: 'secret', extra: 1 });
  const r = await bob.ok('PUT', `/rooms/${enc(roomId)}/redact/${enc(ev)}/r1`, { reason: 'oops' });
  const again = await bob.ok('PUT', `/rooms/${enc(roomId)}/redact/${enc(ev)}/r1`, { reason: 'oops' });
  assert.equal(r.event_id, again.event_id);
  const seen = await alice.ok('GET', `/rooms/${enc(roomId)}/event/${enc(ev)}`);
  assert.deepEqual(seen.content, {});
  assert.equal(seen.unsigned.redacted_because.event_id, r.event_id);
  assert.equal(seen.unsigned.redacted_because.content.reason, 'oops');
  const redaction = await alice.ok('GET', `/rooms/${enc(roomId)}/event/${enc(r.event_id)}`);
  assert.equal(redaction.redacts, ev);
  assert.equal(redaction.content.redacts, ev); // room version 12 carries it in content

  // A user with power 0 cannot redact someone else's event.
  const dave = await newClient(s, 'dave');
  await dave.ok('POST', `/rooms/${enc(roomId)}/join`, {});
  const alices = await alice.send(roomId);
  const denied = await dave.call('PUT', `/rooms/${enc(roomId)}/redact/${enc(alices)}/r2`, {});
  assert.equal(denied.status, 403);
  // Alice (creator) can redact dave's.
  const daves = await dave.send(roomId);
  await alice.ok('PUT', `/rooms/${enc(roomId)}/redact/${enc(daves)}/r3`, {});
  // Unknown event → 404.
  const unknown = await alice.call('PUT', `/rooms/${enc(roomId)}/redact/${enc('$nope')}/r4`, {});
  assert.equal(unknown.status, 404);
  // Redaction through /send (v1.18).
  const viaSend = await dave.send(roomId);
  const rs = await dave.ok('PUT', `/rooms/${enc(roomId)}/send/m.room.redaction/r5`, { redacts: viaSend });
  assert.match(rs.event_id, /^\$/);
  assert.deepEqual((await alice.ok('GET', `/rooms/${enc(roomId)}/event/${enc(viaSend)}`)).content, {});
  await verifyStoredEvents(s, roomId);
});

test('redaction in a room version with top-level redacts (v10)', async () => {
  const room = await alice.createRoom({ room_version: '10', preset: 'public_chat' });
  const ev = await alice.send(room, { msgtype: 'm.text', body: 'x' });
  const r = await alice.ok('PUT', `/rooms/${enc(room)}/redact/${enc(ev)}/v10r`, {});
  const pdu = await s.hs.services.rooms.getPdu(r.event_id);
  assert.equal(pdu!.redacts, ev);
  assert.equal(pdu!.content['redacts'], undefined);
  assert.deepEqual((await alice.ok('GET', `/rooms/${enc(room)}/event/${enc(ev)}`)).content, {});
  await verifyStoredEvents(s, room);
});

test('GET /event: non-members are refused, unknown events get 404', async () => {
  const ev = await alice.send(roomId);
  const eve = await newClient(s, 'eve');
  // rooms.yaml: 404 "not found or you do not have permission to read this event".
  const refused = await eve.call('GET', `/rooms/${enc(roomId)}/event/${enc(ev)}`);
  assert.equal(refused.status, 404);
  assert.equal(refused.body.errcode, 'M_NOT_FOUND');
  assert.equal(refused.body.content, undefined);
  assert.equal((await alice.call('GET', `/rooms/${enc(roomId)}/event/${enc('$missing')}`)).status, 404);
});
