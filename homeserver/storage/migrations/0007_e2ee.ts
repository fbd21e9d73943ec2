// End-to-end encryption support: device keys, one-time and fallback keys, cross-signing keys and their
// signatures, the device_lists stream, to-device inboxes and server-side key backups. The server only
// stores what clients give it; key material and ciphertext are opaque JSON text.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  // The signed device_keys object as uploaded (canonical JSON text); ed25519 is its signing key.
  await sql`create table e2e_device_keys (
    user_id text not null,
    device_id text not null,
    key_json text not null,
    ed25519 text not null,
    ts bigint not null,
    primary key (user_id, device_id)
  )`.execute(db);

  // One-time keys are handed out in upload order (upload_seq), each at most once (claims delete them).
  await sql`create sequence e2e_one_time_keys_upload_seq`.execute(db);
  await sql`create table e2e_one_time_keys (
    user_id text not null,
    device_id text not null,
    algorithm text not null,
    key_id text not null,
    key_json text not null,
    upload_seq bigint not null default nextval('e2e_one_time_keys_upload_seq'),
    primary key (user_id, device_id, algorithm, key_id)
  )`.execute(db);
  await sql`create index e2e_one_time_keys_order on e2e_one_time_keys (user_id, device_id, algorithm, upload_seq)`.execute(db);

  // At most one fallback key per device and algorithm; `used` once a claim returned it.
  await sql`create table e2e_fallback_keys (
    user_id text not null,
    device_id text not null,
    algorithm text not null,
    key_id text not null,
    key_json text not null,
    used boolean not null default false,
    primary key (user_id, device_id, algorithm)
  )`.execute(db);

  // key_type: master, self_signing or user_signing. key_json is the uploaded object (with the
  // signatures it was uploaded with); signatures added later live in e2e_cross_signing_signatures.
  await sql`create table e2e_cross_signing_keys (
    user_id text not null,
    key_type text not null,
    public_key text not null,
    key_json text not null,
    ts bigint not null,
    primary key (user_id, key_type)
  )`.execute(db);

  // Signatures uploaded through /keys/signatures/upload. target_key_id is a device id or a master
  // public key; signer_key_id is e.g. ed25519:<self-signing public key>.
  await sql`create table e2e_cross_signing_signatures (
    target_user_id text not null,
    target_key_id text not null,
    signer_user_id text not null,
    signer_key_id text not null,
    signature text not null,
    primary key (target_user_id, target_key_id, signer_user_id, signer_key_id)
  )`.execute(db);

  // The device_lists stream. kind: 'keys' (user_id's devices or cross-signing keys changed; when
  // viewer is set only that user is told, e.g. of their own user-signing signature on someone's key),
  // 'join' / 'leave' (user_id's membership of the encrypted room room_id changed), 'encrypted'
  // (room_id turned encryption on). Writes are serialised by an advisory lock, so max(stream_id) is
  // always a committed position.
  await sql`create sequence e2e_device_list_seq`.execute(db);
  await sql`create table e2e_device_list_changes (
    stream_id bigint primary key,
    kind text not null,
    user_id text,
    room_id text,
    viewer text
  )`.execute(db);
  await sql`create index e2e_device_list_changes_user on e2e_device_list_changes (user_id, stream_id)`.execute(db);

  // To-device inboxes: positions are per device (a sync token belongs to one device). The inbox row
  // is kept when a device is deleted so a reused device id never sees its positions go backwards.
  await sql`create table to_device_inbox (
    user_id text not null,
    device_id text not null,
    last_seq bigint not null,
    acked_seq bigint not null default 0,
    primary key (user_id, device_id)
  )`.execute(db);
  await sql`create table to_device_messages (
    user_id text not null,
    device_id text not null,
    seq bigint not null,
    sender text not null,
    type text not null,
    content text not null,
    primary key (user_id, device_id, seq)
  )`.execute(db);
  // Idempotency of PUT /sendToDevice per sending device and transaction id.
  await sql`create table to_device_txns (
    user_id text not null,
    device_id text not null,
    txn_id text not null,
    created_ts bigint not null,
    primary key (user_id, device_id, txn_id)
  )`.execute(db);
  await sql`create index to_device_txns_created on to_device_txns (created_ts)`.execute(db);

  // Key backup versions: never reused (deleted versions keep their row). etag changes with the keys.
  await sql`create table e2e_room_keys_versions (
    user_id text not null,
    version bigint not null,
    algorithm text not null,
    auth_data text not null,
    etag bigint not null default 0,
    deleted boolean not null default false,
    primary key (user_id, version)
  )`.execute(db);
  await sql`create table e2e_room_keys (
    user_id text not null,
    version bigint not null,
    room_id text not null,
    session_id text not null,
    first_message_index bigint not null,
    forwarded_count bigint not null,
    is_verified boolean not null,
    session_data text not null,
    primary key (user_id, version, room_id, session_id)
  )`.execute(db);
}
