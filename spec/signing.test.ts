import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import { decodeBase64, encodeBase64 } from './base64.ts';
import { canonicalJsonBytes } from './canonical-json.ts';
import type { Signatures } from './events.ts';
import {
  generateSigningKey,
  publicKeyObjectFromBytes,
  signBytes,
  signJson,
  signingKeyFromSeed,
  verifyBytes,
  verifyJsonSignature,
} from './signing.ts';

// appendices.md "Cryptographic Test Vectors > Signing Key".
const SEED = decodeBase64('YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1');
const KEY = signingKeyFromSeed('ed25519:1', SEED);

test('the test-vector seed yields the Ed25519 public key the spec\'s signatures verify under', () => {
  assert.equal(SEED.length, 32);
  assert.equal(KEY.keyId, 'ed25519:1');
  assert.deepEqual(KEY.seed, SEED);
  // The spec prints no public key for this seed, only signatures made with it. So: the public key we
  // derive, rebuilt from its raw 32 bytes, must verify the signatures printed in "JSON Signing" over
  // the canonical bytes of their objects, and a key from any other seed must not.
  const pub = publicKeyObjectFromBytes(new Uint8Array(KEY.publicKey));
  const printed: Array<[object, string]> = [
    [{}, 'K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ'],
    [{ one: 1, two: 'Two' }, 'KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw'],
  ];
  const otherSeed = new Uint8Array(SEED);
  otherSeed[0]! ^= 1;
  const other = signingKeyFromSeed('ed25519:1', otherSeed);
  for (const [obj, sig] of printed) {
    assert.ok(verifyBytes(canonicalJsonBytes(obj), decodeBase64(sig), pub));
    assert.equal(verifyBytes(canonicalJsonBytes(obj), decodeBase64(sig), other.publicKey), false);
  }
  // Pinned so that a regression in key derivation shows up by name, not only through signatures.
  assert.equal(encodeBase64(KEY.publicKey), 'XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI');
});

test('JSON signing vector: empty object', () => {
  const signed = signJson({}, 'domain', KEY);
  assert.deepEqual(signed, {
    signatures: {
      domain: {
        'ed25519:1': 'K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ',
      },
    },
  });
  assert.ok(verifyJsonSignature(signed, 'domain', 'ed25519:1', KEY.publicKey));
});

test('JSON signing vector: object with data values', () => {
  const signed = signJson({ one: 1, two: 'Two' }, 'domain', KEY);
  assert.deepEqual(signed, {
    one: 1,
    signatures: {
      domain: {
        'ed25519:1': 'KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw',
      },
    },
    two: 'Two',
  });
  assert.ok(verifyJsonSignature(signed, 'domain', 'ed25519:1', KEY.publicKey));
  assert.ok(verifyJsonSignature(signed, 'domain', 'ed25519:1', KEY.publicKeyObject));
});

test('signatures ignore unsigned and existing signatures, and keep other signatures', () => {
  const withExtras: { one: number; two: string; unsigned: object; signatures: Signatures } = {
    one: 1,
    two: 'Two',
    unsigned: { age_ts: 922834800000 },
    signatures: { 'other.example': { 'ed25519:x': 'c2lnbmF0dXJl' }, domain: { 'ed25519:0': 'b2xk' } },
  };
  const signed = signJson(withExtras, 'domain', KEY);
  assert.equal(signed.signatures['domain']!['ed25519:1'], 'KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw');
  assert.equal(signed.signatures['domain']!['ed25519:0'], 'b2xk');
  assert.deepEqual(signed.signatures['other.example'], { 'ed25519:x': 'c2lnbmF0dXJl' });
  assert.deepEqual(signed.unsigned, { age_ts: 922834800000 });
  // The input is untouched.
  assert.deepEqual(withExtras.signatures, { 'other.example': { 'ed25519:x': 'c2lnbmF0dXJl' }, domain: { 'ed25519:0': 'b2xk' } });
  // Changing unsigned does not invalidate; changing signed data does.
  assert.ok(verifyJsonSignature({ ...signed, unsigned: { age: 5 } }, 'domain', 'ed25519:1', KEY.publicKey));
  assert.equal(verifyJsonSignature({ ...signed, two: 'Three' }, 'domain', 'ed25519:1', KEY.publicKey), false);
});

test('verifyJsonSignature is false, never throws, on bad input', () => {
  const good = signJson({ one: 1 }, 'domain', KEY);
  const sig = good.signatures['domain']!['ed25519:1']!;
  const other = generateSigningKey();
  const cases: Array<[unknown, string, string, Uint8Array]> = [
    [good, 'other', 'ed25519:1', KEY.publicKey], // no entry for the server
    [good, 'domain', 'ed25519:2', KEY.publicKey], // no such key id
    [good, 'domain', 'ed25519:1', other.publicKey], // wrong key
    [good, 'domain', 'ed25519:1', new Uint8Array(31)], // malformed key
    [{ one: 1, signatures: { domain: { 'ed25519:1': sig + '!' } } }, 'domain', 'ed25519:1', KEY.publicKey],
    [{ one: 1, signatures: { domain: { 'ed25519:1': sig.slice(0, 40) } } }, 'domain', 'ed25519:1', KEY.publicKey],
    [{ one: 1, signatures: { domain: { 'ed25519:1': 12 } } }, 'domain', 'ed25519:1', KEY.publicKey],
    [{ one: 1, signatures: { domain: 'x' } }, 'domain', 'ed25519:1', KEY.publicKey],
    [{ one: 1, signatures: null }, 'domain', 'ed25519:1', KEY.publicKey],
    [{ one: 1 }, 'domain', 'ed25519:1', KEY.publicKey],
    [{ one: 1.5, signatures: good.signatures }, 'domain', 'ed25519:1', KEY.publicKey], // not canonical JSON
    [{ one: 1, signatures: { domain: { 'curve25519:1': sig } } }, 'domain', 'curve25519:1', KEY.publicKey],
    [good, 'constructor', 'ed25519:1', KEY.publicKey],
    [null, 'domain', 'ed25519:1', KEY.publicKey],
  ];
  for (const [obj, server, keyId, pub] of cases) {
    assert.equal(verifyJsonSignature(obj as object, server, keyId, pub), false, JSON.stringify([obj, server, keyId]));
  }
  assert.equal(verifyJsonSignature(good, 'domain', 'ed25519:1', KEY.publicKey), true);
});

test('signBytes/verifyBytes and the public key cache', () => {
  const data = canonicalJsonBytes({ hello: 'world' });
  const sig = signBytes(data, KEY);
  assert.equal(sig.length, 64);
  assert.ok(verifyBytes(data, sig, KEY.publicKey));
  assert.ok(verifyBytes(data, sig, KEY.publicKeyObject));
  assert.equal(verifyBytes(Buffer.from('other'), sig, KEY.publicKey), false);
  assert.equal(verifyBytes(data, sig.subarray(0, 63), KEY.publicKey), false);
  assert.equal(publicKeyObjectFromBytes(KEY.publicKey), publicKeyObjectFromBytes(new Uint8Array(KEY.publicKey)));
  assert.deepEqual(
    publicKeyObjectFromBytes(KEY.publicKey).export({ format: 'jwk' }),
    createPublicKey(KEY.privateKeyObject).export({ format: 'jwk' }),
  );
  assert.throws(() => publicKeyObjectFromBytes(new Uint8Array(33)));
});

test('generateSigningKey: random ed25519 key ids and working keys', () => {
  const k = generateSigningKey();
  assert.match(k.keyId, /^ed25519:[a-zA-Z0-9_]{6}$/);
  assert.equal(k.seed.length, 32);
  assert.equal(k.publicKey.length, 32);
  assert.notEqual(generateSigningKey().keyId + encodeBase64(generateSigningKey().seed), k.keyId + encodeBase64(k.seed));
  assert.equal(generateSigningKey('abc_1').keyId, 'ed25519:abc_1');
  assert.equal(generateSigningKey('ed25519:abc_1').keyId, 'ed25519:abc_1');
  const signed = signJson({ a: 1 }, 'example.org', k);
  assert.ok(verifyJsonSignature(signed, 'example.org', k.keyId, k.publicKey));
  // Round trip through the seed gives the same key.
  assert.deepEqual(signingKeyFromSeed(k.keyId, k.seed).publicKey, k.publicKey);
  assert.throws(() => signingKeyFromSeed('ed25519:bad id', SEED));
  assert.throws(() => signingKeyFromSeed('rsa:1', SEED));
  assert.throws(() => signingKeyFromSeed('ed25519:1', SEED.subarray(0, 31)));
});
