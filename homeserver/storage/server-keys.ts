// The persistent ServerKeyStore (federation/keys.ts) in PostgreSQL: table server_keys (migration 0090).
import { sql } from 'kysely';
import { decodeBase64, encodeBase64 } from '../../spec/base64.ts';
import type { ServerKeys, ServerKeyStore } from '../../federation/keys.ts';
import type { Db } from './schema.ts';

interface ServerKeysTable {
  server_name: string;
  key_id: string;
  public_key: string;
  valid_until_ts: number | null;
  expired_ts: number | null;
  fetched_ts: number;
}

declare module './schema.ts' {
  interface Tables {
    server_keys: ServerKeysTable;
  }
}

export class DbServerKeyStore implements ServerKeyStore {
  private readonly db: Db;
  constructor(db: Db) {
    this.db = db;
  }

  async verifyKey(serverName: string, keyId: string, now: number): Promise<{ publicKey: Uint8Array; validUntilTs: number } | null> {
    const row = await this.db
      .selectFrom('server_keys')
      .select(['public_key', 'valid_until_ts'])
      .where('server_name', '=', serverName)
      .where('key_id', '=', keyId)
      .where('valid_until_ts', '>', now)
      .executeTakeFirst();
    if (!row || row.valid_until_ts === null) return null;
    return { publicKey: decodeBase64(row.public_key), validUntilTs: Number(row.valid_until_ts) };
  }

  async save(keys: ServerKeys): Promise<void> {
    const rows: ServerKeysTable[] = [];
    for (const [keyId, pub] of keys.verifyKeys) {
      rows.push({ server_name: keys.serverName, key_id: keyId, public_key: encodeBase64(pub), valid_until_ts: keys.validUntilTs, expired_ts: null, fetched_ts: keys.fetchedTs });
    }
    for (const [keyId, old] of keys.oldVerifyKeys) {
      if (keys.verifyKeys.has(keyId)) continue;
      rows.push({ server_name: keys.serverName, key_id: keyId, public_key: encodeBase64(old.publicKey), valid_until_ts: null, expired_ts: old.expiredTs, fetched_ts: keys.fetchedTs });
    }
    if (rows.length === 0) return;
    // A key's bytes never change under its id; validity only grows, and an expiry, once known, stays.
    await this.db
      .insertInto('server_keys')
      .values(rows)
      .onConflict((oc) =>
        oc.columns(['server_name', 'key_id']).doUpdateSet({
          valid_until_ts: sql`greatest(server_keys.valid_until_ts, excluded.valid_until_ts)`,
          expired_ts: sql`coalesce(excluded.expired_ts, server_keys.expired_ts)`,
          fetched_ts: sql`excluded.fetched_ts`,
        }).where(sql<boolean>`server_keys.public_key = excluded.public_key`),
      )
      .execute();
  }
}
