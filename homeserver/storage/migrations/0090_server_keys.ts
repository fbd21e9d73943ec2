// Other servers' signing keys as fetched from their /_matrix/key/v2/server (federation/keys.ts), kept
// so they survive restarts and are shared between processes. Keys learned once are kept: verify keys
// with the valid_until_ts they were vouched for until, old keys with their expired_ts.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`create table server_keys (
    server_name text not null,
    key_id text not null,
    -- Unpadded base64 of the 32-byte Ed25519 public key.
    public_key text not null,
    -- For keys seen in verify_keys: usable until this time (already capped at fetch time + 7 days).
    valid_until_ts bigint,
    -- For keys seen in old_verify_keys: when the server stopped using them.
    expired_ts bigint,
    fetched_ts bigint not null,
    primary key (server_name, key_id)
  )`.execute(db);
}
