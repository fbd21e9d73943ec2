// Accounts: users, devices, sessions (hashed access/refresh tokens), login tokens, user-interactive
// auth sessions, registration tokens, shared-secret nonces, profiles, account data, filters.
// Timestamps are bigint milliseconds. Tokens are stored only as sha256 hex digests.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`create table users (
    user_id text primary key,
    localpart text not null unique,
    password_hash text,
    is_guest boolean not null default false,
    is_admin boolean not null default false,
    created_ts bigint not null,
    deactivated_ts bigint,
    erased boolean not null default false
  )`.execute(db);

  await sql`create table devices (
    user_id text not null,
    device_id text not null,
    display_name text,
    created_ts bigint not null,
    last_seen_ts bigint,
    last_seen_ip text,
    primary key (user_id, device_id)
  )`.execute(db);

  // One row per login session. Refreshing rotates both tokens in place; the previous refresh token
  // stays valid until the new access token is first used (client-server-api "Refreshing access tokens").
  await sql`create table sessions (
    session_id text primary key,
    user_id text not null,
    device_id text not null,
    access_token_hash text not null unique,
    access_expires_ts bigint,
    refresh_token_hash text unique,
    prev_refresh_token_hash text unique,
    created_ts bigint not null
  )`.execute(db);
  await sql`create index sessions_user_device on sessions (user_id, device_id)`.execute(db);

  await sql`create table login_tokens (
    token_hash text primary key,
    user_id text not null,
    expires_ts bigint not null
  )`.execute(db);

  await sql`create table uia_sessions (
    session_id text primary key,
    user_id text,
    request_key text not null,
    completed text not null default '[]',
    data text not null default '{}',
    created_ts bigint not null,
    last_used_ts bigint not null
  )`.execute(db);

  await sql`create table registration_tokens (
    token text primary key,
    uses_allowed integer,
    pending integer not null default 0,
    completed integer not null default 0,
    expiry_time bigint,
    created_ts bigint not null
  )`.execute(db);

  await sql`create table registration_nonces (
    nonce text primary key,
    created_ts bigint not null
  )`.execute(db);

  // Profile fields: displayname, avatar_url, m.tz and custom keys. `value` is JSON text.
  await sql`create table profile_fields (
    user_id text not null,
    field text not null,
    value text not null,
    primary key (user_id, field)
  )`.execute(db);

  // Account data: room_id '' is global. stream_id is the position on the account_data stream; a
  // write replaces the row and moves it to a new position, so "changes since N" is stream_id > N.
  await sql`create sequence account_data_stream_seq`.execute(db);
  await sql`create table account_data (
    user_id text not null,
    room_id text not null,
    type text not null,
    content text not null,
    stream_id bigint not null,
    primary key (user_id, room_id, type)
  )`.execute(db);
  await sql`create index account_data_user_stream on account_data (user_id, stream_id)`.execute(db);

  await sql`create table filters (
    user_id text not null,
    filter_id bigint not null,
    filter text not null,
    primary key (user_id, filter_id)
  )`.execute(db);
}
