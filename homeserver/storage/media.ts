// SQL of the media repository (tables from migration 0008_media).
import { sql } from 'kysely';
import type { Queryable } from './schema.ts';

export interface MediaTable {
  server_name: string;
  media_id: string;
  is_remote: boolean;
  user_id: string | null;
  content_type: string | null;
  upload_name: string | null;
  size: number | null;
  sha256: string | null;
  sniffed_type: string | null;
  width: number | null;
  height: number | null;
  storage_key: string | null;
  created_ts: number;
  uploaded_ts: number | null;
  unused_expires_ts: number | null;
  last_access_ts: number | null;
  quarantined_ts: number | null;
  quarantined_by: string | null;
}

export interface MediaThumbnailsTable {
  server_name: string;
  media_id: string;
  width: number;
  height: number;
  method: string;
  animated: boolean;
  content_type: string;
  size: number;
  storage_key: string;
  created_ts: number;
}

export interface UrlPreviewsTable {
  url: string;
  fetched_ts: number;
  expires_ts: number;
  og: string;
}

declare module './schema.ts' {
  interface Tables {
    media: MediaTable;
    media_thumbnails: MediaThumbnailsTable;
    url_previews: UrlPreviewsTable;
  }
}

export type MediaRow = MediaTable;
export type ThumbnailRow = MediaThumbnailsTable;

export async function getMedia(db: Queryable, serverName: string, mediaId: string): Promise<MediaRow | undefined> {
  return db.selectFrom('media').selectAll().where('server_name', '=', serverName).where('media_id', '=', mediaId).executeTakeFirst();
}

/** A media row: the ids, ownership and times given, every other column null (no bytes, not quarantined). */
export function mediaRow(row: Pick<MediaRow, 'server_name' | 'media_id' | 'is_remote' | 'user_id' | 'created_ts'> & Partial<MediaRow>): MediaRow {
  return {
    content_type: null,
    upload_name: null,
    size: null,
    sha256: null,
    sniffed_type: null,
    width: null,
    height: null,
    storage_key: null,
    uploaded_ts: null,
    unused_expires_ts: null,
    last_access_ts: null,
    quarantined_ts: null,
    quarantined_by: null,
    ...row,
  };
}

export async function insertMedia(db: Queryable, row: MediaRow): Promise<boolean> {
  const r = await db.insertInto('media').values(row).onConflict((oc) => oc.doNothing()).returning('media_id').executeTakeFirst();
  return r !== undefined;
}

/** Bytes and files a user has uploaded (pending ids excluded). */
export async function userUsage(db: Queryable, userId: string): Promise<{ bytes: number; files: number }> {
  const r = await db
    .selectFrom('media')
    .select([sql<number>`coalesce(sum(size), 0)::bigint`.as('bytes'), sql<number>`count(*)::bigint`.as('files')])
    .where('user_id', '=', userId)
    .where('is_remote', '=', false)
    .where('uploaded_ts', 'is not', null)
    .executeTakeFirstOrThrow();
  return { bytes: Number(r.bytes), files: Number(r.files) };
}

export async function countPending(db: Queryable, userId: string, now: number): Promise<number> {
  const r = await db
    .selectFrom('media')
    .select(sql<number>`count(*)::bigint`.as('n'))
    .where('user_id', '=', userId)
    .where('uploaded_ts', 'is', null)
    .where('unused_expires_ts', '>', now)
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

/**
 * Marks a pending id as uploaded, only if it is still pending, unexpired and owned by `userId`.
 * Returns false when another upload won the race (or the id expired meanwhile).
 */
export async function completePending(
  db: Queryable,
  serverName: string,
  mediaId: string,
  userId: string,
  now: number,
  fields: Pick<MediaRow, 'content_type' | 'upload_name' | 'size' | 'sha256' | 'sniffed_type' | 'width' | 'height' | 'storage_key'>,
): Promise<boolean> {
  const r = await db
    .updateTable('media')
    .set({ ...fields, uploaded_ts: now, unused_expires_ts: null })
    .where('server_name', '=', serverName)
    .where('media_id', '=', mediaId)
    .where('user_id', '=', userId)
    .where('uploaded_ts', 'is', null)
    .where('unused_expires_ts', '>', now)
    .returning('media_id')
    .executeTakeFirst();
  return r !== undefined;
}

export async function deleteExpiredPending(db: Queryable, now: number): Promise<number> {
  const r = await db.deleteFrom('media').where('uploaded_ts', 'is', null).where('unused_expires_ts', '<=', now).executeTakeFirst();
  return Number(r.numDeletedRows);
}

export async function getThumbnails(db: Queryable, serverName: string, mediaId: string): Promise<ThumbnailRow[]> {
  return db.selectFrom('media_thumbnails').selectAll().where('server_name', '=', serverName).where('media_id', '=', mediaId).execute();
}

export async function insertThumbnail(db: Queryable, row: ThumbnailRow): Promise<void> {
  await db
    .insertInto('media_thumbnails')
    .values(row)
    .onConflict((oc) => oc.columns(['server_name', 'media_id', 'width', 'height', 'method', 'animated']).doNothing())
    .execute();
}

export async function deleteMediaRows(db: Queryable, serverName: string, mediaId: string): Promise<void> {
  await db.deleteFrom('media_thumbnails').where('server_name', '=', serverName).where('media_id', '=', mediaId).execute();
  await db.deleteFrom('media').where('server_name', '=', serverName).where('media_id', '=', mediaId).execute();
}

export async function setQuarantine(db: Queryable, serverName: string, mediaId: string, by: string | null, ts: number | null): Promise<boolean> {
  const r = await db
    .updateTable('media')
    .set({ quarantined_ts: ts, quarantined_by: by })
    .where('server_name', '=', serverName)
    .where('media_id', '=', mediaId)
    .executeTakeFirst();
  return Number(r.numUpdatedRows) > 0;
}

export async function listUserMedia(db: Queryable, userId: string, from: number, limit: number): Promise<{ rows: MediaRow[]; total: number }> {
  const rows = await db
    .selectFrom('media')
    .selectAll()
    .where('user_id', '=', userId)
    .where('is_remote', '=', false)
    .orderBy('created_ts', 'desc')
    .orderBy('media_id')
    .offset(from)
    .limit(limit)
    .execute();
  const t = await db.selectFrom('media').select(sql<number>`count(*)::bigint`.as('n')).where('user_id', '=', userId).where('is_remote', '=', false).executeTakeFirstOrThrow();
  return { rows, total: Number(t.n) };
}

/** Remote media cached before `beforeTs` (by cache time), oldest first, a batch at a time. */
export async function remoteCachedBefore(db: Queryable, beforeTs: number, limit: number): Promise<MediaRow[]> {
  return db
    .selectFrom('media')
    .selectAll()
    .where('is_remote', '=', true)
    .where('uploaded_ts', '<', beforeTs)
    .orderBy('uploaded_ts')
    .limit(limit)
    .execute();
}

export async function countRemoteCachedBefore(db: Queryable, beforeTs: number): Promise<number> {
  const r = await db
    .selectFrom('media')
    .select(sql<number>`count(*)::bigint`.as('n'))
    .where('is_remote', '=', true)
    .where('uploaded_ts', '<', beforeTs)
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

/**
 * Completes the row of remote media known so far only through cached thumbnails (storage_key null)
 * once its bytes are cached. Returns false when another fetch completed it first.
 */
export async function fillRemoteMedia(db: Queryable, row: MediaRow): Promise<boolean> {
  const { server_name, media_id, ...fields } = row;
  const r = await db
    .updateTable('media')
    .set({ ...fields, quarantined_ts: undefined, quarantined_by: undefined, created_ts: undefined })
    .where('server_name', '=', server_name)
    .where('media_id', '=', media_id)
    .where('is_remote', '=', true)
    .where('storage_key', 'is', null)
    .executeTakeFirst();
  return Number(r.numUpdatedRows) > 0;
}

export async function touchMedia(db: Queryable, serverName: string, mediaId: string, now: number): Promise<void> {
  await db.updateTable('media').set({ last_access_ts: now }).where('server_name', '=', serverName).where('media_id', '=', mediaId).execute();
}

export async function getUrlPreview(db: Queryable, url: string, now: number): Promise<Record<string, unknown> | null> {
  const r = await db.selectFrom('url_previews').select('og').where('url', '=', url).where('expires_ts', '>', now).executeTakeFirst();
  return r ? (JSON.parse(r.og) as Record<string, unknown>) : null;
}

export async function putUrlPreview(db: Queryable, url: string, now: number, expires: number, og: Record<string, unknown>): Promise<void> {
  const text = JSON.stringify(og);
  await db
    .insertInto('url_previews')
    .values({ url, fetched_ts: now, expires_ts: expires, og: text })
    .onConflict((oc) => oc.column('url').doUpdateSet({ fetched_ts: now, expires_ts: expires, og: text }))
    .execute();
}
