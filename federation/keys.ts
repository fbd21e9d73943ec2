// Other servers' signing keys (server-server-api.md "Retrieving server keys"): fetched from
// GET /_matrix/key/v2/server on the server itself, checked (server_name, self-signature by the keys it
// publishes, validity), and cached until the lesser of valid_until_ts and seven days from fetching.
//
// Two levels of cache: in memory per process, and an optional persistent ServerKeyStore (the
// homeserver keeps it in PostgreSQL) so keys survive restarts and are shared between processes.
// Notary queries (/_matrix/key/v2/query) are a later addition behind ServerKeySource.
import { decodeBase64 } from '../spec/base64.ts';
import { verifyJsonSignature } from '../spec/signing.ts';

/** keys_server.yaml: "Servers MUST use the lesser of this field and 7 days into the future". */
export const MAX_KEY_VALIDITY_MS = 7 * 24 * 3600 * 1000;

export interface OldVerifyKey {
  publicKey: Uint8Array;
  expiredTs: number;
}

/** A server's keys as fetched and checked. */
export interface ServerKeys {
  serverName: string;
  verifyKeys: Map<string, Uint8Array>;
  oldVerifyKeys: Map<string, OldVerifyKey>;
  /** When these verify_keys stop being usable: min(valid_until_ts, fetchedTs + 7 days). */
  validUntilTs: number;
  fetchedTs: number;
}

export class ServerKeysError extends Error {}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function publicKeyOf(v: unknown, where: string): Uint8Array {
  if (!isObject(v) || typeof v.key !== 'string') throw new ServerKeysError(`${where}: key is missing`);
  let bytes: Uint8Array;
  try {
    bytes = decodeBase64(v.key);
  } catch {
    throw new ServerKeysError(`${where}: key is not unpadded base64`);
  }
  if (bytes.length !== 32) throw new ServerKeysError(`${where}: not a 32-byte Ed25519 key`);
  return bytes;
}

/**
 * Checks a /_matrix/key/v2/server response from `serverName`, fetched at `now`: it must name the
 * server, carry a valid self-signature by at least one of its verify_keys (and every signature it
 * carries under a verify_keys id must be valid), and still be valid.
 */
export function parseServerKeys(json: unknown, serverName: string, now: number): ServerKeys {
  if (!isObject(json)) throw new ServerKeysError('response is not a JSON object');
  if (json.server_name !== serverName) throw new ServerKeysError(`response is for ${JSON.stringify(json.server_name)}, not ${serverName}`);
  if (typeof json.valid_until_ts !== 'number' || !Number.isSafeInteger(json.valid_until_ts)) throw new ServerKeysError('valid_until_ts is missing');
  if (!isObject(json.verify_keys)) throw new ServerKeysError('verify_keys is missing');
  const verifyKeys = new Map<string, Uint8Array>();
  for (const [keyId, v] of Object.entries(json.verify_keys)) {
    if (!/^ed25519:[a-zA-Z0-9_]+$/.test(keyId)) continue; // other algorithms: not ours to use
    verifyKeys.set(keyId, publicKeyOf(v, `verify_keys.${keyId}`));
  }
  const oldVerifyKeys = new Map<string, OldVerifyKey>();
  if (isObject(json.old_verify_keys)) {
    for (const [keyId, v] of Object.entries(json.old_verify_keys)) {
      if (!/^ed25519:[a-zA-Z0-9_]+$/.test(keyId) || !isObject(v) || typeof v.expired_ts !== 'number') continue;
      oldVerifyKeys.set(keyId, { publicKey: publicKeyOf(v, `old_verify_keys.${keyId}`), expiredTs: v.expired_ts });
    }
  }
  const sigs = isObject(json.signatures) && Object.hasOwn(json.signatures, serverName) ? json.signatures[serverName] : null;
  let verified = 0;
  if (isObject(sigs)) {
    for (const keyId of Object.keys(sigs)) {
      const pub = verifyKeys.get(keyId);
      if (!pub) continue;
      if (!verifyJsonSignature(json, serverName, keyId, pub)) throw new ServerKeysError(`signature by ${keyId} does not verify`);
      verified++;
    }
  }
  if (verified === 0) throw new ServerKeysError('response is not signed by any of its verify_keys');
  const validUntilTs = Math.min(json.valid_until_ts, now + MAX_KEY_VALIDITY_MS);
  if (validUntilTs <= now) throw new ServerKeysError('keys have expired (valid_until_ts is in the past)');
  return { serverName, verifyKeys, oldVerifyKeys, validUntilTs, fetchedTs: now };
}

/** Where keys come from: the raw JSON of GET /_matrix/key/v2/server on `serverName`. */
export interface ServerKeySource {
  fetchServerKeys(serverName: string): Promise<unknown>;
}

/** A persistent record of keys fetched earlier. */
export interface ServerKeyStore {
  /** A stored verify key of `serverName` valid at `now` (valid_until_ts later than now), or null. */
  verifyKey(serverName: string, keyId: string, now: number): Promise<{ publicKey: Uint8Array; validUntilTs: number } | null>;
  /** Records freshly fetched and checked keys (keys learned earlier are kept). */
  save(keys: ServerKeys): Promise<void>;
}

export interface ServerKeyRingOptions {
  source: ServerKeySource;
  store?: ServerKeyStore;
  now: () => number;
  /** The shortest time between two fetches for the same server (unknown key ids, failures). */
  minRefetchIntervalMs?: number;
  /** How many servers' keys are kept. */
  maxServers?: number;
  onFetchError?: (serverName: string, err: unknown) => void;
}

/** Looks up other servers' public keys, fetching and caching them as needed. */
export class ServerKeyRing {
  private readonly opts: Required<Omit<ServerKeyRingOptions, 'onFetchError' | 'store'>> & Pick<ServerKeyRingOptions, 'onFetchError' | 'store'>;
  private readonly cache = new Map<string, ServerKeys>();
  /** Keys found in the store, by "server\nkeyId". */
  private readonly stored = new Map<string, { publicKey: Uint8Array; validUntilTs: number }>();
  private readonly lastAttempt = new Map<string, number>();
  private readonly inFlight = new Map<string, Promise<ServerKeys | null>>();

  constructor(opts: ServerKeyRingOptions) {
    this.opts = { minRefetchIntervalMs: 30_000, maxServers: 10_000, ...opts };
  }

  /**
   * The public key `keyId` of `serverName` that is valid now for signing requests (a current
   * verify_key, not an old one), or null when the server does not have one.
   */
  async verifyKey(serverName: string, keyId: string): Promise<Uint8Array | null> {
    const now = this.opts.now();
    const cached = this.cache.get(serverName);
    if (cached && cached.validUntilTs > now && cached.verifyKeys.has(keyId)) return cached.verifyKeys.get(keyId)!;
    const storeKey = `${serverName}\n${keyId}`;
    const hit = this.stored.get(storeKey);
    if (hit && hit.validUntilTs > now) return hit.publicKey;
    if (this.opts.store) {
      const found = await this.opts.store.verifyKey(serverName, keyId, now).catch((err) => {
        this.opts.onFetchError?.(serverName, err);
        return null;
      });
      if (found && found.validUntilTs > now) {
        if (this.stored.size >= this.opts.maxServers) this.stored.delete(this.stored.keys().next().value!);
        this.stored.set(storeKey, found);
        return found.publicKey;
      }
    }
    // Unknown key id or expired keys: refetch, at most once per interval per server.
    const last = this.lastAttempt.get(serverName);
    if (last !== undefined && now - last < this.opts.minRefetchIntervalMs && !this.inFlight.has(serverName)) return null;
    const fresh = await this.refresh(serverName);
    if (fresh && fresh.validUntilTs > this.opts.now() && fresh.verifyKeys.has(keyId)) return fresh.verifyKeys.get(keyId)!;
    return null;
  }

  /** The cached keys of a server, if any (expired ones included). */
  cached(serverName: string): ServerKeys | undefined {
    return this.cache.get(serverName);
  }

  private refresh(serverName: string): Promise<ServerKeys | null> {
    let p = this.inFlight.get(serverName);
    if (!p) {
      const now = this.opts.now();
      if (this.lastAttempt.size >= this.opts.maxServers) {
        for (const [name, ts] of this.lastAttempt) if (now - ts >= this.opts.minRefetchIntervalMs) this.lastAttempt.delete(name);
      }
      this.lastAttempt.set(serverName, now);
      p = (async () => {
        try {
          const json = await this.opts.source.fetchServerKeys(serverName);
          const keys = parseServerKeys(json, serverName, this.opts.now());
          if (!this.cache.has(serverName) && this.cache.size >= this.opts.maxServers) this.cache.delete(this.cache.keys().next().value!);
          this.cache.set(serverName, keys);
          await this.opts.store?.save(keys).catch((err) => this.opts.onFetchError?.(serverName, err));
          return keys;
        } catch (err) {
          this.opts.onFetchError?.(serverName, err);
          return null;
        }
      })().finally(() => this.inFlight.delete(serverName));
      this.inFlight.set(serverName, p);
    }
    return p;
  }
}
