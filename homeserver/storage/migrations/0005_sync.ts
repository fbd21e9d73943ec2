// Sync and live signals: receipts, presence and push actions (per-user notifications of events),
// each on its own stream. Writes of each stream are serialised by a transaction-scoped advisory lock
// and take their position from a sequence inside that lock, so positions become visible in order and
// "the highest committed position" is simply max(stream_id) (DESIGN.md §3).
// Push rules are stored as the user's m.push_rules account data; typing lives in memory or Redis.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  // thread_id '' is an unthreaded receipt. event_stream_ordering is the receipt's event position,
  // which unread counts compare against.
  await sql`create sequence receipts_stream_seq`.execute(db);
  await sql`create table receipts (
    room_id text not null,
    receipt_type text not null,
    user_id text not null,
    thread_id text not null,
    event_id text not null,
    event_stream_ordering bigint not null,
    ts bigint not null,
    stream_id bigint not null,
    primary key (room_id, receipt_type, user_id, thread_id)
  )`.execute(db);
  await sql`create index receipts_room_stream on receipts (room_id, stream_id)`.execute(db);
  await sql`create index receipts_user on receipts (user_id, room_id)`.execute(db);
  await sql`create index receipts_stream on receipts (stream_id)`.execute(db);

  await sql`create sequence presence_stream_seq`.execute(db);
  await sql`create table presence (
    user_id text primary key,
    state text not null,
    status_msg text,
    last_active_ts bigint not null,
    last_sync_ts bigint not null,
    currently_active boolean not null,
    stream_id bigint not null
  )`.execute(db);
  await sql`create index presence_stream on presence (stream_id)`.execute(db);

  // One row per (user, event) whose push rules said notify. thread_id is 'main' or the thread root.
  await sql`create sequence push_actions_stream_seq`.execute(db);
  await sql`create table event_push_actions (
    user_id text not null,
    event_id text not null,
    room_id text not null,
    stream_ordering bigint not null,
    thread_id text not null,
    highlight boolean not null,
    actions text not null,
    ts bigint not null,
    stream_id bigint not null,
    primary key (user_id, event_id)
  )`.execute(db);
  await sql`create index event_push_actions_user_room on event_push_actions (user_id, room_id, stream_ordering)`.execute(db);
  await sql`create index event_push_actions_user_order on event_push_actions (user_id, stream_ordering)`.execute(db);
  await sql`create index event_push_actions_user_stream on event_push_actions (user_id, stream_id)`.execute(db);
  await sql`create index event_push_actions_stream on event_push_actions (stream_id)`.execute(db);
}
