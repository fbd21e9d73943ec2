import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateSigningKey } from '../../spec/signing.ts';
import { startTestServer } from '../testing.ts';
import { DbServerKeyStore } from './server-keys.ts';

test('server keys are stored, looked up while valid, never replaced by other bytes, and extended by later fetches', async () => {
  const s = await startTestServer();
  try {
    const store = new DbServerKeyStore(s.hs.db);
    const k1 = generateSigningKey('k1');
    const old = generateSigningKey('old');
    await store.save({ serverName: 'r.test', verifyKeys: new Map([['ed25519:k1', k1.publicKey]]), oldVerifyKeys: new Map([['ed25519:old', { publicKey: old.publicKey, expiredTs: 50 }]]), validUntilTs: 1000, fetchedTs: 10 });
    assert.deepEqual(await store.verifyKey('r.test', 'ed25519:k1', 999), { publicKey: k1.publicKey, validUntilTs: 1000 });
    assert.equal(await store.verifyKey('r.test', 'ed25519:k1', 1000), null, 'expired');
    assert.equal(await store.verifyKey('r.test', 'ed25519:old', 0), null, 'old keys do not sign requests');
    assert.equal(await store.verifyKey('other.test', 'ed25519:k1', 0), null);
    // A later fetch extends validity; a different key under the same id does not replace the first.
    await store.save({ serverName: 'r.test', verifyKeys: new Map([['ed25519:k1', k1.publicKey]]), oldVerifyKeys: new Map(), validUntilTs: 5000, fetchedTs: 20 });
    assert.equal((await store.verifyKey('r.test', 'ed25519:k1', 4000))?.validUntilTs, 5000);
    await store.save({ serverName: 'r.test', verifyKeys: new Map([['ed25519:k1', generateSigningKey('k1').publicKey]]), oldVerifyKeys: new Map(), validUntilTs: 9000, fetchedTs: 30 });
    assert.deepEqual(await store.verifyKey('r.test', 'ed25519:k1', 4000), { publicKey: k1.publicKey, validUntilTs: 5000 });
  } finally {
    await s.stop();
  }
});
