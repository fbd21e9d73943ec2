// Key backup over HTTP: versions (create, current, by version, update, delete), keys for all rooms,
// one room and one session, the spec's replacement rules, etag/count, M_WRONG_ROOM_KEYS_VERSION.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../../testing.ts';
import { enc, newClient } from './rooms-testkit.ts';
import { shouldReplace } from '../../services/key-backup.ts';

let s: TestServer;
let n = 0;
const fresh = async (name: string) => newClient(s, `${name}${n++}`);
const ALG = 'm.megolm_backup.v1.curve25519-aes-sha2';
const authData = (k = 'pubkey') => ({ public_key: k, signatures: { '@x:localhost': { 'ed25519:D': 'sig' } } });
const key = (fmi: number, fc: number, verified: boolean, tag = `${fmi}/${fc}/${verified}`) => ({
  first_message_index: fmi,
  forwarded_count: fc,
  is_verified: verified,
  session_data: { ephemeral: 'e', ciphertext: tag, mac: 'm' },
});

before(async () => {
  s = await startTestServer();
});
after(async () => {
  await s.stop();
});

test('versions: create, get current and by version, update with the same algorithm, delete', async () => {
  const alice = await fresh('alice');
  let r = await alice.call('GET', '/room_keys/version');
  assert.equal(r.status, 404);
  assert.equal(r.body.errcode, 'M_NOT_FOUND');

  const v1 = (await alice.ok('POST', '/room_keys/version', { algorithm: ALG, auth_data: authData('k1') })).version;
  const v2 = (await alice.ok('POST', '/room_keys/version', { algorithm: ALG, auth_data: authData('k2') })).version;
  assert.notEqual(v1, v2);
  assert.deepEqual(await alice.ok('GET', '/room_keys/version'), { algorithm: ALG, auth_data: authData('k2'), count: 0, etag: '0', version: v2 });
  assert.deepEqual((await alice.ok('GET', `/room_keys/version/${v1}`)).auth_data, authData('k1'));
  assert.equal((await alice.call('GET', '/room_keys/version/999')).status, 404);
  assert.equal((await alice.call('GET', '/room_keys/version/notanumber')).status, 404);

  // Another user sees none of it.
  const bob = await fresh('bob');
  assert.equal((await bob.call('GET', '/room_keys/version')).status, 404);
  assert.equal((await bob.call('GET', `/room_keys/version/${v1}`)).status, 404);

  // Update: only auth_data changes; the algorithm must match, and a body version must match the path.
  await alice.ok('PUT', `/room_keys/version/${v2}`, { algorithm: ALG, auth_data: authData('k2b'), version: v2 });
  assert.deepEqual((await alice.ok('GET', '/room_keys/version')).auth_data, authData('k2b'));
  r = await alice.call('PUT', `/room_keys/version/${v2}`, { algorithm: 'm.other', auth_data: authData() });
  assert.equal(r.status, 400);
  assert.equal(r.body.errcode, 'M_INVALID_PARAM');
  r = await alice.call('PUT', `/room_keys/version/${v2}`, { algorithm: ALG, auth_data: authData(), version: v1 });
  assert.equal(r.body.errcode, 'M_INVALID_PARAM');
  assert.equal((await alice.call('PUT', '/room_keys/version/999', { algorithm: ALG, auth_data: authData() })).status, 404);
  assert.equal((await alice.call('POST', '/room_keys/version', { algorithm: ALG })).status, 400);

  // Delete the current one: the previous becomes current; deleting again succeeds; unknown is 404.
  await alice.ok('DELETE', `/room_keys/version/${v2}`);
  await alice.ok('DELETE', `/room_keys/version/${v2}`);
  assert.equal((await alice.call('DELETE', '/room_keys/version/999')).status, 404);
  assert.equal((await alice.ok('GET', '/room_keys/version')).version, v1);
  assert.equal((await alice.call('GET', `/room_keys/version/${v2}`)).status, 404);
  // Version numbers are never reused.
  const v3 = (await alice.ok('POST', '/room_keys/version', { algorithm: ALG, auth_data: authData() })).version;
  assert.ok(Number(v3) > Number(v2));
});

test('keys: store and read for all rooms, one room and one session; etag and count; delete', async () => {
  const alice = await fresh('alice');
  const v = (await alice.ok('POST', '/room_keys/version', { algorithm: ALG, auth_data: authData() })).version;
  const room1 = '!r1:localhost';
  const room2 = '!r2:localhost';
  // Megolm session ids are base64 and may contain '/' and '+'.
  const sid = 'ab/cd+ef';
  let r = await alice.ok('PUT', `/room_keys/keys?version=${v}`, { rooms: { [room1]: { sessions: { s1: key(0, 0, false), s2: key(1, 0, true) } } } });
  assert.equal(r.count, 2);
  const etag1 = r.etag;
  r = await alice.ok('PUT', `/room_keys/keys/${enc(room2)}?version=${v}`, { sessions: { s3: key(0, 0, false) } });
  assert.equal(r.count, 3);
  assert.notEqual(r.etag, etag1);
  r = await alice.ok('PUT', `/room_keys/keys/${enc(room2)}/${enc(sid)}?version=${v}`, key(5, 1, false));
  assert.equal(r.count, 4);
  const etag2 = r.etag;

  const all = await alice.ok('GET', `/room_keys/keys?version=${v}`);
  assert.deepEqual(Object.keys(all.rooms).sort(), [room1, room2]);
  assert.deepEqual(all.rooms[room1].sessions.s2, key(1, 0, true));
  assert.deepEqual((await alice.ok('GET', `/room_keys/keys/${enc(room2)}?version=${v}`)).sessions, { s3: key(0, 0, false), [sid]: key(5, 1, false) });
  assert.deepEqual(await alice.ok('GET', `/room_keys/keys/${enc(room2)}/${enc(sid)}?version=${v}`), key(5, 1, false));
  assert.deepEqual(await alice.ok('GET', `/room_keys/keys/${enc('!none:localhost')}?version=${v}`), { sessions: {} });
  assert.equal((await alice.call('GET', `/room_keys/keys/${enc(room1)}/nope?version=${v}`)).status, 404);
  const info = await alice.ok('GET', '/room_keys/version');
  assert.equal(info.count, 4);
  assert.equal(info.etag, etag2);

  // A write that changes nothing keeps the etag.
  r = await alice.ok('PUT', `/room_keys/keys/${enc(room1)}/s2?version=${v}`, key(9, 9, false));
  assert.equal(r.etag, etag2);

  r = await alice.ok('DELETE', `/room_keys/keys/${enc(room2)}/${enc(sid)}?version=${v}`);
  assert.equal(r.count, 3);
  r = await alice.ok('DELETE', `/room_keys/keys/${enc(room1)}?version=${v}`);
  assert.equal(r.count, 1);
  r = await alice.ok('DELETE', `/room_keys/keys?version=${v}`);
  assert.equal(r.count, 0);
  assert.deepEqual(await alice.ok('GET', `/room_keys/keys?version=${v}`), { rooms: {} });

  // Bad bodies write nothing.
  const bad = await alice.call('PUT', `/room_keys/keys?version=${v}`, { rooms: { [room1]: { sessions: { ok: key(0, 0, false), broken: { first_message_index: 0 } } } } });
  assert.equal(bad.status, 400);
  assert.equal((await alice.ok('GET', '/room_keys/version')).count, 0);
  assert.equal((await alice.call('PUT', `/room_keys/keys`, { rooms: {} })).status, 400, 'version is required');
});

test('keys: the replacement rules (is_verified, then first_message_index, then forwarded_count)', async () => {
  const alice = await fresh('alice');
  const v = (await alice.ok('POST', '/room_keys/version', { algorithm: ALG, auth_data: authData() })).version;
  const path = `/room_keys/keys/${enc('!room:localhost')}/sess?version=${v}`;
  const stored = async () => (await alice.ok('GET', path)).session_data.ciphertext;

  await alice.ok('PUT', path, key(10, 2, false, 'A'));
  await alice.ok('PUT', path, key(0, 0, false, 'B')); // lower first_message_index wins
  assert.equal(await stored(), 'B');
  await alice.ok('PUT', path, key(5, 0, false, 'C')); // higher index loses
  assert.equal(await stored(), 'B');
  await alice.ok('PUT', path, key(20, 5, true, 'D')); // verified beats unverified whatever the rest
  assert.equal(await stored(), 'D');
  await alice.ok('PUT', path, key(0, 0, false, 'E')); // unverified never replaces verified
  assert.equal(await stored(), 'D');
  await alice.ok('PUT', path, key(20, 3, true, 'F')); // same index: lower forwarded_count wins
  assert.equal(await stored(), 'F');
  await alice.ok('PUT', path, key(20, 4, true, 'G'));
  assert.equal(await stored(), 'F');
  await alice.ok('PUT', path, key(20, 3, true, 'H')); // complete tie: the stored copy stays
  assert.equal(await stored(), 'F');

  assert.equal(shouldReplace({ is_verified: false, first_message_index: 0, forwarded_count: 0 }, { is_verified: true, first_message_index: 9, forwarded_count: 9 }), true);
  assert.equal(shouldReplace({ is_verified: true, first_message_index: 9, forwarded_count: 9 }, { is_verified: true, first_message_index: 8, forwarded_count: 99 }), true);
});

test('M_WRONG_ROOM_KEYS_VERSION with current_version; 404 without a backup', async () => {
  const alice = await fresh('alice');
  let r = await alice.call('PUT', `/room_keys/keys/${enc('!r:localhost')}/s?version=1`, key(0, 0, false));
  assert.equal(r.status, 404);
  const v1 = (await alice.ok('POST', '/room_keys/version', { algorithm: ALG, auth_data: authData() })).version;
  await alice.ok('PUT', `/room_keys/keys/${enc('!r:localhost')}/s?version=${v1}`, key(0, 0, false));
  const v2 = (await alice.ok('POST', '/room_keys/version', { algorithm: ALG, auth_data: authData() })).version;
  for (const path of [`/room_keys/keys?version=${v1}`, `/room_keys/keys/${enc('!r:localhost')}?version=${v1}`, `/room_keys/keys/${enc('!r:localhost')}/s?version=${v1}`]) {
    const body = path.endsWith(`/s?version=${v1}`) ? key(0, 0, false) : path.startsWith('/room_keys/keys?') ? { rooms: {} } : { sessions: {} };
    r = await alice.call('PUT', path, body);
    assert.equal(r.status, 403, path);
    assert.equal(r.body.errcode, 'M_WRONG_ROOM_KEYS_VERSION');
    assert.equal(r.body.current_version, v2);
  }
  // The old version's keys are still readable; the new one starts empty.
  assert.equal((await alice.ok('GET', `/room_keys/version/${v1}`)).count, 1);
  assert.equal((await alice.ok('GET', '/room_keys/version')).count, 0);
});
