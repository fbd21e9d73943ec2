// Media repository: metadata of local uploads and of cached remote media, their thumbnails, and URL
// previews. The bytes live in the media store (a directory or S3), never in the database.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  // One row per mxc://server_name/media_id. For local media a row exists from POST /create (or the
  // start of POST /upload's commit); uploaded_ts is null while the content is pending. Remote media
  // gets a row once its bytes are cached. storage_key names the object in the media store.
  await sql`create table media (
    server_name text not null,
    media_id text not null,
    is_remote boolean not null,
    user_id text,
    content_type text,
    upload_name text,
    size bigint,
    sha256 text,
    -- What the first bytes say the content is (image/png, ...), for thumbnailing decisions only.
    sniffed_type text,
    width integer,
    height integer,
    storage_key text,
    created_ts bigint not null,
    uploaded_ts bigint,
    unused_expires_ts bigint,
    last_access_ts bigint,
    quarantined_ts bigint,
    quarantined_by text,
    primary key (server_name, media_id)
  )`.execute(db);
  await sql`create index media_user on media (user_id, created_ts) where user_id is not null`.execute(db);
  await sql`create index media_remote_cache on media (uploaded_ts) where is_remote`.execute(db);
  await sql`create index media_pending on media (unused_expires_ts) where uploaded_ts is null`.execute(db);

  await sql`create table media_thumbnails (
    server_name text not null,
    media_id text not null,
    width integer not null,
    height integer not null,
    method text not null,
    animated boolean not null,
    content_type text not null,
    size bigint not null,
    storage_key text not null,
    created_ts bigint not null,
    primary key (server_name, media_id, width, height, method, animated)
  )`.execute(db);

  await sql`create table url_previews (
    url text primary key,
    fetched_ts bigint not null,
    expires_ts bigint not null,
    og text not null
  )`.execute(db);
}
