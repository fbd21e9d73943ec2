// E2EE keys over HTTP: /keys/upload signature checks, /keys/query, /keys/claim (atomic under
// concurrency, fallback keys), cross-signing uploads with UIA, signature uploads and their visibility,
// device deletion, and the device_lists sync stream / /keys/changes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../../testing.ts';
import { registerUser } from '../../testing-users.ts';
import { generateSigningKey, signJson } from '../../../spec/signing.ts';
import { Client, enc, newClient } from './rooms-testkit.ts';
import { CrossSigning, FakeDevice, curveKey } from './e2ee-testkit.ts';
import type { SyncStream } from '../../sync/extensions.ts';
import type { Requester } from '../../http/api.ts';

let s: TestServer;
let n = 0;
const fresh = async (name: string) => newClient(s, `${name}${n++}`);

before(async () => {
  s = await startTestServer();
});
after(async () => {
  await s.stop();
});

function stream(name: string): SyncStream {
  const st = s.hs.services.syncStreams.streams.find((x) => x.name === name);
  assert.ok(st, `sync stream ${name} registered`);
  return st;
}
function requesterOf(c: Client): Requester {
  return { userId: c.userId, deviceId: c.user.deviceId, isGuest: false, sessionId: 'test' };
}
async function collect(name: string, c: Client, since: number | null) {
  const st = stream(name);
  const r = requesterOf(c);
  const upTo = await st.currentPosition(r);
  const out = await st.collect({ requester: r, since, upTo, joinedRoomIds: [], fullState: false, filter: null });
  return { upTo, top: (out.top ?? {}) as Record<string, any> };
}

test('upload: device keys, one-time and fallback keys; counts; query returns them with the display name', async () => {
  const alice = await fresh('alice');
  const dev = new FakeDevice(alice);
  const dk = dev.deviceKeys();
  const r = await dev.upload({ device_keys: dk, one_time_keys: dev.oneTimeKeys(5), fallback_keys: dev.fallbackKey() });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body.one_time_key_counts, { signed_curve25519: 5 });
  await alice.ok('PUT', `/devices/${enc(dev.deviceId)}`, { display_name: 'Phone' });

  const bob = await fresh('bob');
  const q = await bob.ok('POST', '/keys/query', { device_keys: { [alice.userId]: [] } });
  const got = q.device_keys[alice.userId][dev.deviceId];
  assert.deepEqual(got.keys, dk.keys);
  assert.deepEqual(got.signatures, dk.signatures);
  assert.deepEqual(got.unsigned, { device_display_name: 'Phone' });
  assert.deepEqual(q.failures, {});

  // Only the listed devices when a list is given; remote users are reported as failures.
  const q2 = await bob.ok('POST', '/keys/query', { device_keys: { [alice.userId]: ['NOPE'], '@x:elsewhere.example': [] } });
  assert.deepEqual(q2.device_keys[alice.userId], {});
  assert.ok(q2.failures['elsewhere.example']);

  // Sync extensions: counts and unused fallback key types, always.
  const c = await collect('device_lists', alice, null);
  assert.deepEqual(c.top.device_one_time_keys_count, { signed_curve25519: 5 });
  assert.deepEqual(c.top.device_unused_fallback_key_types, ['signed_curve25519']);

  // The same one-time key again is fine (a retried request); a different key under the same id is not.
  const again = await dev.upload({ device_keys: dk });
  assert.equal(again.status, 200);
  const otks = dev.oneTimeKeys(1);
  assert.equal((await dev.upload({ one_time_keys: otks })).status, 200);
  assert.equal((await dev.upload({ one_time_keys: otks })).status, 200);
  const [id] = Object.keys(otks);
  const clash = await dev.upload({ one_time_keys: { [id!]: signJson({ key: curveKey() }, alice.userId, dev.ed) } });
  assert.equal(clash.status, 400);
});

test('upload: keys for another user or device, or signed by the wrong key, are rejected', async () => {
  const mallory = await fresh('mallory');
  const victim = await fresh('victim');
  const dev = new FakeDevice(mallory);

  const forOtherUser = signJson({ ...(dev.deviceKeys() as object), user_id: victim.userId, signatures: undefined }, victim.userId, dev.ed);
  let r = await dev.upload({ device_keys: forOtherUser });
  assert.equal(r.status, 400);
  assert.equal(r.body.errcode, 'M_INVALID_PARAM');

  const otherDevice = new FakeDevice(mallory);
  r = await dev.upload({ device_keys: otherDevice.deviceKeys({ device_id: 'SOMEOTHER', keys: { 'ed25519:SOMEOTHER': dev.edPublic } }) });
  assert.equal(r.status, 400);

  // Signed under the right key id, but by a different key than the one it publishes.
  const wrong = generateSigningKey(dev.deviceId);
  r = await dev.upload({ device_keys: dev.deviceKeys({}, wrong) });
  assert.equal(r.status, 400);
  assert.equal(r.body.errcode, 'M_INVALID_SIGNATURE');

  // Tampered after signing.
  const tampered = { ...dev.deviceKeys(), algorithms: ['m.olm.v1.curve25519-aes-sha2'] };
  r = await dev.upload({ device_keys: tampered });
  assert.equal(r.body.errcode, 'M_INVALID_SIGNATURE');

  // Not signed at all.
  const { signatures: _s, ...unsignedKeys } = dev.deviceKeys();
  r = await dev.upload({ device_keys: { ...unsignedKeys, signatures: {} } });
  assert.equal(r.body.errcode, 'M_INVALID_SIGNATURE');

  // Nothing was stored.
  const q = await victim.ok('POST', '/keys/query', { device_keys: { [mallory.userId]: [], [victim.userId]: [] } });
  assert.deepEqual(q.device_keys[mallory.userId], {});
  assert.deepEqual(q.device_keys[victim.userId], {});

  // One-time keys signed by the wrong key.
  assert.equal((await dev.upload({ device_keys: dev.deviceKeys() })).status, 200);
  r = await dev.upload({ one_time_keys: dev.oneTimeKeys(2, wrong) });
  assert.equal(r.status, 400);
  assert.equal(r.body.errcode, 'M_INVALID_SIGNATURE');
  r = await dev.upload({ fallback_keys: { 'signed_curve25519:F1': signJson({ key: curveKey(), fallback: true }, mallory.userId, wrong) } });
  assert.equal(r.body.errcode, 'M_INVALID_SIGNATURE');
  assert.deepEqual((await dev.upload({})).body.one_time_key_counts, { signed_curve25519: 0 });
});

test('claim: keys in upload order, each once; then the fallback key, marked used until replaced', async () => {
  const alice = await fresh('alice');
  const bob = await fresh('bob');
  const dev = new FakeDevice(alice);
  const first = dev.oneTimeKeys(2);
  await dev.upload({ device_keys: dev.deviceKeys(), one_time_keys: first });
  const second = dev.oneTimeKeys(1);
  await dev.upload({ one_time_keys: second, fallback_keys: dev.fallbackKey('FALLBACK1') });

  const claim = () => bob.ok('POST', '/keys/claim', { one_time_keys: { [alice.userId]: { [dev.deviceId]: 'signed_curve25519' } } });
  const seen: string[] = [];
  for (let i = 0; i < 3; i++) seen.push(...Object.keys((await claim()).one_time_keys[alice.userId][dev.deviceId]));
  assert.deepEqual(seen.slice(2), Object.keys(second), 'the later upload comes last');
  assert.deepEqual(new Set(seen.slice(0, 2)), new Set(Object.keys(first)));
  assert.deepEqual((await dev.upload({})).body.one_time_key_counts, { signed_curve25519: 0 });
  assert.deepEqual((await collect('device_lists', alice, null)).top.device_unused_fallback_key_types, ['signed_curve25519']);

  const fb1 = (await claim()).one_time_keys[alice.userId][dev.deviceId];
  const fb2 = (await claim()).one_time_keys[alice.userId][dev.deviceId];
  assert.deepEqual(Object.keys(fb1), ['signed_curve25519:FALLBACK1']);
  assert.equal(fb1['signed_curve25519:FALLBACK1'].fallback, true);
  assert.deepEqual(fb2, fb1, 'the fallback key is handed out again');
  assert.deepEqual((await collect('device_lists', alice, null)).top.device_unused_fallback_key_types, []);

  // Re-uploading the same fallback key keeps it used; a new one is unused.
  const fbAgain = { 'signed_curve25519:FALLBACK1': fb1['signed_curve25519:FALLBACK1'] };
  await dev.upload({ fallback_keys: fbAgain });
  assert.deepEqual((await collect('device_lists', alice, null)).top.device_unused_fallback_key_types, []);
  await dev.upload({ fallback_keys: dev.fallbackKey('FALLBACK2') });
  assert.deepEqual((await collect('device_lists', alice, null)).top.device_unused_fallback_key_types, ['signed_curve25519']);
  assert.deepEqual(Object.keys((await claim()).one_time_keys[alice.userId][dev.deviceId]), ['signed_curve25519:FALLBACK2']);

  // Unknown devices and users are simply missing.
  const none = await bob.ok('POST', '/keys/claim', { one_time_keys: { [alice.userId]: { NODEVICE: 'signed_curve25519' }, '@nobody:localhost': { X: 'signed_curve25519' } } });
  assert.deepEqual(none.one_time_keys, {});
});

test('claim: concurrent claims against one device never return the same one-time key twice', async () => {
  const alice = await fresh('alice');
  const dev = new FakeDevice(alice);
  const OTKS = 8;
  const CLAIMS = 40;
  await dev.upload({ device_keys: dev.deviceKeys(), one_time_keys: dev.oneTimeKeys(OTKS), fallback_keys: dev.fallbackKey('FB') });
  const claimers = await Promise.all([0, 1, 2, 3].map((i) => registerUser(s.baseUrl, `claimer${n}_${i}`)));
  const results = await Promise.all(
    Array.from({ length: CLAIMS }, async (_, i) => {
      const c = claimers[i % claimers.length]!;
      const r = await fetch(`${s.baseUrl}/_matrix/client/v3/keys/claim`, {
        method: 'POST',
        headers: { authorization: `Bearer ${c.accessToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ one_time_keys: { [alice.userId]: { [dev.deviceId]: 'signed_curve25519' } } }),
      });
      assert.equal(r.status, 200);
      const body = (await r.json()) as any;
      return Object.keys(body.one_time_keys[alice.userId][dev.deviceId]);
    }),
  );
  const ids = results.flat();
  assert.equal(ids.length, CLAIMS, 'every claim got a key');
  const otks = ids.filter((k) => k !== 'signed_curve25519:FB');
  assert.equal(otks.length, OTKS, 'every one-time key was handed out');
  assert.equal(new Set(otks).size, OTKS, 'no one-time key was handed out twice');
  assert.equal(ids.length - otks.length, CLAIMS - OTKS, 'the rest got the fallback key');
});

test('claim: concurrent multi-device claims straight into the service: no key twice, no deadlock, fallback for the rest', async () => {
  // No HTTP in between, so every claim reaches the database before any finishes (on PGlite too), and
  // each asks for several devices in a different order (row locks taken in different orders would
  // deadlock on PostgreSQL).
  const alice = await fresh('alice');
  const devs = [new FakeDevice(alice), new FakeDevice(await fresh('alice')), new FakeDevice(await fresh('alice'))];
  const OTKS = 6;
  const CLAIMS = 30;
  for (const d of devs) await d.upload({ device_keys: d.deviceKeys(), one_time_keys: d.oneTimeKeys(OTKS), fallback_keys: d.fallbackKey('FB') });
  const keys = s.hs.services.e2ee.keys;
  const results = await Promise.all(
    Array.from({ length: CLAIMS }, (_, i) => {
      const order = i % 2 === 0 ? devs : [...devs].reverse();
      const req: Record<string, Record<string, string>> = {};
      for (const d of order.slice(0, 2 + (i % 2))) (req[d.userId] ??= {})[d.deviceId] = 'signed_curve25519';
      return keys.claim({ one_time_keys: req }) as Promise<{ one_time_keys: Record<string, Record<string, Record<string, unknown>>> }>;
    }),
  );
  for (const d of devs) {
    const asked = Array.from({ length: CLAIMS }, (_, i) => (i % 2 === 0 ? devs : [...devs].reverse()).slice(0, 2 + (i % 2)).includes(d)).filter(Boolean).length;
    const got = results.flatMap((r) => Object.keys(r.one_time_keys[d.userId]?.[d.deviceId] ?? {}));
    assert.equal(got.length, asked, `every claim for ${d.deviceId} got a key`);
    const otks = got.filter((k) => k !== 'signed_curve25519:FB');
    assert.equal(new Set(otks).size, otks.length, 'no one-time key was handed out twice');
    assert.equal(otks.length, Math.min(OTKS, asked), 'every one-time key was handed out');
  }
});

test('cross-signing: upload, validation, UIA only when replacing keys, visibility in /keys/query', async () => {
  const alice = await fresh('alice');
  const bob = await fresh('bob');
  const cs = new CrossSigning(alice.userId);

  // A self-signing key with no master key anywhere.
  let r = await alice.call('POST', '/keys/device_signing/upload', { self_signing_key: cs.selfSigningKey() });
  assert.equal(r.status, 400);
  assert.equal(r.body.errcode, 'M_MISSING_PARAM');
  // Signed by the wrong key.
  r = await alice.call('POST', '/keys/device_signing/upload', { master_key: cs.masterKey(), self_signing_key: cs.selfSigningKey(cs.userSigning) });
  assert.equal(r.body.errcode, 'M_INVALID_SIGNATURE');
  // For someone else.
  r = await alice.call('POST', '/keys/device_signing/upload', { master_key: new CrossSigning(bob.userId).masterKey() });
  assert.equal(r.status, 400);
  // A key colliding with a device id.
  const clash = new CrossSigning(alice.userId);
  r = await alice.call('POST', '/keys/device_signing/upload', { master_key: { ...clash.masterKey(), keys: { [`ed25519:${alice.user.deviceId}`]: alice.user.deviceId } } });
  assert.equal(r.status, 400, 'not a 32-byte key');

  // First upload: no UIA.
  const body = cs.uploadBody();
  r = await alice.call('POST', '/keys/device_signing/upload', body);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  // The identical keys again: still no UIA (idempotent retries).
  r = await alice.call('POST', '/keys/device_signing/upload', body);
  assert.equal(r.status, 200);

  // Replacing the master key needs the password.
  const cs2 = new CrossSigning(alice.userId);
  r = await alice.call('POST', '/keys/device_signing/upload', cs2.uploadBody());
  assert.equal(r.status, 401);
  assert.ok(r.body.session);
  assert.deepEqual(r.body.flows, [{ stages: ['m.login.password'] }]);
  let q = await bob.ok('POST', '/keys/query', { device_keys: { [alice.userId]: [] } });
  assert.deepEqual(q.master_keys[alice.userId].keys, cs.masterKey().keys, 'nothing changed before UIA completed');

  // Bob sees master and self-signing keys, never Alice's user-signing key; Alice sees all three.
  assert.ok(q.self_signing_keys[alice.userId]);
  assert.equal(q.user_signing_keys[alice.userId], undefined);
  const mine = await alice.ok('POST', '/keys/query', { device_keys: { [alice.userId]: [] } });
  assert.deepEqual(mine.user_signing_keys[alice.userId].keys, cs.userSigningKey().keys);

  r = await alice.call('POST', '/keys/device_signing/upload', {
    ...cs2.uploadBody(),
    auth: { type: 'm.login.password', session: r.body.session, identifier: { type: 'm.id.user', user: alice.userId }, password: 'correct horse battery staple' },
  });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  q = await bob.ok('POST', '/keys/query', { device_keys: { [alice.userId]: [] } });
  assert.deepEqual(q.master_keys[alice.userId].keys, cs2.masterKey().keys);
  assert.deepEqual(q.self_signing_keys[alice.userId].keys, cs2.selfSigningKey().keys);
});

test('signatures: devices by the self-signing key, master by a device, others by the user-signing key; failures per key', async () => {
  const alice = await fresh('alice');
  const bob = await fresh('bob');
  const carol = await fresh('carol');
  const aDev = new FakeDevice(alice);
  const bDev = new FakeDevice(bob);
  await aDev.upload({ device_keys: aDev.deviceKeys() });
  await bDev.upload({ device_keys: bDev.deviceKeys() });
  const acs = new CrossSigning(alice.userId);
  const bcs = new CrossSigning(bob.userId);
  await alice.ok('POST', '/keys/device_signing/upload', acs.uploadBody());
  await bob.ok('POST', '/keys/device_signing/upload', bcs.uploadBody());

  const aliceDevice = (await alice.ok('POST', '/keys/query', { device_keys: { [alice.userId]: [] } })).device_keys[alice.userId][aDev.deviceId];
  const { unsigned: _u, ...aliceDeviceKeys } = aliceDevice;
  const bobMaster = bcs.masterKey();
  const aliceMaster = acs.masterKey();
  const r = await alice.ok('POST', '/keys/signatures/upload', {
    [alice.userId]: {
      [aDev.deviceId]: signJson(aliceDeviceKeys, alice.userId, acs.selfSigning),
      [acs.pub(acs.master)]: signJson(aliceMaster, alice.userId, aDev.ed),
      NOSUCHDEVICE: signJson({ ...aliceDeviceKeys, device_id: 'NOSUCHDEVICE' }, alice.userId, acs.selfSigning),
    },
    [bob.userId]: {
      [bcs.pub(bcs.master)]: signJson(bobMaster, alice.userId, acs.userSigning),
      // Bob's device may only be signed by Bob.
      [bDev.deviceId]: signJson({ user_id: bob.userId }, alice.userId, acs.selfSigning),
    },
  });
  assert.deepEqual(Object.keys(r.failures[alice.userId] ?? {}), ['NOSUCHDEVICE']);
  assert.equal(r.failures[alice.userId].NOSUCHDEVICE.errcode, 'M_NOT_FOUND');
  assert.deepEqual(Object.keys(r.failures[bob.userId] ?? {}), [bDev.deviceId]);

  // A bad signature is reported as M_INVALID_SIGNATURE and not stored.
  const forged = signJson(aliceDeviceKeys, alice.userId, acs.selfSigning);
  (forged.signatures as any)[alice.userId][acs.selfSigning.keyId] = (signJson({ other: 1 }, alice.userId, acs.selfSigning).signatures as any)[alice.userId][acs.selfSigning.keyId];
  const bad = await alice.ok('POST', '/keys/signatures/upload', { [alice.userId]: { [aDev.deviceId]: forged } });
  assert.equal(bad.failures[alice.userId][aDev.deviceId].errcode, 'M_INVALID_SIGNATURE');
  // Changed content is refused too.
  const changed = await alice.ok('POST', '/keys/signatures/upload', { [alice.userId]: { [aDev.deviceId]: signJson({ ...aliceDeviceKeys, algorithms: [] }, alice.userId, acs.selfSigning) } });
  assert.equal(changed.failures[alice.userId][aDev.deviceId].errcode, 'M_INVALID_PARAM');

  // Everyone sees the self-signing signature on Alice's device and her device's signature on her master key.
  const byCarol = await carol.ok('POST', '/keys/query', { device_keys: { [alice.userId]: [], [bob.userId]: [] } });
  assert.ok(byCarol.device_keys[alice.userId][aDev.deviceId].signatures[alice.userId][acs.selfSigning.keyId]);
  assert.ok(byCarol.device_keys[alice.userId][aDev.deviceId].signatures[alice.userId][`ed25519:${aDev.deviceId}`], 'the self-signature stays');
  assert.ok(byCarol.master_keys[alice.userId].signatures[alice.userId][`ed25519:${aDev.deviceId}`]);
  // Only Alice sees her user-signing signature on Bob's master key.
  assert.equal(byCarol.master_keys[bob.userId].signatures?.[alice.userId], undefined);
  const byBob = await bob.ok('POST', '/keys/query', { device_keys: { [bob.userId]: [] } });
  assert.equal(byBob.master_keys[bob.userId].signatures?.[alice.userId], undefined);
  const byAlice = await alice.ok('POST', '/keys/query', { device_keys: { [bob.userId]: [] } });
  assert.ok(byAlice.master_keys[bob.userId].signatures[alice.userId][acs.userSigning.keyId]);
});

test('device deletion removes the device keys, one-time keys and signatures', async () => {
  const alice = await fresh('alice');
  const dev = new FakeDevice(alice);
  await dev.upload({ device_keys: dev.deviceKeys(), one_time_keys: dev.oneTimeKeys(3) });
  const other = await fresh('other');
  assert.ok((await other.ok('POST', '/keys/query', { device_keys: { [alice.userId]: [] } })).device_keys[alice.userId][dev.deviceId]);
  const first = await alice.call('DELETE', `/devices/${enc(dev.deviceId)}`, {});
  assert.equal(first.status, 401);
  const r = await alice.call('DELETE', `/devices/${enc(dev.deviceId)}`, {
    auth: { type: 'm.login.password', session: first.body.session, identifier: { type: 'm.id.user', user: alice.userId }, password: 'correct horse battery staple' },
  });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual((await other.ok('POST', '/keys/query', { device_keys: { [alice.userId]: [] } })).device_keys[alice.userId], {});
  const left = await s.hs.db.selectFrom('e2e_one_time_keys').select('key_id').where('user_id', '=', alice.userId).execute();
  assert.equal(left.length, 0);
});

test('device_lists: key changes reach users sharing an encrypted room; joins are changed, leaves are left; /keys/changes', async () => {
  const alice = await fresh('alice');
  const bob = await fresh('bob');
  const stranger = await fresh('stranger');
  const plainRoomMate = await fresh('plain');
  const roomId = await alice.createRoom({ preset: 'public_chat', initial_state: [{ type: 'm.room.encryption', state_key: '', content: { algorithm: 'm.megolm.v1.aes-sha2' } }] });
  const plainRoom = await alice.createRoom({ preset: 'public_chat' });
  await plainRoomMate.ok('POST', `/join/${enc(plainRoom)}`, {});

  const { upTo: p0 } = await collect('device_lists', alice, null);
  await bob.ok('POST', `/join/${enc(roomId)}`, {});
  await waitFor(async () => (await collect('device_lists', alice, p0)).top.device_lists?.changed?.includes(bob.userId));
  // Bob hears about Alice (a new room-mate) too.
  const { upTo: b0 } = await collect('device_lists', bob, null);
  void b0;

  const { upTo: p1 } = await collect('device_lists', alice, null);
  const bDev = new FakeDevice(bob);
  await bDev.upload({ device_keys: bDev.deviceKeys() });
  const sDev = new FakeDevice(stranger);
  await sDev.upload({ device_keys: sDev.deviceKeys() });
  const pDev = new FakeDevice(plainRoomMate);
  await pDev.upload({ device_keys: pDev.deviceKeys() });
  const c1 = await collect('device_lists', alice, p1);
  assert.deepEqual(c1.top.device_lists, { changed: [bob.userId], left: [] }, 'only room-mates in encrypted rooms');
  // /keys/changes counts every shared room (keys.yaml) and takes sync positions.
  const ch = await alice.ok('GET', `/keys/changes?from=${p1}&to=${c1.upTo}`);
  assert.deepEqual(ch.changed.sort(), [bob.userId, plainRoomMate.userId].sort());
  assert.deepEqual(ch.left, []);

  // Nothing new: no device_lists at all.
  const c2 = await collect('device_lists', alice, c1.upTo);
  assert.equal(c2.top.device_lists, undefined);

  await bob.ok('POST', `/rooms/${enc(roomId)}/leave`, {});
  await waitFor(async () => (await collect('device_lists', alice, c1.upTo)).top.device_lists?.left?.includes(bob.userId));
  const c3 = await collect('device_lists', alice, c1.upTo);
  assert.deepEqual(c3.top.device_lists, { changed: [], left: [bob.userId] });

  // Bob's keys changing while he shares nothing with Alice is not her business.
  await bDev.upload({ device_keys: bDev.deviceKeys() });
  assert.equal((await collect('device_lists', alice, c3.upTo)).top.device_lists, undefined);
});

async function waitFor(cond: () => Promise<unknown>, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail('condition not met in time');
}
