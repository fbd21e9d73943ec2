// History, discovery and search (issue 6): event relations and threads, the full-text search index,
// room statistics for the room directory and spaces, the user directory, and content reports.
//
// The indexes derived from events (relations, threads, search) are kept by triggers on `events`, so they
// commit in the same transaction as the event, whichever process persists it, and a redaction (or a late
// rejection) removes the event from them in the transaction that marks it. The room statistics and the
// user directory need normalisation done in TypeScript: triggers only mark rooms and users as stale,
// and the owning services refresh stale rows before they read (services/room-directory.ts,
// services/user-directory.ts).
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  // Lookups the history endpoints need on the rooms tables: a user's membership events in a room
  // (history visibility "joined at any point after the event") and /timestamp_to_event.
  await sql`create index events_room_member on events (room_id, state_key, stream_ordering) where type = 'm.room.member'`.execute(db);
  await sql`create index events_room_ts on events (room_id, origin_server_ts)`.execute(db);

  // ---------------------------------------------------------------------------------------------
  // Relations (client-server-api "Forming relationships between events"). One row per child event
  // with a valid-looking m.relates_to (rel_type and event_id strings); state events never relate.
  await sql`create table event_relations (
    event_id text primary key,
    room_id text not null,
    relates_to_id text not null,
    rel_type text not null,
    type text not null,
    sender text not null,
    aggregation_key text,
    stream_ordering bigint not null,
    depth bigint not null,
    origin_server_ts bigint not null,
    -- m.replace validity: the replacement carries m.new_content (or is encrypted, and cannot be checked).
    has_new_content boolean not null
  )`.execute(db);
  await sql`create index event_relations_parent on event_relations (relates_to_id, rel_type, stream_ordering)`.execute(db);

  // Threads of a room by latest activity (threads_list.yaml orders by the latest event of each thread).
  await sql`create table threads (
    room_id text not null,
    thread_id text not null,
    latest_event_id text not null,
    latest_stream_ordering bigint not null,
    primary key (room_id, thread_id)
  )`.execute(db);
  await sql`create index threads_room_latest on threads (room_id, latest_stream_ordering)`.execute(db);

  // ---------------------------------------------------------------------------------------------
  // Full-text search (modules/search.md): content.body of m.room.message, content.name of m.room.name,
  // content.topic of m.room.topic. m.room.encrypted never has these keys, so it is never indexed. The
  // vector holds the stemmed words of the configured language and the plain lower-cased words
  // ('simple'), so text in other languages still matches word for word.
  await sql`create table search_settings (
    id integer primary key default 1 check (id = 1),
    language text not null
  )`.execute(db);
  await sql`insert into search_settings (id, language) values (1, 'english')`.execute(db);
  await sql`create table event_search (
    event_id text primary key,
    room_id text not null,
    sender text not null,
    key text not null,
    type text not null,
    stream_ordering bigint not null,
    origin_server_ts bigint not null,
    contains_url boolean not null,
    vector tsvector not null
  )`.execute(db);
  await sql`create index event_search_vector on event_search using gin (vector)`.execute(db);
  await sql`create index event_search_room on event_search (room_id, stream_ordering)`.execute(db);

  await sql`create function axon_index_event() returns trigger language plpgsql as $$
    declare
      c jsonb;
      rel jsonb;
      txt text;
      k text;
      lang text;
    begin
      if NEW.rejected_reason is not null or NEW.soft_failed or NEW.outlier or NEW.redacted_by is not null then
        return null;
      end if;
      c := (NEW.json::jsonb) -> 'content';
      if c is null or jsonb_typeof(c) <> 'object' then
        return null;
      end if;
      rel := c -> 'm.relates_to';
      if NEW.state_key is null and rel is not null and jsonb_typeof(rel) = 'object'
         and jsonb_typeof(rel -> 'rel_type') = 'string' and jsonb_typeof(rel -> 'event_id') = 'string' then
        insert into event_relations (event_id, room_id, relates_to_id, rel_type, type, sender, aggregation_key,
                                     stream_ordering, depth, origin_server_ts, has_new_content)
        values (NEW.event_id, NEW.room_id, rel ->> 'event_id', rel ->> 'rel_type', NEW.type, NEW.sender,
                case when jsonb_typeof(rel -> 'key') = 'string' then rel ->> 'key' end,
                NEW.stream_ordering, NEW.depth, NEW.origin_server_ts,
                coalesce(jsonb_typeof(c -> 'm.new_content') = 'object', false) or NEW.type = 'm.room.encrypted')
        on conflict do nothing;
        if rel ->> 'rel_type' = 'm.thread' then
          insert into threads (room_id, thread_id, latest_event_id, latest_stream_ordering)
          values (NEW.room_id, rel ->> 'event_id', NEW.event_id, NEW.stream_ordering)
          on conflict (room_id, thread_id) do update
            set latest_event_id = excluded.latest_event_id, latest_stream_ordering = excluded.latest_stream_ordering
            where threads.latest_stream_ordering < excluded.latest_stream_ordering;
        end if;
      end if;
      if NEW.type = 'm.room.message' and NEW.state_key is null then
        k := 'content.body';
      elsif NEW.type = 'm.room.name' and NEW.state_key = '' then
        k := 'content.name';
      elsif NEW.type = 'm.room.topic' and NEW.state_key = '' then
        k := 'content.topic';
      end if;
      if k is not null and jsonb_typeof(c -> substr(k, 9)) = 'string' then
        txt := left(c ->> substr(k, 9), 65536);
        if length(txt) > 0 then
          select language into lang from search_settings where id = 1;
          insert into event_search (event_id, room_id, sender, key, type, stream_ordering, origin_server_ts, contains_url, vector)
          values (NEW.event_id, NEW.room_id, NEW.sender, k, NEW.type, NEW.stream_ordering, NEW.origin_server_ts,
                  coalesce(jsonb_typeof(c -> 'url') = 'string', false),
                  to_tsvector(coalesce(lang, 'simple')::regconfig, txt) || to_tsvector('simple'::regconfig, txt))
          on conflict do nothing;
        end if;
      end if;
      return null;
    end
  $$`.execute(db);
  await sql`create trigger events_index_insert after insert on events for each row execute function axon_index_event()`.execute(db);

  // A redacted, rejected or soft-failed event leaves every index: "when a child event is redacted then
  // the relationship is broken" (client-server-api "Aggregations of child events"), and a redacted
  // event's body is gone, so search must not find it.
  await sql`create function axon_unindex_event() returns trigger language plpgsql as $$
    declare
      r record;
      latest record;
    begin
      if (NEW.redacted_by is not null and OLD.redacted_by is null)
         or (NEW.rejected_reason is not null and OLD.rejected_reason is null)
         or (NEW.soft_failed and not OLD.soft_failed) then
        delete from event_search where event_id = NEW.event_id;
        delete from event_relations where event_id = NEW.event_id returning * into r;
        if r.event_id is not null and r.rel_type = 'm.thread' then
          select event_id, stream_ordering into latest from event_relations
            where relates_to_id = r.relates_to_id and rel_type = 'm.thread' and room_id = r.room_id
            order by stream_ordering desc limit 1;
          if latest.event_id is null then
            delete from threads where room_id = r.room_id and thread_id = r.relates_to_id;
          else
            update threads set latest_event_id = latest.event_id, latest_stream_ordering = latest.stream_ordering
              where room_id = r.room_id and thread_id = r.relates_to_id;
          end if;
        end if;
      end if;
      return null;
    end
  $$`.execute(db);
  await sql`create trigger events_index_update after update of redacted_by, rejected_reason, soft_failed on events
    for each row execute function axon_unindex_event()`.execute(db);

  // ---------------------------------------------------------------------------------------------
  // Room statistics: what the room directory, the user directory and the space hierarchy show of a room.
  await sql`create table room_stats (
    room_id text primary key,
    name text,
    topic text,
    canonical_alias text,
    avatar_url text,
    join_rule text,
    history_visibility text,
    guest_access text,
    room_type text,
    encryption text,
    room_version text,
    allowed_room_ids text,
    joined_members integer not null default 0,
    search_text text not null default ''
  )`.execute(db);
  await sql`create table room_stats_stale (room_id text primary key)`.execute(db);
  await sql`create function axon_room_stats_stale() returns trigger language plpgsql as $$
    begin
      if TG_OP = 'DELETE' then
        insert into room_stats_stale (room_id) values (OLD.room_id) on conflict do nothing;
      else
        insert into room_stats_stale (room_id) values (NEW.room_id) on conflict do nothing;
      end if;
      return null;
    end
  $$`.execute(db);
  await sql`create trigger current_state_stats after insert or update or delete on current_state
    for each row execute function axon_room_stats_stale()`.execute(db);

  // ---------------------------------------------------------------------------------------------
  // User directory: searchable users (local users, and remote users who share a room with a local one).
  // `vector` holds the 'simple' tokens of the accent-stripped, lower-cased display name and user id,
  // so a GIN index answers prefix queries ('ali:*') without scanning.
  await sql`create table user_directory (
    user_id text primary key,
    display_name text,
    avatar_url text,
    is_local boolean not null,
    vector tsvector not null
  )`.execute(db);
  await sql`create index user_directory_vector on user_directory using gin (vector)`.execute(db);
  await sql`create table user_directory_stale (user_id text primary key)`.execute(db);
  await sql`create function axon_user_directory_stale() returns trigger language plpgsql as $$
    begin
      if TG_TABLE_NAME = 'profile_fields' then
        if TG_OP = 'DELETE' then
          if OLD.field in ('displayname', 'avatar_url') then
            insert into user_directory_stale (user_id) values (OLD.user_id) on conflict do nothing;
          end if;
          return null;
        end if;
        if NEW.field not in ('displayname', 'avatar_url') then
          return null;
        end if;
      end if;
      insert into user_directory_stale (user_id) values (NEW.user_id) on conflict do nothing;
      return null;
    end
  $$`.execute(db);
  await sql`create trigger users_directory after insert or update of deactivated_ts on users
    for each row execute function axon_user_directory_stale()`.execute(db);
  await sql`create trigger profile_fields_directory after insert or update or delete on profile_fields
    for each row execute function axon_user_directory_stale()`.execute(db);
  await sql`create trigger room_memberships_directory after insert or update of membership on room_memberships
    for each row execute function axon_user_directory_stale()`.execute(db);

  // ---------------------------------------------------------------------------------------------
  // Content reports (modules/report_content.md), for admins.
  await sql`create table content_reports (
    id bigserial primary key,
    kind text not null,
    reporter text not null,
    room_id text,
    event_id text,
    target_user_id text,
    reason text,
    received_ts bigint not null
  )`.execute(db);
  await sql`create index content_reports_received on content_reports (received_ts)`.execute(db);

  // Users and rooms that existed before this migration (events are indexed from here on: the project
  // had no deployments when this landed).
  await sql`insert into user_directory_stale (user_id) select user_id from users on conflict do nothing`.execute(db);
  await sql`insert into user_directory_stale (user_id) select distinct user_id from room_memberships on conflict do nothing`.execute(db);
  await sql`insert into room_stats_stale (room_id) select room_id from rooms on conflict do nothing`.execute(db);
}
