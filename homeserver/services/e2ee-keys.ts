// End-to-end encryption keys (client-server-api "End-to-End Encryption": key distribution and
// cross-signing): device identity keys, one-time and fallback keys, cross-signing keys and the
// signatures users add to them. The server checks signatures where the spec asks it to and otherwise
// stores and serves the clients' JSON as given; it never holds a private key or a plaintext.
import { sql, type Generated } from 'kysely';
import type { Homeserver } from '../homeserver.ts';
import type { Requester } from '../http/api.ts';
import { MatrixError, badJson, forbidden, invalidParam } from '../errors.ts';
import { canonicalJson } from '../../spec/canonical-json.ts';
import { tryDecodeBase64 } from '../../spec/base64.ts';
import { verifyJsonSignature } from '../../spec/signing.ts';
import { isValidUserId } from '../../spec/identifiers.ts';
import type { Queryable } from '../storage/schema.ts';
import { notifyKeysChanged, recordDeviceListChanges, type DeviceListChange } from './device-lists.ts';

export interface DeviceKeysTable {
  user_id: string;
  device_id: string;
  key_json: string;
  ed25519: string;
  ts: number;
}
export interface OneTimeKeysTable {
  user_id: string;
  device_id: string;
  algorithm: string;
  key_id: string;
  key_json: string;
  upload_seq: Generated<number>;
}
export interface FallbackKeysTable {
  user_id: string;
  device_id: string;
  algorithm: string;
  key_id: string;
  key_json: string;
  used: boolean;
}
export interface CrossSigningKeysTable {
  user_id: string;
  key_type: CrossSigningKeyType;
  public_key: string;
  key_json: string;
  ts: number;
}
export interface CrossSigningSignaturesTable {
  target_user_id: string;
  target_key_id: string;
  signer_user_id: string;
  signer_key_id: string;
  signature: string;
}

declare module '../storage/schema.ts' {
  interface Tables {
    e2e_device_keys: DeviceKeysTable;
    e2e_one_time_keys: OneTimeKeysTable;
    e2e_fallback_keys: FallbackKeysTable;
    e2e_cross_signing_keys: CrossSigningKeysTable;
    e2e_cross_signing_signatures: CrossSigningSignaturesTable;
  }
}

export type CrossSigningKeyType = 'master' | 'self_signing' | 'user_signing';
type Json = Record<string, unknown>;

/** At most this many one-time keys in one upload (clients upload tens at a time). */
const MAX_KEYS_PER_UPLOAD = 1000;
/** At most this many unclaimed one-time keys per device and algorithm; uploads beyond are refused. */
const MAX_ONE_TIME_KEYS_PER_DEVICE = 10_000;
const MAX_QUERY_USERS = 10_000;

function isObject(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** A 32-byte key in unpadded base64 (ed25519 and curve25519 public keys). */
function isKey32(v: unknown): v is string {
  const b = tryDecodeBase64(v);
  return b !== null && b.length === 32;
}

/** The object as a signature covers it: without `signatures` and `unsigned`. */
function signedPart(obj: Json): string {
  const { signatures: _s, unsigned: _u, ...rest } = obj;
  return canonicalJson(rest);
}

function mergeSignatures(obj: Json, extra: Array<{ signer_user_id: string; signer_key_id: string; signature: string }>): Json {
  if (extra.length === 0) return obj;
  const sigs: Record<string, Record<string, string>> = {};
  if (isObject(obj.signatures)) {
    for (const [u, m] of Object.entries(obj.signatures)) if (isObject(m)) sigs[u] = { ...(m as Record<string, string>) };
  }
  for (const s of extra) (sigs[s.signer_user_id] ??= {})[s.signer_key_id] = s.signature;
  return { ...obj, signatures: sigs };
}

export interface ParsedCrossSigningKey {
  type: CrossSigningKeyType;
  publicKey: string;
  json: Json;
}

/** Bus channel telling every process that a device's one-time/fallback keys changed: `{ userId, deviceId }`. */
const KEY_COUNTS_CHANNEL = 'e2ee:key-counts';
/** A cached count is re-read after this long even without an invalidation (a bus message lost while Redis reconnects). */
const KEY_COUNTS_TTL_MS = 60_000;
const KEY_COUNTS_MAX_ENTRIES = 100_000;

interface KeyCounts {
  counts: Record<string, number>;
  fallbacks: string[];
}

export class E2eeKeysService {
  private readonly hs: Homeserver;
  /**
   * Per device (user\0device): its one-time key counts and unused fallback key types, which every
   * /sync response carries. Only this service writes the key tables; after each write that changes
   * them it drops the entry here and publishes on KEY_COUNTS_CHANNEL, so other processes drop theirs.
   */
  private readonly keyCounts = new Map<string, KeyCounts & { expires: number }>();
  /** Bumped by every invalidation: a read that overlapped one is not cached (it may predate the write). */
  private keyCountsEpoch = 0;
  constructor(hs: Homeserver) {
    this.hs = hs;
    hs.bus.subscribe(KEY_COUNTS_CHANNEL, (msg) => {
      if (typeof msg.userId === 'string' && typeof msg.deviceId === 'string') this.dropKeyCounts(msg.userId, msg.deviceId);
    });
  }

  /** device_one_time_keys_count and device_unused_fallback_key_types for a /sync response. */
  async syncKeyCounts(userId: string, deviceId: string): Promise<KeyCounts> {
    const k = `${userId}\u0000${deviceId}`;
    const now = Date.now();
    let hit = this.keyCounts.get(k);
    if (!hit || hit.expires <= now) {
      const epoch = this.keyCountsEpoch;
      const [counts, fallbacks] = await Promise.all([this.oneTimeKeyCounts(userId, deviceId), this.unusedFallbackKeyTypes(userId, deviceId)]);
      hit = { counts, fallbacks, expires: now + KEY_COUNTS_TTL_MS };
      if (epoch === this.keyCountsEpoch) {
        if (this.keyCounts.size >= KEY_COUNTS_MAX_ENTRIES) this.keyCounts.clear();
        this.keyCounts.set(k, hit);
      }
    }
    return { counts: { ...hit.counts }, fallbacks: [...hit.fallbacks] };
  }

  private dropKeyCounts(userId: string, deviceId: string): void {
    this.keyCountsEpoch++;
    this.keyCounts.delete(`${userId}\u0000${deviceId}`);
  }

  /** After a committed write to the device's one-time or fallback keys: here at once, elsewhere through the bus. */
  private async keyCountsChanged(devices: Array<{ userId: string; deviceId: string }>): Promise<void> {
    for (const d of devices) this.dropKeyCounts(d.userId, d.deviceId);
    for (const d of devices) {
      await this.hs.bus.publish(KEY_COUNTS_CHANNEL, { userId: d.userId, deviceId: d.deviceId }).catch((err: unknown) => this.hs.logger.warn({ err }, 'key count invalidation failed'));
    }
  }

  // ---- /keys/upload -----------------------------------------------------------------------------

  async upload(requester: Requester, body: Json): Promise<{ one_time_key_counts: Record<string, number> }> {
    const userId = requester.userId;
    const deviceId = requester.deviceId;
    if (!deviceId) throw forbidden('Keys can only be uploaded by a device');

    let deviceKeys: Json | null = null;
    let signingKey: string | null = null;
    if (body.device_keys !== undefined && body.device_keys !== null) {
      deviceKeys = this.checkDeviceKeys(body.device_keys, userId, deviceId);
      signingKey = deviceKeys.keys ? ((deviceKeys.keys as Json)[`ed25519:${deviceId}`] as string) : null;
    }
    const otks = this.parseKeyMap(body.one_time_keys, 'one_time_keys');
    const fallbacks = this.parseKeyMap(body.fallback_keys, 'fallback_keys');
    if (otks.length + fallbacks.length > MAX_KEYS_PER_UPLOAD) throw invalidParam(`At most ${MAX_KEYS_PER_UPLOAD} keys per upload`);
    const fallbackAlgs = new Set<string>();
    for (const f of fallbacks) {
      if (fallbackAlgs.has(f.algorithm)) throw invalidParam(`At most one fallback key per algorithm (${f.algorithm})`);
      fallbackAlgs.add(f.algorithm);
    }

    if ((otks.length > 0 || fallbacks.length > 0) && signingKey === null) {
      const row = await this.hs.db.selectFrom('e2e_device_keys').select('ed25519').where('user_id', '=', userId).where('device_id', '=', deviceId).executeTakeFirst();
      signingKey = row?.ed25519 ?? null;
    }
    for (const k of [...otks, ...fallbacks]) {
      if (typeof k.value === 'string') continue; // unsigned algorithms (e.g. curve25519): nothing to check
      if (signingKey === null) throw invalidParam('Upload the device keys before signed one-time or fallback keys');
      if (!verifyJsonSignature(k.value, userId, `ed25519:${deviceId}`, tryDecodeBase64(signingKey)!)) {
        throw new MatrixError(400, 'M_INVALID_SIGNATURE', `Key ${k.algorithm}:${k.keyId} is not signed by the device's ed25519 key`);
      }
    }

    let keysChanged = false;
    const counts = await this.hs.db.transaction().execute(async (tx) => {
      const changes: DeviceListChange[] = [];
      if (deviceKeys) {
        const json = canonicalJson(deviceKeys);
        const existing = await tx.selectFrom('e2e_device_keys').select('key_json').where('user_id', '=', userId).where('device_id', '=', deviceId).executeTakeFirst();
        if (existing?.key_json !== json) {
          await tx
            .insertInto('e2e_device_keys')
            .values({ user_id: userId, device_id: deviceId, key_json: json, ed25519: signingKey!, ts: this.hs.now() })
            .onConflict((oc) => oc.columns(['user_id', 'device_id']).doUpdateSet({ key_json: json, ed25519: signingKey!, ts: this.hs.now() }))
            .execute();
          if (existing) {
            // A new identity for the device: signatures of the old one no longer hold.
            await tx.deleteFrom('e2e_cross_signing_signatures').where('target_user_id', '=', userId).where('target_key_id', '=', deviceId).execute();
          }
          changes.push({ kind: 'keys', userId });
        }
      }
      if (otks.length > 0) {
        const inserted = await tx
          .insertInto('e2e_one_time_keys')
          .values(otks.map((k) => ({ user_id: userId, device_id: deviceId, algorithm: k.algorithm, key_id: k.keyId, key_json: canonicalJson(k.value) })))
          .onConflict((oc) => oc.columns(['user_id', 'device_id', 'algorithm', 'key_id']).doNothing())
          .returning(['algorithm', 'key_id'])
          .execute();
        if (inserted.length < otks.length) {
          // Re-uploading a key with the same id is fine when it is the same key (a retried request).
          const got = new Set(inserted.map((r) => `${r.algorithm}:${r.key_id}`));
          const rest = otks.filter((k) => !got.has(`${k.algorithm}:${k.keyId}`));
          const stored = await tx
            .selectFrom('e2e_one_time_keys')
            .select(['algorithm', 'key_id', 'key_json'])
            .where('user_id', '=', userId)
            .where('device_id', '=', deviceId)
            .where('key_id', 'in', rest.map((k) => k.keyId))
            .execute();
          const byId = new Map(stored.map((r) => [`${r.algorithm}:${r.key_id}`, r.key_json]));
          for (const k of rest) {
            if (byId.get(`${k.algorithm}:${k.keyId}`) !== canonicalJson(k.value)) throw invalidParam(`One-time key ${k.algorithm}:${k.keyId} already exists with different contents`);
          }
        }
      }
      for (const f of fallbacks) {
        const json = canonicalJson(f.value);
        // The same key uploaded again keeps its `used` flag; a new key starts unused.
        await sql`
          insert into e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)
          values (${userId}, ${deviceId}, ${f.algorithm}, ${f.keyId}, ${json}, false)
          on conflict (user_id, device_id, algorithm) do update
            set key_id = excluded.key_id, key_json = excluded.key_json,
                used = case when e2e_fallback_keys.key_id = excluded.key_id and e2e_fallback_keys.key_json = excluded.key_json
                            then e2e_fallback_keys.used else false end`.execute(tx);
      }
      const counts = await this.oneTimeKeyCounts(userId, deviceId, tx);
      for (const [alg, n] of Object.entries(counts)) {
        if (n > MAX_ONE_TIME_KEYS_PER_DEVICE) throw invalidParam(`Too many unclaimed ${alg} one-time keys (at most ${MAX_ONE_TIME_KEYS_PER_DEVICE})`);
      }
      if (changes.length > 0) {
        keysChanged = true;
        await recordDeviceListChanges(tx, changes);
      }
      return counts;
    });
    if (otks.length > 0 || fallbacks.length > 0) await this.keyCountsChanged([{ userId, deviceId }]);
    if (keysChanged) await notifyKeysChanged(this.hs, userId);
    return { one_time_key_counts: counts };
  }

  private checkDeviceKeys(v: unknown, userId: string, deviceId: string): Json {
    if (!isObject(v)) throw badJson('device_keys must be an object');
    if (v.user_id !== userId) throw invalidParam('device_keys.user_id must be the user uploading the keys');
    if (v.device_id !== deviceId) throw invalidParam('device_keys.device_id must be the device uploading the keys');
    if (!Array.isArray(v.algorithms) || !v.algorithms.every((a) => typeof a === 'string')) throw badJson('device_keys.algorithms must be a list of strings');
    if (!isObject(v.keys) || !Object.values(v.keys).every((k) => typeof k === 'string')) throw badJson('device_keys.keys must map key ids to strings');
    if (!isObject(v.signatures)) throw badJson('device_keys.signatures must be an object');
    const ed = v.keys[`ed25519:${deviceId}`];
    if (!isKey32(ed)) throw invalidParam(`device_keys.keys must contain the device's ed25519:${deviceId} key`);
    for (const [id, k] of Object.entries(v.keys)) {
      const [alg, kid] = splitKeyId(id);
      if (!alg || kid !== deviceId) throw invalidParam(`device key ${id} must be named <algorithm>:${deviceId}`);
      if ((alg === 'ed25519' || alg === 'curve25519') && !isKey32(k)) throw invalidParam(`device key ${id} is not a 32-byte unpadded base64 key`);
    }
    if (!verifyJsonSignature(v, userId, `ed25519:${deviceId}`, tryDecodeBase64(ed)!)) {
      throw new MatrixError(400, 'M_INVALID_SIGNATURE', `device_keys must be signed by the device's own ed25519:${deviceId} key`);
    }
    const { unsigned: _u, ...rest } = v;
    return rest;
  }

  private parseKeyMap(v: unknown, name: string): Array<{ algorithm: string; keyId: string; value: Json | string }> {
    if (v === undefined || v === null) return [];
    if (!isObject(v)) throw badJson(`${name} must be an object`);
    const out: Array<{ algorithm: string; keyId: string; value: Json | string }> = [];
    for (const [id, value] of Object.entries(v)) {
      const [alg, kid] = splitKeyId(id);
      if (!alg || !kid || id.length > 255) throw invalidParam(`${name}: key id ${JSON.stringify(id)} must be <algorithm>:<key_id>`);
      if (typeof value === 'string') {
        if (!isKey32(value)) throw invalidParam(`${name}: ${id} is not a 32-byte unpadded base64 key`);
      } else if (isObject(value)) {
        if (!isKey32(value.key)) throw invalidParam(`${name}: ${id}.key is not a 32-byte unpadded base64 key`);
        if (!isObject(value.signatures)) throw badJson(`${name}: ${id}.signatures must be an object`);
      } else throw badJson(`${name}: ${id} must be a key object or a string`);
      out.push({ algorithm: alg, keyId: kid, value });
    }
    return out;
  }

  /** For each algorithm, how many unclaimed one-time keys the device has (signed_curve25519 always listed). */
  async oneTimeKeyCounts(userId: string, deviceId: string, db: Queryable = this.hs.db): Promise<Record<string, number>> {
    const rows = await db
      .selectFrom('e2e_one_time_keys')
      .select(['algorithm', (eb) => eb.fn.countAll<string>().as('n')])
      .where('user_id', '=', userId)
      .where('device_id', '=', deviceId)
      .groupBy('algorithm')
      .execute();
    const counts: Record<string, number> = { signed_curve25519: 0 };
    for (const r of rows) counts[r.algorithm] = Number(r.n);
    return counts;
  }

  /** Algorithms for which the device has a fallback key that no claim has returned yet. */
  async unusedFallbackKeyTypes(userId: string, deviceId: string): Promise<string[]> {
    const rows = await this.hs.db
      .selectFrom('e2e_fallback_keys')
      .select('algorithm')
      .where('user_id', '=', userId)
      .where('device_id', '=', deviceId)
      .where('used', '=', false)
      .orderBy('algorithm')
      .execute();
    return rows.map((r) => r.algorithm);
  }

  // ---- /keys/query ------------------------------------------------------------------------------

  async query(viewer: string, body: Json): Promise<Json> {
    const req = body.device_keys;
    if (!isObject(req)) throw badJson('device_keys must be an object');
    const entries = Object.entries(req);
    if (entries.length > MAX_QUERY_USERS) throw invalidParam(`At most ${MAX_QUERY_USERS} users per query`);
    const wanted = new Map<string, string[]>();
    const failures: Json = {};
    for (const [userId, devices] of entries) {
      if (!Array.isArray(devices) || !devices.every((d) => typeof d === 'string')) throw badJson(`device_keys.${userId} must be a list of device ids`);
      if (!isValidUserId(userId)) continue;
      if (!this.hs.services.accounts.isLocalUser(userId)) {
        // Federation lands with its own issue; until then remote servers count as unreachable.
        const server = userId.slice(userId.indexOf(':') + 1);
        failures[server] = { errcode: 'M_UNAVAILABLE', error: 'Querying keys on other servers is not supported yet' };
        continue;
      }
      wanted.set(userId, devices as string[]);
    }
    const users = [...wanted.keys()];
    const deviceKeys: Record<string, Record<string, Json>> = {};
    const masterKeys: Record<string, Json> = {};
    const selfSigningKeys: Record<string, Json> = {};
    const userSigningKeys: Record<string, Json> = {};
    if (users.length > 0) {
      const [devRows, sigRows, csRows] = await Promise.all([
        sql<{ user_id: string; device_id: string; key_json: string; display_name: string | null }>`
          select k.user_id, k.device_id, k.key_json, d.display_name
          from e2e_device_keys k join devices d on d.user_id = k.user_id and d.device_id = k.device_id
          where k.user_id = any(${users}::text[])`.execute(this.hs.db),
        // Signatures by the key's owner (their self-signing key on devices, their devices on their
        // master key) are public; others' (user-signing signatures) only their maker sees.
        sql<CrossSigningSignaturesTable>`
          select target_user_id, target_key_id, signer_user_id, signer_key_id, signature
          from e2e_cross_signing_signatures
          where target_user_id = any(${users}::text[]) and (signer_user_id = target_user_id or signer_user_id = ${viewer})`.execute(this.hs.db),
        sql<CrossSigningKeysTable>`
          select user_id, key_type, public_key, key_json from e2e_cross_signing_keys
          where user_id = any(${users}::text[]) and (key_type <> 'user_signing' or user_id = ${viewer})`.execute(this.hs.db),
      ]);
      const sigsByTarget = new Map<string, CrossSigningSignaturesTable[]>();
      for (const s of sigRows.rows) {
        const k = `${s.target_user_id}\u0000${s.target_key_id}`;
        let l = sigsByTarget.get(k);
        if (!l) sigsByTarget.set(k, (l = []));
        l.push(s);
      }
      for (const u of users) deviceKeys[u] = {};
      for (const r of devRows.rows) {
        const filter = wanted.get(r.user_id)!;
        if (filter.length > 0 && !filter.includes(r.device_id)) continue;
        const keys = mergeSignatures(JSON.parse(r.key_json) as Json, sigsByTarget.get(`${r.user_id}\u0000${r.device_id}`) ?? []);
        keys.unsigned = r.display_name !== null ? { device_display_name: r.display_name } : {};
        deviceKeys[r.user_id]![r.device_id] = keys;
      }
      for (const r of csRows.rows) {
        const json = JSON.parse(r.key_json) as Json;
        if (r.key_type === 'master') masterKeys[r.user_id] = mergeSignatures(json, sigsByTarget.get(`${r.user_id}\u0000${r.public_key}`) ?? []);
        else if (r.key_type === 'self_signing') selfSigningKeys[r.user_id] = json;
        else userSigningKeys[r.user_id] = json;
      }
    }
    return { device_keys: deviceKeys, master_keys: masterKeys, self_signing_keys: selfSigningKeys, user_signing_keys: userSigningKeys, failures };
  }

  // ---- /keys/claim ------------------------------------------------------------------------------

  async claim(body: Json): Promise<Json> {
    const req = body.one_time_keys;
    if (!isObject(req)) throw badJson('one_time_keys must be an object');
    const us: string[] = [];
    const ds: string[] = [];
    const as: string[] = [];
    const failures: Json = {};
    for (const [userId, devices] of Object.entries(req)) {
      if (!isObject(devices)) throw badJson(`one_time_keys.${userId} must map device ids to algorithms`);
      if (!isValidUserId(userId)) continue;
      if (!this.hs.services.accounts.isLocalUser(userId)) {
        failures[userId.slice(userId.indexOf(':') + 1)] = { errcode: 'M_UNAVAILABLE', error: 'Claiming keys on other servers is not supported yet' };
        continue;
      }
      for (const [deviceId, alg] of Object.entries(devices)) {
        if (typeof alg !== 'string') throw badJson(`one_time_keys.${userId}.${deviceId} must be an algorithm name`);
        us.push(userId);
        ds.push(deviceId);
        as.push(alg);
      }
    }
    if (us.length > MAX_QUERY_USERS) throw invalidParam(`At most ${MAX_QUERY_USERS} devices per claim`);
    const out: Record<string, Record<string, Record<string, unknown>>> = {};
    const put = (u: string, d: string, alg: string, keyId: string, json: string) => {
      ((out[u] ??= {})[d] ??= {})[`${alg}:${keyId}`] = JSON.parse(json);
    };
    if (us.length > 0) {
      // One statement: for each requested device the oldest unclaimed key is locked (skipping keys a
      // concurrent claim holds) and deleted; the deleted rows are what we hand out, so no key is ever
      // returned twice, whatever runs at the same time.
      const claimed = await sql<{ user_id: string; device_id: string; algorithm: string; key_id: string; key_json: string }>`
        with req as (
          select distinct u, d, a from unnest(${us}::text[], ${ds}::text[], ${as}::text[]) as r(u, d, a)
        ), picked as (
          select k.user_id, k.device_id, k.algorithm, k.key_id
          from req cross join lateral (
            select user_id, device_id, algorithm, key_id from e2e_one_time_keys
            where user_id = req.u and device_id = req.d and algorithm = req.a
            order by upload_seq
            limit 1
            for update skip locked
          ) k
        )
        delete from e2e_one_time_keys o using picked
        where o.user_id = picked.user_id and o.device_id = picked.device_id and o.algorithm = picked.algorithm and o.key_id = picked.key_id
        returning o.user_id, o.device_id, o.algorithm, o.key_id, o.key_json`.execute(this.hs.db);
      const got = new Set<string>();
      for (const r of claimed.rows) {
        got.add(`${r.user_id}\u0000${r.device_id}\u0000${r.algorithm}`);
        put(r.user_id, r.device_id, r.algorithm, r.key_id, r.key_json);
      }
      const mu: string[] = [];
      const md: string[] = [];
      const ma: string[] = [];
      for (let i = 0; i < us.length; i++) {
        if (got.has(`${us[i]}\u0000${ds[i]}\u0000${as[i]}`)) continue;
        mu.push(us[i]!);
        md.push(ds[i]!);
        ma.push(as[i]!);
      }
      if (mu.length > 0) {
        // Out of one-time keys: the fallback key, marked used (it stays until the device replaces it).
        // The rows are locked in key order first: two claims naming the same devices in different
        // orders would otherwise take the row locks in different orders and deadlock on PostgreSQL.
        const fb = await sql<{ user_id: string; device_id: string; algorithm: string; key_id: string; key_json: string }>`
          with r as (
            select distinct u, d, a from unnest(${mu}::text[], ${md}::text[], ${ma}::text[]) as r(u, d, a)
          ), locked as (
            select f.user_id, f.device_id, f.algorithm from e2e_fallback_keys f
            join r on f.user_id = r.u and f.device_id = r.d and f.algorithm = r.a
            order by f.user_id, f.device_id, f.algorithm
            for update of f
          )
          update e2e_fallback_keys f set used = true
          from locked l
          where f.user_id = l.user_id and f.device_id = l.device_id and f.algorithm = l.algorithm
          returning f.user_id, f.device_id, f.algorithm, f.key_id, f.key_json`.execute(this.hs.db);
        for (const r of fb.rows) put(r.user_id, r.device_id, r.algorithm, r.key_id, r.key_json);
      }
      const touched = new Map<string, { userId: string; deviceId: string }>();
      for (const [u, ds] of Object.entries(out)) for (const d of Object.keys(ds)) touched.set(`${u}\u0000${d}`, { userId: u, deviceId: d });
      await this.keyCountsChanged([...touched.values()]);
    }
    return { one_time_keys: out, failures };
  }

  // ---- cross-signing ----------------------------------------------------------------------------

  /** Validates the keys of a /keys/device_signing/upload body (signatures against the accompanying or stored master key). */
  async parseCrossSigningUpload(userId: string, body: Json): Promise<ParsedCrossSigningKey[]> {
    const parsed: ParsedCrossSigningKey[] = [];
    const fields: Array<[string, CrossSigningKeyType]> = [
      ['master_key', 'master'],
      ['self_signing_key', 'self_signing'],
      ['user_signing_key', 'user_signing'],
    ];
    for (const [field, type] of fields) {
      const v = body[field];
      if (v === undefined || v === null) continue;
      parsed.push(checkCrossSigningKey(v, field, type, userId));
    }
    if (parsed.length === 0) return parsed;
    let master = parsed.find((k) => k.type === 'master')?.publicKey;
    if (!master) {
      const row = await this.hs.db.selectFrom('e2e_cross_signing_keys').select('public_key').where('user_id', '=', userId).where('key_type', '=', 'master').executeTakeFirst();
      master = row?.public_key;
    }
    for (const k of parsed) {
      if (k.type === 'master') continue;
      if (!master) throw new MatrixError(400, 'M_MISSING_PARAM', 'No master signing key is available');
      if (!verifyJsonSignature(k.json, userId, `ed25519:${master}`, tryDecodeBase64(master)!)) {
        throw new MatrixError(400, 'M_INVALID_SIGNATURE', `The ${k.type.replace('_', '-')} key is not signed by the master key`);
      }
    }
    // Master keys double as device ids in verification, so no key may collide with a device id.
    const devices = await this.hs.db
      .selectFrom('devices')
      .select('device_id')
      .where('user_id', '=', userId)
      .where('device_id', 'in', parsed.map((k) => k.publicKey))
      .execute();
    if (devices.length > 0) throw forbidden('Key ID in use');
    return parsed;
  }

  /** True when the upload would add or replace a key while a master key exists (user-interactive auth needed). */
  async crossSigningUploadNeedsAuth(userId: string, keys: ParsedCrossSigningKey[]): Promise<boolean> {
    const stored = await this.hs.db.selectFrom('e2e_cross_signing_keys').select(['key_type', 'key_json']).where('user_id', '=', userId).execute();
    if (!stored.some((s) => s.key_type === 'master')) return false;
    const byType = new Map(stored.map((s) => [s.key_type, s.key_json]));
    return keys.some((k) => byType.get(k.type) !== canonicalJson(k.json));
  }

  async storeCrossSigningKeys(userId: string, keys: ParsedCrossSigningKey[]): Promise<void> {
    if (keys.length === 0) return;
    let changed = false;
    await this.hs.db.transaction().execute(async (tx) => {
      const stored = await tx.selectFrom('e2e_cross_signing_keys').selectAll().where('user_id', '=', userId).forUpdate().execute();
      const byType = new Map(stored.map((s) => [s.key_type, s]));
      const replacingMaster = keys.some((k) => k.type === 'master' && byType.has('master') && byType.get('master')!.public_key !== k.publicKey);
      if (replacingMaster) {
        // Keys signed by the old master key are no longer valid; neither are signatures of the old keys.
        const uploadedTypes = new Set(keys.map((k) => k.type));
        for (const t of ['self_signing', 'user_signing'] as const) {
          if (!uploadedTypes.has(t)) await tx.deleteFrom('e2e_cross_signing_keys').where('user_id', '=', userId).where('key_type', '=', t).execute();
        }
      }
      for (const k of keys) {
        const json = canonicalJson(k.json);
        const old = byType.get(k.type);
        if (old?.key_json === json) continue;
        changed = true;
        if (old && old.public_key !== k.publicKey) {
          await tx.deleteFrom('e2e_cross_signing_signatures').where('signer_user_id', '=', userId).where('signer_key_id', '=', `ed25519:${old.public_key}`).execute();
          if (k.type === 'master') await tx.deleteFrom('e2e_cross_signing_signatures').where('target_user_id', '=', userId).where('target_key_id', '=', old.public_key).execute();
        }
        await tx
          .insertInto('e2e_cross_signing_keys')
          .values({ user_id: userId, key_type: k.type, public_key: k.publicKey, key_json: json, ts: this.hs.now() })
          .onConflict((oc) => oc.columns(['user_id', 'key_type']).doUpdateSet({ public_key: k.publicKey, key_json: json, ts: this.hs.now() }))
          .execute();
      }
      if (changed) await recordDeviceListChanges(tx, [{ kind: 'keys', userId }]);
    });
    if (changed) await notifyKeysChanged(this.hs, userId);
  }

  /** POST /keys/signatures/upload: per-key failures, everything valid stored. */
  async uploadSignatures(requester: Requester, body: Json): Promise<{ failures: Record<string, Record<string, Json>> }> {
    const me = requester.userId;
    const failures: Record<string, Record<string, Json>> = {};
    const fail = (u: string, k: string, errcode: string, error: string) => {
      (failures[u] ??= {})[k] = { errcode, error };
    };
    const cs = await this.hs.db.selectFrom('e2e_cross_signing_keys').select(['key_type', 'public_key']).where('user_id', '=', me).execute();
    const myKey = (t: CrossSigningKeyType) => cs.find((r) => r.key_type === t)?.public_key;
    const toStore: CrossSigningSignaturesTable[] = [];
    const changes: DeviceListChange[] = [];
    const notify = new Set<string>();

    for (const [targetUser, objs] of Object.entries(body)) {
      if (!isObject(objs)) throw badJson(`${targetUser} must map key ids to signed objects`);
      for (const [keyId, obj] of Object.entries(objs)) {
        if (!isObject(obj)) {
          fail(targetUser, keyId, 'M_BAD_JSON', 'Expected a signed JSON object');
          continue;
        }
        if (!isValidUserId(targetUser) || !this.hs.services.accounts.isLocalUser(targetUser)) {
          fail(targetUser, keyId, 'M_UNAVAILABLE', 'Signing keys of users on other servers is not supported yet');
          continue;
        }
        const sigs = isObject(obj.signatures) && isObject(obj.signatures[me]) ? (obj.signatures[me] as Json) : {};
        if (targetUser === me) {
          const device = await this.hs.db.selectFrom('e2e_device_keys').select('key_json').where('user_id', '=', me).where('device_id', '=', keyId).executeTakeFirst();
          if (device) {
            // A device of mine, signed by my self-signing key.
            const ssk = myKey('self_signing');
            if (!ssk) {
              fail(me, keyId, 'M_MISSING_PARAM', 'No self-signing key has been uploaded');
              continue;
            }
            if (signedPart(JSON.parse(device.key_json) as Json) !== signedPart(obj)) {
              fail(me, keyId, 'M_INVALID_PARAM', 'The signed object does not match the device keys');
              continue;
            }
            const sig = sigs[`ed25519:${ssk}`];
            if (typeof sig !== 'string' || !verifyJsonSignature(obj, me, `ed25519:${ssk}`, tryDecodeBase64(ssk)!)) {
              fail(me, keyId, 'M_INVALID_SIGNATURE', 'Invalid signature');
              continue;
            }
            toStore.push({ target_user_id: me, target_key_id: keyId, signer_user_id: me, signer_key_id: `ed25519:${ssk}`, signature: sig });
            changes.push({ kind: 'keys', userId: me });
            notify.add(me);
            continue;
          }
          const master = await this.masterKey(me);
          if (master && master.publicKey === keyId) {
            // My master key, signed by one of my devices.
            if (signedPart(master.json) !== signedPart(obj)) {
              fail(me, keyId, 'M_INVALID_PARAM', 'The signed object does not match the master key');
              continue;
            }
            const deviceSigs = Object.entries(sigs).filter(([k]) => k !== `ed25519:${keyId}`);
            const good: CrossSigningSignaturesTable[] = [];
            for (const [signerKey, sig] of deviceSigs) {
              const deviceId = signerKey.startsWith('ed25519:') ? signerKey.slice(8) : null;
              if (!deviceId || typeof sig !== 'string') continue;
              const dk = await this.hs.db.selectFrom('e2e_device_keys').select('ed25519').where('user_id', '=', me).where('device_id', '=', deviceId).executeTakeFirst();
              if (dk && verifyJsonSignature(obj, me, signerKey, tryDecodeBase64(dk.ed25519)!)) {
                good.push({ target_user_id: me, target_key_id: keyId, signer_user_id: me, signer_key_id: signerKey, signature: sig });
              }
            }
            if (good.length === 0) {
              fail(me, keyId, 'M_INVALID_SIGNATURE', 'No valid signature by one of your devices');
              continue;
            }
            toStore.push(...good);
            changes.push({ kind: 'keys', userId: me });
            notify.add(me);
            continue;
          }
          fail(me, keyId, 'M_NOT_FOUND', 'Unknown key');
          continue;
        }
        // Someone else's master key, signed by my user-signing key; only I will see this signature.
        const theirs = await this.masterKey(targetUser);
        if (!theirs || theirs.publicKey !== keyId) {
          fail(targetUser, keyId, 'M_NOT_FOUND', 'Not the master key of that user');
          continue;
        }
        const usk = myKey('user_signing');
        if (!usk) {
          fail(targetUser, keyId, 'M_MISSING_PARAM', 'No user-signing key has been uploaded');
          continue;
        }
        if (signedPart(theirs.json) !== signedPart(obj)) {
          fail(targetUser, keyId, 'M_INVALID_PARAM', 'The signed object does not match the master key');
          continue;
        }
        const sig = sigs[`ed25519:${usk}`];
        if (typeof sig !== 'string' || !verifyJsonSignature(obj, me, `ed25519:${usk}`, tryDecodeBase64(usk)!)) {
          fail(targetUser, keyId, 'M_INVALID_SIGNATURE', 'Invalid signature');
          continue;
        }
        toStore.push({ target_user_id: targetUser, target_key_id: keyId, signer_user_id: me, signer_key_id: `ed25519:${usk}`, signature: sig });
        changes.push({ kind: 'keys', userId: targetUser, viewer: me });
        notify.add(me);
      }
    }
    if (toStore.length > 0) {
      await this.hs.db.transaction().execute(async (tx) => {
        await tx
          .insertInto('e2e_cross_signing_signatures')
          .values(toStore)
          .onConflict((oc) => oc.columns(['target_user_id', 'target_key_id', 'signer_user_id', 'signer_key_id']).doUpdateSet((eb) => ({ signature: eb.ref('excluded.signature') })))
          .execute();
        await recordDeviceListChanges(tx, dedupeChanges(changes));
      });
      for (const u of notify) await notifyKeysChanged(this.hs, u);
    }
    return { failures };
  }

  private async masterKey(userId: string): Promise<{ publicKey: string; json: Json } | null> {
    const row = await this.hs.db.selectFrom('e2e_cross_signing_keys').select(['public_key', 'key_json']).where('user_id', '=', userId).where('key_type', '=', 'master').executeTakeFirst();
    return row ? { publicKey: row.public_key, json: JSON.parse(row.key_json) as Json } : null;
  }

  // ---- devices going away -----------------------------------------------------------------------

  /** Deleted devices lose their keys; the user's device list changed. */
  async devicesDeleted(userId: string, deviceIds: string[]): Promise<void> {
    if (deviceIds.length === 0) return;
    await this.hs.db.transaction().execute(async (tx) => {
      const del = await tx.deleteFrom('e2e_device_keys').where('user_id', '=', userId).where('device_id', 'in', deviceIds).returning('device_id').execute();
      await tx.deleteFrom('e2e_one_time_keys').where('user_id', '=', userId).where('device_id', 'in', deviceIds).execute();
      await tx.deleteFrom('e2e_fallback_keys').where('user_id', '=', userId).where('device_id', 'in', deviceIds).execute();
      await tx.deleteFrom('e2e_cross_signing_signatures').where('target_user_id', '=', userId).where('target_key_id', 'in', deviceIds).execute();
      await tx.deleteFrom('e2e_cross_signing_signatures').where('signer_user_id', '=', userId).where('signer_key_id', 'in', deviceIds.map((d) => `ed25519:${d}`)).execute();
      if (del.length > 0) await recordDeviceListChanges(tx, [{ kind: 'keys', userId }]);
    });
    await this.keyCountsChanged(deviceIds.map((deviceId) => ({ userId, deviceId })));
    await notifyKeysChanged(this.hs, userId);
  }
}

function splitKeyId(id: string): [string, string] {
  const i = id.indexOf(':');
  return i <= 0 ? ['', ''] : [id.slice(0, i), id.slice(i + 1)];
}

function dedupeChanges(changes: DeviceListChange[]): DeviceListChange[] {
  const seen = new Set<string>();
  return changes.filter((c) => {
    const k = `${c.kind}\u0000${c.userId ?? ''}\u0000${c.viewer ?? ''}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

function checkCrossSigningKey(v: unknown, field: string, type: CrossSigningKeyType, userId: string): ParsedCrossSigningKey {
  if (!isObject(v)) throw badJson(`${field} must be an object`);
  if (v.user_id !== userId) throw invalidParam(`${field}.user_id must be your user id`);
  if (!Array.isArray(v.usage) || !v.usage.every((u) => typeof u === 'string') || !v.usage.includes(type)) {
    throw invalidParam(`${field}.usage must include "${type}"`);
  }
  if (!isObject(v.keys)) throw badJson(`${field}.keys must be an object`);
  const entries = Object.entries(v.keys);
  if (entries.length !== 1) throw invalidParam(`${field}.keys must contain exactly one key`);
  const [id, pub] = entries[0]!;
  if (!id.startsWith('ed25519:') || id.slice(8) !== pub || !isKey32(pub)) {
    throw invalidParam(`${field}.keys must be {"ed25519:<public key>": "<public key>"} with a 32-byte unpadded base64 key`);
  }
  if (v.signatures !== undefined && !isObject(v.signatures)) throw badJson(`${field}.signatures must be an object`);
  const { unsigned: _u, ...rest } = v;
  return { type, publicKey: pub as string, json: rest };
}
