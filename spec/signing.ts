// Ed25519 signing of JSON objects (appendices.md "Signing JSON": "Signing Details" and "Checking for a
// Signature"). All cryptography goes through node:crypto (OpenSSL), which is two orders of magnitude
// faster than pure-JS implementations; federation verifies every incoming event.
import { createPrivateKey, createPublicKey, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { decodeBase64, encodeBase64 } from './base64.ts';
import { withCanonicalJsonBytes, type CanonicalJsonOptions } from './canonical-json.ts';
import type { Signatures } from './events.ts';

export interface SigningKey {
  /** Signing key identifier: algorithm + ':' + version, e.g. `ed25519:a_Bc12`. */
  keyId: string;
  /** The 32-byte Ed25519 seed (the private key as the spec's test vectors give it). */
  seed: Uint8Array;
  /** The 32-byte Ed25519 public key. */
  publicKey: Uint8Array;
  privateKeyObject: KeyObject;
  publicKeyObject: KeyObject;
}

// DER prefixes that wrap a raw 32-byte Ed25519 key (RFC 8410): PKCS#8 private key, SPKI public key.
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

const KEY_VERSION_RE = /^[a-zA-Z0-9_]+$/;
const KEY_VERSION_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_';

/** Builds a signing key from its 32-byte seed. `keyId` is the full identifier, e.g. `ed25519:1`. */
export function signingKeyFromSeed(keyId: string, seed: Uint8Array): SigningKey {
  if (!keyId.startsWith('ed25519:') || !KEY_VERSION_RE.test(keyId.slice(8))) {
    // keys.yaml: "The version must have characters matching the regular expression [a-zA-Z0-9_]".
    throw new Error(`invalid signing key id ${JSON.stringify(keyId)}: expected ed25519:[a-zA-Z0-9_]+`);
  }
  if (seed.length !== 32) throw new Error(`an Ed25519 seed is 32 bytes, got ${seed.length}`);
  const privateKeyObject = createPrivateKey({
    key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]),
    format: 'der',
    type: 'pkcs8',
  });
  const publicKeyObject = createPublicKey(privateKeyObject);
  const spki = publicKeyObject.export({ format: 'der', type: 'spki' });
  const publicKey = new Uint8Array(spki.subarray(spki.length - 32));
  return { keyId, seed: new Uint8Array(seed), publicKey, privateKeyObject, publicKeyObject };
}

/**
 * A fresh random signing key. `keyIdVersion` is the part after `ed25519:` (a full `ed25519:…` id is
 * accepted too); when absent a random 6-character version from [a-zA-Z0-9_] is chosen.
 */
export function generateSigningKey(keyIdVersion?: string): SigningKey {
  let version = keyIdVersion;
  if (version === undefined) {
    const r = randomBytes(6);
    version = '';
    for (let i = 0; i < 6; i++) version += KEY_VERSION_CHARS[r[i]! % KEY_VERSION_CHARS.length];
  } else if (version.startsWith('ed25519:')) {
    version = version.slice(8);
  }
  return signingKeyFromSeed(`ed25519:${version}`, randomBytes(32));
}

// Public keys are looked up per event; building a KeyObject costs far more than a Map hit.
const PUBLIC_KEY_CACHE_MAX = 4096;
const publicKeyCache = new Map<string, KeyObject>();

/** A KeyObject for a raw 32-byte Ed25519 public key, from a bounded cache. Throws on a wrong length. */
export function publicKeyObjectFromBytes(pub: Uint8Array): KeyObject {
  if (pub.length !== 32) throw new Error(`an Ed25519 public key is 32 bytes, got ${pub.length}`);
  const cacheKey = Buffer.from(pub.buffer, pub.byteOffset, 32).toString('latin1');
  let key = publicKeyCache.get(cacheKey);
  if (key === undefined) {
    key = createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, pub]), format: 'der', type: 'spki' });
    if (publicKeyCache.size >= PUBLIC_KEY_CACHE_MAX) {
      // Evict the oldest insertion; Map iterates in insertion order.
      publicKeyCache.delete(publicKeyCache.keys().next().value!);
    }
    publicKeyCache.set(cacheKey, key);
  }
  return key;
}

/** Raw Ed25519 signature (64 bytes) of `data`. */
export function signBytes(data: Uint8Array, key: SigningKey): Uint8Array {
  return sign(null, data, key.privateKeyObject);
}

/** Raw Ed25519 verification. Returns false (never throws) for malformed keys or signatures. */
export function verifyBytes(data: Uint8Array, signature: Uint8Array, publicKey: Uint8Array | KeyObject): boolean {
  if (signature.length !== 64) return false;
  try {
    const key = publicKey instanceof Uint8Array ? publicKeyObjectFromBytes(publicKey) : publicKey;
    return verify(null, data, key, signature);
  } catch {
    return false;
  }
}

/** Assignment that creates an own property even for the key `__proto__` (wire data may contain it). */
function setOwn<V>(target: Record<string, V>, key: string, value: V): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

/** The object without `signatures` and `unsigned`: what a JSON signature covers. */
function signableView(obj: object): Record<string, unknown> {
  const { signatures: _s, unsigned: _u, ...rest } = obj as Record<string, unknown>;
  return rest;
}

/**
 * Signs `obj` as `serverName` with `key` (appendices.md "Signing Details"): the signature covers the
 * canonical JSON of the object without `signatures` and `unsigned`; it is added to any existing
 * `signatures` (other servers' and other keys' signatures are kept) and `unsigned` is carried over.
 * Returns a new object; `obj` is not mutated.
 */
export function signJson<T extends object>(
  obj: T,
  serverName: string,
  key: SigningKey,
  options?: CanonicalJsonOptions,
): T & { signatures: Signatures } {
  const signature = encodeBase64(withCanonicalJsonBytes(signableView(obj), options, (bytes) => signBytes(bytes, key)));
  const existing = (obj as { signatures?: unknown }).signatures;
  const signatures: Signatures = {};
  if (existing !== null && typeof existing === 'object' && !Array.isArray(existing)) {
    for (const [server, keys] of Object.entries(existing as Record<string, unknown>)) {
      if (keys !== null && typeof keys === 'object' && !Array.isArray(keys)) {
        setOwn(signatures, server, { ...(keys as Record<string, string>) });
      }
    }
  }
  const mine: Record<string, string> = Object.hasOwn(signatures, serverName) ? signatures[serverName]! : {};
  setOwn(mine, key.keyId, signature);
  setOwn(signatures, serverName, mine);
  return { ...obj, signatures };
}

/**
 * Checks that `obj` carries a valid signature by `serverName` under `keyId` (appendices.md
 * "Checking for a Signature", steps 1 and 4–7; choosing which key ids to check and fetching keys is
 * the caller's business). Returns false, never throws, for missing or garbled signatures, non-ed25519
 * key ids, unusable public keys, or objects that are not encodable as canonical JSON.
 */
export function verifyJsonSignature(
  obj: object,
  serverName: string,
  keyId: string,
  publicKey: Uint8Array | KeyObject,
  options?: CanonicalJsonOptions,
): boolean {
  try {
    if (obj === null || typeof obj !== 'object') return false;
    // Step 2: we only understand ed25519.
    if (!keyId.startsWith('ed25519:')) return false;
    const signatures = (obj as { signatures?: unknown }).signatures;
    if (signatures === null || typeof signatures !== 'object') return false;
    // Own properties only: a server called `constructor` must not find Object.prototype's.
    if (!Object.hasOwn(signatures, serverName)) return false;
    const byServer = (signatures as Record<string, unknown>)[serverName];
    if (byServer === null || typeof byServer !== 'object' || !Object.hasOwn(byServer, keyId)) return false;
    const sigB64 = (byServer as Record<string, unknown>)[keyId];
    if (typeof sigB64 !== 'string') return false;
    let signature: Uint8Array;
    try {
      signature = decodeBase64(sigB64); // step 4
    } catch {
      return false;
    }
    if (signature.length !== 64) return false;
    // Steps 5–7: canonical JSON without signatures/unsigned, checked against the key.
    return withCanonicalJsonBytes(signableView(obj), options, (bytes) => verifyBytes(bytes, signature, publicKey));
  } catch {
    return false;
  }
}
