// End-to-end encryption journeys with matrix-js-sdk and its Rust crypto (initRustCrypto, in-memory
// store): encrypted messages between two users decrypt exactly; a second device receives new messages;
// cross-signing bootstrapped by Alice is visible to Bob; key backup restores history on a new device;
// once one-time keys run out the fallback key keeps new sessions working; Alice verifies Bob by emoji
// (SAS over to-device) and only she sees her user-signing signature. Every response goes through the
// harness's spec validator.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MsgType, createClient, type MatrixClient, type MatrixEvent } from 'matrix-js-sdk';
import type { Logger } from 'matrix-js-sdk/lib/logger.js';
import { CryptoEvent, VerificationPhase, VerifierEvent, type ShowSasCallbacks, type VerificationRequest } from 'matrix-js-sdk/lib/crypto-api/index.js';
import { withHarness, type Harness } from './harness.ts';
import { PASSWORD, registerWithDummy, startSyncing, waitUntil, type Credentials } from './journey-kit.ts';

const PW = PASSWORD;
const ENCRYPTION = { type: 'm.room.encryption', state_key: '', content: { algorithm: 'm.megolm.v1.aes-sha2' } };

const register = (h: Harness, username: string): Promise<Credentials> => registerWithDummy(h.newClient(), username);

async function login(h: Harness, userId: string): Promise<{ userId: string; accessToken: string; deviceId: string }> {
  const r = await h.newClient().loginRequest({ type: 'm.login.password', identifier: { type: 'm.id.user', user: userId }, password: PW } as never);
  return { userId: r.user_id, accessToken: r.access_token, deviceId: r.device_id };
}

/** A started client with Rust crypto, after its first sync. */
async function startCrypto(h: Harness, creds: { userId: string; accessToken: string; deviceId: string }, client?: MatrixClient): Promise<MatrixClient> {
  const c = client ?? h.newClient(creds.userId, creds.accessToken, creds.deviceId);
  await c.initRustCrypto({ useIndexedDB: false });
  return startSyncing(c);
}

/** The decrypted body of the message in `roomId` with this text, once `c` has it (fails on a decryption failure). */
async function receive(c: MatrixClient, roomId: string, body: string): Promise<MatrixEvent> {
  return waitUntil(`${c.getUserId()}/${c.getDeviceId()} to decrypt "${body}"`, async () => {
    const room = c.getRoom(roomId);
    if (!room) return null;
    for (const e of room.getLiveTimeline().getEvents()) {
      if (e.getWireType() !== 'm.room.encrypted') continue;
      await c.decryptEventIfNeeded(e);
      if (e.getClearContent()?.body === body) return e;
    }
    return null;
  });
}

async function joinedRoom(c: MatrixClient, roomId: string): Promise<void> {
  await waitUntil(`${c.getUserId()} to see ${roomId} joined`, () => c.getRoom(roomId)?.getMyMembership() === 'join');
}

async function sharedEncryptedRoom(alice: MatrixClient, bob: MatrixClient): Promise<string> {
  const { room_id: roomId } = await alice.createRoom({ preset: 'private_chat' as never, invite: [bob.getUserId()!], initial_state: [ENCRYPTION] });
  await waitUntil('bob to be invited', () => bob.getRoom(roomId)?.getMyMembership() === 'invite');
  await bob.joinRoom(roomId);
  await joinedRoom(alice, roomId);
  await joinedRoom(bob, roomId);
  await waitUntil('alice to see bob joined', () => alice.getRoom(roomId)?.getMember(bob.getUserId()!)?.membership === 'join');
  return roomId;
}

test('Alice and Bob exchange encrypted messages that decrypt to the exact plaintext', { timeout: 120_000 }, async () => {
  await withHarness(async (h) => {
    const alice = await startCrypto(h, await register(h, 'alice'));
    const bob = await startCrypto(h, await register(h, 'bob'));
    const roomId = await sharedEncryptedRoom(alice, bob);

    const text = 'Hello Bob — ünïcødé ✓ 🔐';
    await alice.sendMessage(roomId, { msgtype: MsgType.Text, body: text });
    const got = await receive(bob, roomId, text);
    assert.equal(got.getSender(), alice.getUserId());
    assert.equal(got.getType(), 'm.room.message');
    assert.deepEqual(got.getClearContent(), { msgtype: MsgType.Text, body: text });
    assert.equal(got.getWireContent().algorithm, 'm.megolm.v1.aes-sha2', 'carried as ciphertext');

    await bob.sendMessage(roomId, { msgtype: MsgType.Text, body: 'Hi Alice' });
    await receive(alice, roomId, 'Hi Alice');

    // The server stored ciphertext only.
    const server = await h.fetch(`${h.baseUrl}/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=50`, {
      headers: { authorization: `Bearer ${alice.getAccessToken()}` },
    });
    const raw = JSON.stringify(await server.json());
    assert.ok(!raw.includes('Hello Bob'), 'no plaintext on the server');
  });
});

test("Bob's second device receives new messages encrypted to it", { timeout: 120_000 }, async () => {
  await withHarness(async (h) => {
    const alice = await startCrypto(h, await register(h, 'alice'));
    const bobCreds = await register(h, 'bob');
    const bob = await startCrypto(h, bobCreds);
    const roomId = await sharedEncryptedRoom(alice, bob);
    await alice.sendMessage(roomId, { msgtype: MsgType.Text, body: 'before the second device' });
    await receive(bob, roomId, 'before the second device');

    // Bob logs in elsewhere; Alice learns of the new device through device_lists on her sync.
    const bob2 = await startCrypto(h, await login(h, bobCreds.userId));
    const bob2Id = bob2.getDeviceId()!;
    await waitUntil("Alice's client to know Bob's second device", async () => {
      const devices = await alice.getCrypto()!.getUserDeviceInfo([bobCreds.userId]);
      return devices.get(bobCreds.userId)?.has(bob2Id);
    });
    await alice.sendMessage(roomId, { msgtype: MsgType.Text, body: 'after the second device' });
    await receive(bob2, roomId, 'after the second device');
    await receive(bob, roomId, 'after the second device');
  });
});

test('Alice bootstraps cross-signing and Bob sees her devices as cross-signed', { timeout: 120_000 }, async () => {
  await withHarness(async (h) => {
    const aliceCreds = await register(h, 'alice');
    const alice = await startCrypto(h, aliceCreds);
    const bob = await startCrypto(h, await register(h, 'bob'));
    const roomId = await sharedEncryptedRoom(alice, bob);
    assert.equal(await bob.getCrypto()!.userHasCrossSigningKeys(aliceCreds.userId, true), false);

    await alice.getCrypto()!.bootstrapCrossSigning({
      authUploadDeviceSigningKeys: async (makeRequest) => {
        await makeRequest({ type: 'm.login.password', identifier: { type: 'm.id.user', user: aliceCreds.userId }, password: PW } as never);
      },
    });
    assert.equal(await alice.getCrypto()!.isCrossSigningReady(), true);

    // Bob's client hears of Alice's new keys through device_lists and re-queries them.
    await waitUntil('Bob to see Alice cross-signed', async () => {
      if (!(await bob.getCrypto()!.userHasCrossSigningKeys(aliceCreds.userId))) return false;
      const status = await bob.getCrypto()!.getDeviceVerificationStatus(aliceCreds.userId, aliceCreds.deviceId);
      return status?.signedByOwner;
    });
    // (The Rust backend returns master_key/self_signing_key/user_signing_key, whatever the typings say.)
    const keys = (await bob.getCrypto()!.getUserCrossSigningKeys(aliceCreds.userId)) as Record<string, { keys: Record<string, string> } | undefined> | null;
    const aliceMasterId = await alice.getCrypto()!.getCrossSigningKeyId();
    assert.ok(aliceMasterId, 'Alice has a master key');
    assert.deepEqual(Object.values(keys?.master_key?.keys ?? {}), [aliceMasterId], 'Bob has her master key');
    assert.ok(keys?.self_signing_key, 'and her self-signing key');
    assert.equal(keys?.user_signing_key, undefined, 'not her user-signing key');
    // Her user-signing key stays private to her.
    const q = await h.fetch(`${h.baseUrl}/_matrix/client/v3/keys/query`, {
      method: 'POST',
      headers: { authorization: `Bearer ${bob.getAccessToken()}`, 'content-type': 'application/json' },
      body: JSON.stringify({ device_keys: { [aliceCreds.userId]: [] } }),
    });
    const body = (await q.json()) as { master_keys: Record<string, unknown>; user_signing_keys?: Record<string, unknown> };
    assert.ok(body.master_keys[aliceCreds.userId]);
    assert.equal(body.user_signing_keys?.[aliceCreds.userId], undefined);

    // A second device of Alice's that she cross-signs is trusted by Bob as signed by its owner.
    const alice2 = await startCrypto(h, await login(h, aliceCreds.userId));
    await waitUntil("Alice's first device to know her second", async () => (await alice.getCrypto()!.getUserDeviceInfo([aliceCreds.userId], true)).get(aliceCreds.userId)?.has(alice2.getDeviceId()!));
    await alice.getCrypto()!.crossSignDevice(alice2.getDeviceId()!);
    await waitUntil('Bob to see the second device cross-signed', async () => (await bob.getCrypto()!.getDeviceVerificationStatus(aliceCreds.userId, alice2.getDeviceId()!))?.signedByOwner);
    void roomId;
  });
});

test('key backup: Alice backs up her room keys, logs in on a new device, restores and decrypts old history', { timeout: 120_000 }, async () => {
  await withHarness(async (h) => {
    const aliceCreds = await register(h, 'alice');
    const alice = await startCrypto(h, aliceCreds);
    const bob = await startCrypto(h, await register(h, 'bob'));
    const roomId = await sharedEncryptedRoom(alice, bob);

    await alice.getCrypto()!.resetKeyBackup();
    const version = await alice.getCrypto()!.getActiveSessionBackupVersion();
    assert.ok(version, 'backup enabled');
    await bob.sendMessage(roomId, { msgtype: MsgType.Text, body: 'old history from Bob' });
    await alice.sendMessage(roomId, { msgtype: MsgType.Text, body: 'old history from Alice' });
    await receive(alice, roomId, 'old history from Bob');

    // Wait until Alice's client has uploaded both sessions to the backup.
    await waitUntil('both room keys in the backup', async () => {
      const r = await h.fetch(`${h.baseUrl}/_matrix/client/v3/room_keys/version/${version}`, { headers: { authorization: `Bearer ${alice.getAccessToken()}` } });
      return ((await r.json()) as { count: number }).count >= 2;
    });
    const backupKey = await alice.getCrypto()!.getSessionBackupPrivateKey();
    assert.ok(backupKey);

    // A new device: no keys for the old messages until it restores the backup.
    const alice2 = await startCrypto(h, await login(h, aliceCreds.userId));
    await joinedRoom(alice2, roomId);
    await alice2.getCrypto()!.storeSessionBackupPrivateKey(backupKey, version);
    const result = await alice2.getCrypto()!.restoreKeyBackup();
    assert.ok(result.imported >= 2, `imported ${result.imported} of ${result.total}`);
    for (const text of ['old history from Bob', 'old history from Alice']) {
      await waitUntil(`the new device to decrypt "${text}"`, async () => {
        const room = alice2.getRoom(roomId);
        for (const e of room?.getLiveTimeline().getEvents() ?? []) {
          if (e.getWireType() !== 'm.room.encrypted') continue;
          if (e.isDecryptionFailure()) await e.attemptDecryption(alice2.getCrypto() as never, { isRetry: true });
          else await alice2.decryptEventIfNeeded(e);
          if (e.getClearContent()?.body === text) return true;
        }
        return false;
      });
    }
  });
});

async function bootstrapCrossSigning(c: MatrixClient, userId: string): Promise<void> {
  await c.getCrypto()!.bootstrapCrossSigning({
    authUploadDeviceSigningKeys: async (makeRequest) => {
      await makeRequest({ type: 'm.login.password', identifier: { type: 'm.id.user', user: userId }, password: PW } as never);
    },
  });
}

async function queryKeys(h: Harness, c: MatrixClient, userId: string): Promise<{ master_keys: Record<string, { signatures?: Record<string, Record<string, string>> }> }> {
  const r = await h.fetch(`${h.baseUrl}/_matrix/client/v3/keys/query`, {
    method: 'POST',
    headers: { authorization: `Bearer ${c.getAccessToken()}`, 'content-type': 'application/json' },
    body: JSON.stringify({ device_keys: { [userId]: [] } }),
  });
  return (await r.json()) as never;
}

test('Alice verifies Bob by emoji (SAS over to-device); her user-signing signature on his master key is seen by her only', { timeout: 120_000 }, async () => {
  await withHarness(async (h) => {
    const aliceCreds = await register(h, 'alice');
    const bobCreds = await register(h, 'bob');
    const alice = await startCrypto(h, aliceCreds);
    const bob = await startCrypto(h, bobCreds);
    const carol = await startCrypto(h, await register(h, 'carol'));
    await sharedEncryptedRoom(alice, bob);
    await bootstrapCrossSigning(alice, aliceCreds.userId);
    await bootstrapCrossSigning(bob, bobCreds.userId);
    await waitUntil("Alice's client to have Bob's cross-signing keys", async () => {
      await alice.getCrypto()!.getUserDeviceInfo([bobCreds.userId], true);
      return alice.getCrypto()!.userHasCrossSigningKeys(bobCreds.userId, true);
    });
    await waitUntil("Bob's client to have Alice's cross-signing keys", async () => {
      await bob.getCrypto()!.getUserDeviceInfo([aliceCreds.userId], true);
      return bob.getCrypto()!.userHasCrossSigningKeys(aliceCreds.userId, true);
    });
    assert.equal((await alice.getCrypto()!.getUserVerificationStatus(bobCreds.userId)).isCrossSigningVerified(), false);

    // Each side confirms the emoji it is shown; both must be shown the same ones.
    const shown = new Map<string, string>();
    const confirmSas = (who: string) => (sas: ShowSasCallbacks) => {
      shown.set(who, JSON.stringify(sas.sas.emoji));
      void sas.confirm();
    };
    const bobRequest = new Promise<VerificationRequest>((resolve) => bob.once(CryptoEvent.VerificationRequestReceived, resolve));
    const aliceRequest = await alice.getCrypto()!.requestDeviceVerification(bobCreds.userId, bobCreds.deviceId);
    const incoming = await bobRequest;
    await incoming.accept();
    await waitUntil('the request to be ready', () => aliceRequest.phase === VerificationPhase.Ready);
    const aliceVerifier = await aliceRequest.startVerification('m.sas.v1');
    const bobVerifier = await waitUntil("Bob's side of the SAS", () => incoming.verifier);
    aliceVerifier.on(VerifierEvent.ShowSas, confirmSas('alice'));
    bobVerifier.on(VerifierEvent.ShowSas, confirmSas('bob'));
    await Promise.all([aliceVerifier.verify(), bobVerifier.verify()]);
    assert.ok(shown.get('alice'), 'Alice was shown emoji');
    assert.equal(shown.get('alice'), shown.get('bob'), 'both sides derived the same SAS');

    // Alice's client signs Bob's master key with her user-signing key and uploads the signature.
    await waitUntil('Alice to trust Bob through cross-signing', async () => (await alice.getCrypto()!.getUserVerificationStatus(bobCreds.userId)).isCrossSigningVerified());
    const bobMaster = (await bob.getCrypto()!.getCrossSigningKeyId())!;
    const aliceUsk = await waitUntil("the user-signing signature on the server", async () => {
      const sigs = (await queryKeys(h, alice, bobCreds.userId)).master_keys[bobCreds.userId]?.signatures?.[aliceCreds.userId];
      return sigs && Object.keys(sigs).find((k) => k !== `ed25519:${bobMaster}`);
    });
    assert.ok(aliceUsk.startsWith('ed25519:'));
    // client-server-api "Cross-signing": nobody else sees signatures made by a user-signing key.
    for (const viewer of [bob, carol]) {
      const seen = (await queryKeys(h, viewer, bobCreds.userId)).master_keys[bobCreds.userId];
      assert.ok(seen, 'Bob\'s master key is public');
      assert.equal(seen.signatures?.[aliceCreds.userId], undefined, `${viewer.getUserId()} does not see Alice's signature`);
    }
    carol.stopClient();
  });
});

const noop = (): void => {};
const quietLogger: Logger = { trace: noop, debug: noop, info: noop, warn: noop, error: noop, getChild: () => quietLogger };

test('one-time keys run out and the fallback key keeps new sessions working', { timeout: 120_000 }, async () => {
  await withHarness(async (h) => {
    const alice = await startCrypto(h, await register(h, 'alice'));
    const bobCreds = await register(h, 'bob');
    const carol = await register(h, 'carol');

    // Bob's client, with a switch that holds back its /keys/upload requests so it cannot replenish.
    let gate: Promise<void> = Promise.resolve();
    let open: () => void = noop;
    let fallbackUploaded = false;
    const bobFetch = async (url: string | URL | Request, init?: RequestInit): Promise<Response> => {
      if (String(url).includes('/keys/upload')) {
        await gate;
        const res = await h.fetch(url as string, init);
        if (res.ok && typeof init?.body === 'string' && init.body.includes('fallback_keys')) fallbackUploaded = true;
        return res;
      }
      return h.fetch(url as string, init);
    };
    const bob = createClient({ baseUrl: h.baseUrl, userId: bobCreds.userId, accessToken: bobCreds.accessToken, deviceId: bobCreds.deviceId, fetchFn: bobFetch as typeof fetch, ...(process.env.AXON_CONFORMANCE_LOG ? {} : { logger: quietLogger }) });
    try {
      await startCrypto(h, bobCreds, bob);
      const roomId = await sharedEncryptedRoom(alice, bob);
      await waitUntil("Bob's fallback key on the server", () => fallbackUploaded);
      gate = new Promise((r) => (open = r));

      // Carol claims every one-time key of Bob's device until the server hands out the fallback key.
      const claim = async () => {
        const r = await h.fetch(`${h.baseUrl}/_matrix/client/v3/keys/claim`, {
          method: 'POST',
          headers: { authorization: `Bearer ${carol.accessToken}`, 'content-type': 'application/json' },
          body: JSON.stringify({ one_time_keys: { [bobCreds.userId]: { [bobCreds.deviceId]: 'signed_curve25519' } } }),
        });
        const body = (await r.json()) as { one_time_keys: Record<string, Record<string, Record<string, { fallback?: boolean }>>> };
        return Object.entries(body.one_time_keys[bobCreds.userId]?.[bobCreds.deviceId] ?? {});
      };
      const seen = new Set<string>();
      let fallbackId: string | null = null;
      for (let i = 0; i < 500 && !fallbackId; i++) {
        const got = await claim();
        assert.equal(got.length, 1);
        const [id, key] = got[0]!;
        if (key.fallback) fallbackId = id;
        else {
          assert.ok(!seen.has(id), `one-time key ${id} handed out twice`);
          seen.add(id);
        }
      }
      assert.ok(fallbackId, 'the fallback key was handed out');
      assert.ok(seen.size > 0, 'one-time keys were handed out first');
      assert.equal((await claim())[0]![0], fallbackId, 'the fallback key is handed out again');

      // Alice has no Olm session with Bob yet: her client claims a key for his device (the fallback
      // key now), starts a session with it and sends the room key over it.
      await alice.sendMessage(roomId, { msgtype: MsgType.Text, body: 'sent over a fallback-key session' });
      await receive(bob, roomId, 'sent over a fallback-key session');
    } finally {
      open();
      bob.stopClient();
    }
  });
});
