// Rooms: the event DAG, state snapshots, current state, memberships, the auth chain index, stream
// positions, send transaction ids and local aliases (DESIGN.md §3). Events are immutable rows; the only
// columns updated after insert are `redacted_by` and the rejected/soft-failed markers.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`create table rooms (
    room_id text primary key,
    room_version text not null,
    creator text not null,
    is_public boolean not null default false,
    created_ts bigint not null,
    -- The state group of the room's current state (after its forward extremities, resolved).
    state_group text
  )`.execute(db);

  // Positions of the 'events' stream. Allocated from a sequence by the writer; see stream.ts for how
  // readers learn the position below which every write has committed.
  await sql`create sequence events_stream_seq`.execute(db);
  await sql`create table stream_in_flight (
    stream text not null,
    position bigint not null,
    instance text not null,
    created_ts bigint not null,
    primary key (stream, position)
  )`.execute(db);

  await sql`create table events (
    event_id text primary key,
    room_id text not null,
    type text not null,
    state_key text,
    sender text not null,
    depth bigint not null,
    origin_server_ts bigint not null,
    stream_ordering bigint not null unique,
    -- The full signed PDU as canonical-ish JSON text (never redacted in place: redaction is applied when served).
    json text not null,
    redacts text,
    redacted_by text,
    rejected_reason text,
    soft_failed boolean not null default false,
    outlier boolean not null default false,
    -- State groups before and after the event (equal for non-state events).
    state_group_before text,
    state_group text,
    -- Auth chain index position (state events only): chain id (the event id of the chain's first event) and sequence.
    auth_chain_id text,
    auth_chain_seq integer
  )`.execute(db);
  await sql`create index events_room_stream on events (room_id, stream_ordering)`.execute(db);
  await sql`create index events_room_topo on events (room_id, depth, stream_ordering)`.execute(db);
  await sql`create index events_redacts on events (redacts) where redacts is not null`.execute(db);
  await sql`create index events_auth_chain on events (auth_chain_id, auth_chain_seq) where auth_chain_id is not null`.execute(db);

  await sql`create table event_edges (
    event_id text not null,
    prev_event_id text not null,
    room_id text not null,
    primary key (event_id, prev_event_id)
  )`.execute(db);
  await sql`create index event_edges_prev on event_edges (prev_event_id)`.execute(db);

  await sql`create table event_auth (
    event_id text not null,
    auth_id text not null,
    room_id text not null,
    primary key (event_id, auth_id)
  )`.execute(db);

  // Auth chain index: for each state event, the highest sequence number it reaches in every other chain.
  await sql`create table auth_chain_reach (
    event_id text not null,
    chain_id text not null,
    max_seq integer not null,
    primary key (event_id, chain_id)
  )`.execute(db);

  // State groups: immutable snapshots, each a delta from its parent (prev_group); delta_depth counts the
  // hops to a full snapshot and is capped so reading a state is a bounded walk.
  await sql`create table state_groups (
    group_id text primary key,
    room_id text not null,
    prev_group text,
    delta_depth integer not null
  )`.execute(db);
  // event_id null marks a key removed relative to the parent (state resolution may drop keys).
  await sql`create table state_group_entries (
    group_id text not null,
    type text not null,
    state_key text not null,
    event_id text,
    primary key (group_id, type, state_key)
  )`.execute(db);

  await sql`create table current_state (
    room_id text not null,
    type text not null,
    state_key text not null,
    event_id text not null,
    membership text,
    primary key (room_id, type, state_key)
  )`.execute(db);

  await sql`create table forward_extremities (
    room_id text not null,
    event_id text not null,
    primary key (room_id, event_id)
  )`.execute(db);

  // Current membership of every user in every room they have a membership event in ("rooms of user").
  await sql`create table room_memberships (
    user_id text not null,
    room_id text not null,
    membership text not null,
    event_id text not null,
    sender text not null,
    stream_ordering bigint not null,
    forgotten boolean not null default false,
    primary key (user_id, room_id)
  )`.execute(db);
  await sql`create index room_memberships_room on room_memberships (room_id, membership)`.execute(db);

  // Send idempotency (client-server-api "Transaction identifiers": scoped to one device and one endpoint).
  await sql`create table event_txn_ids (
    user_id text not null,
    device_id text not null,
    endpoint text not null,
    room_id text not null,
    txn_id text not null,
    event_id text not null,
    created_ts bigint not null,
    primary key (user_id, device_id, endpoint, room_id, txn_id)
  )`.execute(db);
  // unsigned.transaction_id for the sending device (sync, /messages).
  await sql`create index event_txn_ids_event on event_txn_ids (event_id)`.execute(db);

  await sql`create table room_aliases (
    alias text primary key,
    room_id text not null,
    creator text not null,
    created_ts bigint not null
  )`.execute(db);
  await sql`create index room_aliases_room on room_aliases (room_id)`.execute(db);
}
