// Push actions are written in the statement (or transaction) that persists their event, at the event's
// stream position (services/notifications.ts), so they need no stream of their own any more: a sync
// token's events position covers them, with the events stream's guarantee that nothing commits later
// below it. An event's position is unique, so (user, position) is the key — one index fewer to keep up
// on the send path than (user, event) plus (user, position).
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table event_push_actions drop column stream_id`.execute(db);
  await sql`drop sequence if exists push_actions_stream_seq`.execute(db);
  await sql`alter table event_push_actions drop constraint event_push_actions_pkey`.execute(db);
  await sql`drop index event_push_actions_user_order`.execute(db);
  await sql`alter table event_push_actions add primary key (user_id, stream_ordering)`.execute(db);
}
