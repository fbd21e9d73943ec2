import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeBase64 } from '../spec/base64.ts';
import { generateSigningKey, signJson, type SigningKey } from '../spec/signing.ts';
import { MAX_KEY_VALIDITY_MS, parseServerKeys, ServerKeyRing, ServerKeysError } from './keys.ts';

const NOW = 1_700_000_000_000;

function keysResponse(server: string, keys: SigningKey[], validUntil: number, signers = keys, old: Record<string, unknown> = {}) {
  let body: Record<string, unknown> = {
    server_name: server,
    valid_until_ts: validUntil,
    verify_keys: Object.fromEntries(keys.map((k) => [k.keyId, { key: encodeBase64(k.publicKey) }])),
    old_verify_keys: old,
  };
  for (const s of signers) body = signJson(body, server, s);
  return body;
}

test('parseServerKeys: a self-signed response is accepted, validity capped at seven days', () => {
  const k = generateSigningKey('a1');
  const parsed = parseServerKeys(keysResponse('remote.example', [k], NOW + 3600_000), 'remote.example', NOW);
  assert.deepEqual(parsed.verifyKeys.get('ed25519:a1'), k.publicKey);
  assert.equal(parsed.validUntilTs, NOW + 3600_000);
  const long = parseServerKeys(keysResponse('remote.example', [k], NOW + 365 * 24 * 3600_000), 'remote.example', NOW);
  assert.equal(long.validUntilTs, NOW + MAX_KEY_VALIDITY_MS);
  const old = generateSigningKey('old');
  const withOld = parseServerKeys(keysResponse('remote.example', [k], NOW + 1000, [k], { 'ed25519:old': { key: encodeBase64(old.publicKey), expired_ts: 5 } }), 'remote.example', NOW);
  assert.deepEqual(withOld.oldVerifyKeys.get('ed25519:old'), { publicKey: old.publicKey, expiredTs: 5 });
});

test('parseServerKeys refuses wrong server names, missing or bad self-signatures and expired keys', () => {
  const k = generateSigningKey('a1');
  const other = generateSigningKey('a1');
  const cases: [unknown, RegExp][] = [
    [keysResponse('evil.example', [k], NOW + 1000), /not remote\.example/],
    [keysResponse('remote.example', [k], NOW + 1000, []), /not signed/],
    [keysResponse('remote.example', [k], NOW - 1), /expired/],
    [{ ...keysResponse('remote.example', [k], NOW + 1000), valid_until_ts: NOW + 2000 }, /does not verify/],
    [keysResponse('remote.example', [k], NOW + 1000, [other]), /does not verify/],
    [{ ...keysResponse('remote.example', [k], NOW + 1000), verify_keys: { 'ed25519:a1': { key: 'short' } } }, /32-byte|base64/],
    ['nope', /JSON object/],
  ];
  for (const [json, re] of cases) assert.throws(() => parseServerKeys(json, 'remote.example', NOW), (e: Error) => e instanceof ServerKeysError && re.test(e.message));
});

test('ServerKeyRing caches, refetches for unknown keys at most once per interval, and after expiry', async () => {
  let now = NOW;
  let current = generateSigningKey('k1');
  let fetches = 0;
  const ring = new ServerKeyRing({
    now: () => now,
    minRefetchIntervalMs: 30_000,
    source: {
      async fetchServerKeys(name) {
        fetches++;
        return keysResponse(name, [current], now + 3600_000);
      },
    },
  });
  assert.deepEqual(await ring.verifyKey('r.example', 'ed25519:k1'), current.publicKey);
  assert.deepEqual(await ring.verifyKey('r.example', 'ed25519:k1'), current.publicKey);
  assert.equal(fetches, 1);
  // Unknown key right after a fetch: no new fetch yet.
  assert.equal(await ring.verifyKey('r.example', 'ed25519:k2'), null);
  assert.equal(fetches, 1);
  // The server rotated; after the interval the new key is fetched.
  current = generateSigningKey('k2');
  now += 31_000;
  assert.deepEqual(await ring.verifyKey('r.example', 'ed25519:k2'), current.publicKey);
  assert.equal(fetches, 2);
  // Expired keys are not used: refetched.
  now += 3600_000;
  assert.deepEqual(await ring.verifyKey('r.example', 'ed25519:k2'), current.publicKey);
  assert.equal(fetches, 3);
  // Concurrent lookups share one fetch; failures give null.
  const failing = new ServerKeyRing({ now: () => now, source: { fetchServerKeys: async () => { fetches++; throw new Error('down'); } } });
  const before = fetches;
  assert.deepEqual(await Promise.all([failing.verifyKey('x.example', 'ed25519:a'), failing.verifyKey('x.example', 'ed25519:a')]), [null, null]);
  assert.equal(fetches, before + 1);
});

test('ServerKeyRing consults and fills its persistent store: stored keys are used without fetching', async () => {
  const k = generateSigningKey('k1');
  const saved: string[] = [];
  const store = {
    rows: new Map<string, { publicKey: Uint8Array; validUntilTs: number }>(),
    async verifyKey(server: string, keyId: string, now: number) {
      const r = this.rows.get(`${server} ${keyId}`);
      return r && r.validUntilTs > now ? r : null;
    },
    async save(keys: import('./keys.ts').ServerKeys) {
      saved.push(keys.serverName);
      for (const [id, pub] of keys.verifyKeys) this.rows.set(`${keys.serverName} ${id}`, { publicKey: pub, validUntilTs: keys.validUntilTs });
    },
  };
  let fetches = 0;
  const source = { fetchServerKeys: async (name: string) => (fetches++, keysResponse(name, [k], NOW + 3600_000)) };
  const first = new ServerKeyRing({ now: () => NOW, source, store });
  assert.deepEqual(await first.verifyKey('r.example', 'ed25519:k1'), k.publicKey);
  assert.deepEqual([fetches, saved], [1, ['r.example']]);
  // A new process (a fresh ring) finds the key in the store, with the remote unreachable.
  const second = new ServerKeyRing({ now: () => NOW + 1000, source: { fetchServerKeys: async () => { throw new Error('down'); } }, store });
  assert.deepEqual(await second.verifyKey('r.example', 'ed25519:k1'), k.publicKey);
  // Past the stored validity it is not used.
  const late = new ServerKeyRing({ now: () => NOW + 3600_001, source: { fetchServerKeys: async () => { throw new Error('down'); } }, store });
  assert.equal(await late.verifyKey('r.example', 'ed25519:k1'), null);
});
