// The media repository service: uploads (streamed to a staging file, counted, hashed, sniffed, then
// handed to the store), pending ids from /create, downloads of local and remote media, thumbnails,
// and the admin lifecycle (delete, quarantine, purge of the remote cache, expiry of unused ids).
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Homeserver } from '../../homeserver.ts';
import { forbidden, limitExceeded, MatrixError, notFound, tooLarge } from '../../errors.ts';
import { isValidServerNameLoose } from '../../util/server-name.ts';
import * as q from '../../storage/media.ts';
import type { MediaRow, ThumbnailRow } from '../../storage/media.ts';
import { isValidMediaId, LocalMediaStore, mediaKey, stagingDirFor, thumbnailKey, type ByteRange, type MediaStore } from './store.ts';
import { S3MediaStore } from './s3.ts';
import { ANIMATABLE, cleanContentType, sniff, SNIFF_BYTES, THUMBNAILABLE } from './sniff.ts';
import {
  checkPixels,
  chooseThumbnail,
  ImageTooLarge,
  imageInfo,
  ImageUnreadable,
  renderStill,
  renderThumbnail,
  type ImageInfo,
  type Rendered,
  type ThumbnailRequest,
} from './thumbnails.ts';
import { RemoteMediaError, type RemoteMediaFetcher } from './remote.ts';

declare module '../../homeserver.ts' {
  interface Services {
    media: MediaService;
    /** Installed by the federation layer (or a test): how media on other servers is fetched. */
    remoteMediaFetcher?: RemoteMediaFetcher;
  }
}

export const UPLOADED_CHANNEL = 'media.uploaded';
/** The longest a download waits for a pending upload, whatever timeout_ms asks. */
export const MAX_WAIT_MS = 60_000;
/** Largest thumbnail accepted from another server. */
export const REMOTE_THUMBNAIL_MAX_BYTES = 10 * 1024 * 1024;

const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

export function newMediaId(): string {
  let s = '';
  for (let i = 0; i < 24; i++) s += ID_ALPHABET[randomInt(ID_ALPHABET.length)];
  return s;
}

export interface Spooled {
  path: string;
  size: number;
  sha256: string;
  head: Buffer;
}

/**
 * Streams `src` into a new file under `dir`, counting, hashing and keeping the first bytes for
 * sniffing. Beyond `limit` bytes it stops with `overLimit(size)` and removes the file.
 */
export async function spool(src: AsyncIterable<Buffer | Uint8Array> | Readable, dir: string, limit: number, overLimit: (size: number) => Error): Promise<Spooled> {
  const path = join(dir, `${Date.now()}-${randomBytes(8).toString('hex')}`);
  const hash = createHash('sha256');
  const head: Buffer[] = [];
  let headLen = 0;
  let size = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      size += chunk.length;
      if (size > limit) return cb(overLimit(size));
      hash.update(chunk);
      if (headLen < SNIFF_BYTES) {
        const part = chunk.subarray(0, SNIFF_BYTES - headLen);
        head.push(Buffer.from(part));
        headLen += part.length;
      }
      cb(null, chunk);
    },
  });
  try {
    await pipeline(src, counter, createWriteStream(path, { flags: 'wx' }));
  } catch (err) {
    await rm(path, { force: true });
    throw err;
  }
  return { path, size, sha256: hash.digest('hex'), head: Buffer.concat(head, headLen) };
}

/** A tiny counting semaphore: thumbnailing is CPU-bound, so only a few run at once. */
class Slots {
  private free: number;
  private readonly waiters: Array<() => void> = [];
  constructor(n: number) {
    this.free = n;
  }
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((r) => this.waiters.push(r));
    try {
      return await fn();
    } finally {
      const next = this.waiters.shift();
      if (next) next();
      else this.free++;
    }
  }
}

export type ThumbnailResult =
  | { kind: 'original'; contentType: string }
  | { kind: 'stored'; row: ThumbnailRow }
  | { kind: 'rendered'; rendered: Rendered };

export interface UploadOptions {
  contentType: string | undefined;
  filename: string | null;
  declaredLength: number | null;
  /** PUT /upload/{server}/{id}: the pending id from /create. */
  mediaId?: string;
}

export function createStore(hs: Homeserver): MediaStore {
  const m = hs.config.media;
  if (m.backend === 's3') {
    const s3 = m.s3;
    if (!s3.endpoint || !s3.bucket || !s3.access_key_id || !s3.secret_access_key) {
      throw new Error('media.backend is s3 but media.s3.endpoint, bucket, access_key_id or secret_access_key is not set');
    }
    return new S3MediaStore({
      endpoint: s3.endpoint,
      region: s3.region,
      bucket: s3.bucket,
      accessKeyId: s3.access_key_id,
      secretAccessKey: s3.secret_access_key,
      prefix: s3.prefix,
      pathStyle: s3.path_style,
    });
  }
  return new LocalMediaStore(m.store_path ?? join(hs.config.data_dir, 'media'));
}

export class MediaService {
  readonly hs: Homeserver;
  readonly store: MediaStore;
  readonly stagingDir: string;
  private readonly remoteInFlight = new Map<string, Promise<MediaRow>>();
  private readonly thumbInFlight = new Map<string, Promise<ThumbnailRow>>();
  private readonly remoteThumbInFlight = new Map<string, Promise<ThumbnailRow | null>>();
  private readonly background = new Set<Promise<unknown>>();
  private readonly slots = new Slots(2);
  private sweepTimer: NodeJS.Timeout | null = null;
  /** Replaces hs.services.remoteMediaFetcher when set. */
  remoteOverride: RemoteMediaFetcher | null = null;

  constructor(hs: Homeserver, store: MediaStore) {
    this.hs = hs;
    this.store = store;
    this.stagingDir =
      store instanceof LocalMediaStore ? stagingDirFor(store.root) : join(hs.config.data_dir, 'media-staging');
  }

  get remote(): RemoteMediaFetcher | null {
    return this.remoteOverride ?? this.hs.services.remoteMediaFetcher ?? null;
  }

  private get cfg() {
    return this.hs.config.media;
  }

  async start(): Promise<void> {
    await mkdir(this.stagingDir, { recursive: true, mode: 0o700 });
    // Staging files left by a crash are never part of any media.
    for (const f of await readdir(this.stagingDir)) {
      const p = join(this.stagingDir, f);
      const s = await stat(p).catch(() => null);
      if (s && Date.now() - s.mtimeMs > 3600_000) await rm(p, { force: true });
    }
    this.sweepTimer = setInterval(() => void this.expirePending().catch((err) => this.hs.logger.warn({ err }, 'media: expiring pending ids failed')), 10 * 60_000);
    this.sweepTimer.unref();
  }

  async stop(): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    await this.idle();
  }

  /** Resolves once background work (thumbnail pre-generation) has finished. */
  async idle(): Promise<void> {
    while (this.background.size) await Promise.allSettled([...this.background]);
  }

  private inBackground(p: Promise<unknown>): void {
    const tracked = p.catch((err) => this.hs.logger.warn({ err }, 'media: background task failed')).finally(() => this.background.delete(tracked));
    this.background.add(tracked);
  }

  isLocal(serverName: string): boolean {
    return serverName === this.hs.serverName;
  }

  /** Throws 400 for ids that are not mxc media ids or server names (path traversal and the like). */
  checkIds(serverName: string, mediaId: string): void {
    if (!isValidServerNameLoose(serverName)) throw new MatrixError(400, 'M_INVALID_PARAM', 'Invalid server name');
    if (!isValidMediaId(mediaId)) throw new MatrixError(400, 'M_INVALID_PARAM', 'Invalid media id');
  }

  // ---- upload ---------------------------------------------------------------------------------

  /** POST /_matrix/media/v1/create */
  async create(userId: string): Promise<{ mediaId: string; unusedExpiresAt: number }> {
    const now = this.hs.now();
    if ((await q.countPending(this.hs.db, userId, now)) >= this.cfg.max_pending_uploads) throw limitExceeded(60_000);
    const mediaId = newMediaId();
    const expires = now + this.cfg.unused_id_lifetime_ms;
    await q.insertMedia(this.hs.db, q.mediaRow({ server_name: this.hs.serverName, media_id: mediaId, is_remote: false, user_id: userId, created_ts: now, unused_expires_ts: expires }));
    return { mediaId, unusedExpiresAt: expires };
  }

  private async checkPendingTarget(userId: string, mediaId: string): Promise<void> {
    const row = isValidMediaId(mediaId) ? await q.getMedia(this.hs.db, this.hs.serverName, mediaId) : undefined;
    if (!row || row.is_remote) throw notFound('Unknown media ID');
    if (row.uploaded_ts !== null) throw new MatrixError(409, 'M_CANNOT_OVERWRITE_MEDIA', 'Media already uploaded');
    if (row.unused_expires_ts === null || row.unused_expires_ts <= this.hs.now()) throw notFound('Media ID has expired');
    if (row.user_id !== userId) throw forbidden('This media ID was created by another user');
  }

  /** Streams an upload into the store. Returns the media id. */
  async upload(userId: string, body: AsyncIterable<Buffer | Uint8Array>, opts: UploadOptions): Promise<string> {
    const max = this.cfg.max_upload_bytes;
    if (opts.declaredLength !== null && opts.declaredLength > max) throw tooLarge(`Cannot upload files larger than ${max} bytes`);
    if (opts.mediaId !== undefined) await this.checkPendingTarget(userId, opts.mediaId);
    let quotaLeft = Number.POSITIVE_INFINITY;
    if (this.cfg.user_quota_bytes !== null || this.cfg.user_quota_files !== null) {
      const usage = await q.userUsage(this.hs.db, userId);
      if (this.cfg.user_quota_files !== null && usage.files >= this.cfg.user_quota_files) throw forbidden('Media quota reached (number of files)');
      if (this.cfg.user_quota_bytes !== null) quotaLeft = Math.max(0, this.cfg.user_quota_bytes - usage.bytes);
      if (opts.declaredLength !== null && opts.declaredLength > quotaLeft) throw forbidden('Media quota reached (total size)');
    }
    await mkdir(this.stagingDir, { recursive: true });
    const spooled = await spool(body, this.stagingDir, Math.min(max, quotaLeft), (size) =>
      size > max ? tooLarge(`Cannot upload files larger than ${max} bytes`) : forbidden('Media quota reached (total size)'),
    );
    const contentType = cleanContentType(opts.contentType);
    const now = this.hs.now();
    const mediaId = opts.mediaId ?? newMediaId();
    const key = mediaKey(this.hs.serverName, mediaId, false);
    const probed = await this.probe(spooled);
    try {
      await this.store.putFile(key, spooled.path, { size: spooled.size, sha256: spooled.sha256, contentType });
    } finally {
      await rm(spooled.path, { force: true });
    }
    const fields = {
      content_type: contentType,
      upload_name: opts.filename,
      size: spooled.size,
      sha256: spooled.sha256,
      sniffed_type: probed.type,
      width: probed.info?.width ?? null,
      height: probed.info?.height ?? null,
      storage_key: key,
    };
    let ok: boolean;
    try {
      if (opts.mediaId !== undefined) ok = await q.completePending(this.hs.db, this.hs.serverName, mediaId, userId, now, fields);
      else {
        ok = await q.insertMedia(this.hs.db, q.mediaRow({ server_name: this.hs.serverName, media_id: mediaId, is_remote: false, user_id: userId, ...fields, created_ts: now, uploaded_ts: now }));
      }
    } catch (err) {
      await this.store.delete(key).catch(() => {});
      throw err;
    }
    if (!ok) {
      // Another upload to the same pending id won (its bytes are under the same key: leave them).
      const row = await q.getMedia(this.hs.db, this.hs.serverName, mediaId);
      if (row?.uploaded_ts !== null && row?.uploaded_ts !== undefined) throw new MatrixError(409, 'M_CANNOT_OVERWRITE_MEDIA', 'Media already uploaded');
      await this.store.delete(key).catch(() => {});
      throw notFound('Media ID has expired');
    }
    await this.hs.bus.publish(UPLOADED_CHANNEL, { serverName: this.hs.serverName, mediaId });
    if (probed.info && probed.thumbnailable) this.inBackground(this.pregenerate(this.hs.serverName, mediaId));
    return mediaId;
  }

  /** Sniffs the staged file and, for images within the pixel limit, reads their header. */
  private async probe(s: Spooled): Promise<{ type: string | null; info: ImageInfo | null; thumbnailable: boolean }> {
    const sn = sniff(s.head);
    if (!sn.type || !THUMBNAILABLE.has(sn.type)) return { type: sn.type, info: null, thumbnailable: false };
    // The header's own dimensions are checked before libvips opens anything.
    if (sn.width !== undefined && sn.height !== undefined && sn.width * sn.height > this.cfg.max_image_pixels) {
      return { type: sn.type, info: { width: sn.width, height: sn.height, pages: 1, format: sn.type }, thumbnailable: false };
    }
    try {
      const info = await imageInfo(s.path);
      return { type: sn.type, info, thumbnailable: info.width * info.height * info.pages <= this.cfg.max_image_pixels };
    } catch {
      return { type: sn.type, info: null, thumbnailable: false };
    }
  }

  // ---- download -------------------------------------------------------------------------------

  /**
   * The media row for a download: local media (waiting up to timeoutMs for a pending upload) or
   * remote media (from the cache, else fetched when allowRemote).
   */
  async getForDownload(serverName: string, mediaId: string, opts: { allowRemote: boolean; timeoutMs: number }): Promise<MediaRow> {
    this.checkIds(serverName, mediaId);
    if (this.isLocal(serverName)) {
      let row = await q.getMedia(this.hs.db, serverName, mediaId);
      if (row && row.uploaded_ts === null) row = await this.waitForUpload(row, opts.timeoutMs);
      if (!row || row.quarantined_ts !== null || !row.storage_key) throw notFound('Media not found');
      return row;
    }
    const cached = await q.getMedia(this.hs.db, serverName, mediaId);
    if (cached && cached.quarantined_ts !== null) throw notFound('Media not found');
    if (cached && cached.storage_key) return cached;
    if (!opts.allowRemote) throw notFound('Media not found');
    const row = await this.fetchRemote(serverName, mediaId);
    if (row.quarantined_ts !== null) throw notFound('Media not found');
    return row;
  }

  private async waitForUpload(row: MediaRow, timeoutMs: number): Promise<MediaRow | undefined> {
    if (row.unused_expires_ts !== null && row.unused_expires_ts <= this.hs.now()) return undefined;
    const wait = Math.max(0, Math.min(timeoutMs, MAX_WAIT_MS));
    let unsubscribe = () => {};
    let timer: NodeJS.Timeout | undefined;
    const arrived = new Promise<void>((resolve) => {
      unsubscribe = this.hs.bus.subscribe(UPLOADED_CHANNEL, (m) => {
        if (m.serverName === row.server_name && m.mediaId === row.media_id) resolve();
      });
      timer = setTimeout(resolve, wait);
    });
    try {
      // The upload may have finished between the first read and the subscription.
      const again = await q.getMedia(this.hs.db, row.server_name, row.media_id);
      if (!again || again.uploaded_ts !== null) return again;
      await arrived;
    } finally {
      unsubscribe();
      clearTimeout(timer);
    }
    const after = await q.getMedia(this.hs.db, row.server_name, row.media_id);
    if (after && after.uploaded_ts === null) throw new MatrixError(504, 'M_NOT_YET_UPLOADED', 'Content has not yet been uploaded');
    return after;
  }

  private fetchRemote(serverName: string, mediaId: string): Promise<MediaRow> {
    const k = `${serverName}/${mediaId}`;
    let p = this.remoteInFlight.get(k);
    if (!p) {
      p = this.fetchRemoteOnce(serverName, mediaId).finally(() => this.remoteInFlight.delete(k));
      this.remoteInFlight.set(k, p);
    }
    return p;
  }

  private async fetchRemoteOnce(serverName: string, mediaId: string): Promise<MediaRow> {
    const fetcher = this.remote;
    if (!fetcher) throw new MatrixError(502, 'M_UNKNOWN', 'Fetching media from other servers is not available');
    const max = this.cfg.remote_max_bytes;
    let spooled: Spooled;
    let media;
    try {
      media = await fetcher.download(serverName, mediaId, { maxBytes: max, timeoutMs: this.cfg.remote_timeout_ms });
      await mkdir(this.stagingDir, { recursive: true });
      spooled = await spool(media.body, this.stagingDir, max, () => new MatrixError(502, 'M_TOO_LARGE', 'Remote content is too large'));
    } catch (err) {
      if (err instanceof RemoteMediaError) throw new MatrixError(err.status, err.errcode, err.message);
      if (err instanceof MatrixError) throw err;
      throw new MatrixError(502, 'M_UNKNOWN', `Fetching remote media failed: ${(err as Error).message}`);
    }
    const contentType = cleanContentType(media.contentType);
    const key = mediaKey(serverName, mediaId, true);
    const probed = await this.probe(spooled);
    try {
      await this.store.putFile(key, spooled.path, { size: spooled.size, sha256: spooled.sha256, contentType });
    } finally {
      await rm(spooled.path, { force: true });
    }
    const now = this.hs.now();
    const fresh = q.mediaRow({
      server_name: serverName,
      media_id: mediaId,
      is_remote: true,
      user_id: null,
      content_type: contentType,
      upload_name: media.filename,
      size: spooled.size,
      sha256: spooled.sha256,
      sniffed_type: probed.type,
      width: probed.info?.width ?? null,
      height: probed.info?.height ?? null,
      storage_key: key,
      created_ts: now,
      uploaded_ts: now, // for remote media: when the cache was populated (the freeze rule uses it)
      last_access_ts: now,
    });
    // A row may exist already from cached thumbnails (storage_key null): complete it.
    if (!(await q.insertMedia(this.hs.db, fresh))) await q.fillRemoteMedia(this.hs.db, fresh);
    const row = await q.getMedia(this.hs.db, serverName, mediaId);
    if (!row) throw new MatrixError(502, 'M_UNKNOWN', 'Remote media vanished while caching');
    return row;
  }

  /**
   * A thumbnail of remote media whose original is not cached here, made by the origin (server-server
   * /media/thumbnail) and cached as a thumbnail only. Null when the caller should thumbnail the
   * original itself instead (the original is cached already, or the origin could not make one).
   */
  async remoteThumbnail(serverName: string, mediaId: string, req: ThumbnailRequest, animated: boolean): Promise<ThumbnailRow | null> {
    this.checkIds(serverName, mediaId);
    const row = await q.getMedia(this.hs.db, serverName, mediaId);
    if (row?.quarantined_ts !== null && row?.quarantined_ts !== undefined) throw notFound('Media not found');
    if (row?.storage_key) return null;
    const existing = (await q.getThumbnails(this.hs.db, serverName, mediaId)).find(
      (t) => t.width === req.width && t.height === req.height && t.method === req.method && t.animated === animated,
    );
    if (existing) return existing;
    const fetcher = this.remote;
    if (!fetcher?.thumbnail) return null;
    const k = `thumb:${serverName}/${mediaId}/${req.width}x${req.height}/${req.method}/${animated}`;
    let p = this.remoteThumbInFlight.get(k);
    if (!p) {
      p = this.fetchRemoteThumbnail(fetcher, serverName, mediaId, req, animated).finally(() => this.remoteThumbInFlight.delete(k));
      this.remoteThumbInFlight.set(k, p);
    }
    return p;
  }

  private async fetchRemoteThumbnail(fetcher: RemoteMediaFetcher, serverName: string, mediaId: string, req: ThumbnailRequest, animated: boolean): Promise<ThumbnailRow | null> {
    const max = Math.min(this.cfg.remote_max_bytes, REMOTE_THUMBNAIL_MAX_BYTES);
    let spooled: Spooled;
    try {
      const media = await fetcher.thumbnail!(serverName, mediaId, { ...req, animated }, { maxBytes: max, timeoutMs: this.cfg.remote_timeout_ms });
      await mkdir(this.stagingDir, { recursive: true });
      spooled = await spool(media.body, this.stagingDir, max, () => new MatrixError(502, 'M_TOO_LARGE', 'Remote thumbnail is too large'));
    } catch (err) {
      // Unknown media is unknown however it is asked for; anything else: try the original instead.
      if (err instanceof RemoteMediaError && err.status === 404) throw notFound('Media not found');
      this.hs.logger.debug({ err: (err as Error).message, serverName, mediaId }, 'media: remote thumbnail unavailable; using the original');
      return null;
    }
    // Only images we recognise are kept, typed by what their bytes say, whatever the remote claimed.
    const type = sniff(spooled.head).type;
    if (!type || !THUMBNAILABLE.has(type)) {
      await rm(spooled.path, { force: true });
      return null;
    }
    const key = thumbnailKey(serverName, mediaId, req.width, req.height, req.method, animated);
    try {
      await this.store.putFile(key, spooled.path, { size: spooled.size, sha256: spooled.sha256, contentType: type });
    } finally {
      await rm(spooled.path, { force: true });
    }
    const now = this.hs.now();
    // The remote media gets a row without bytes (storage_key null) so quarantine and the cache purge see it.
    await q.insertMedia(this.hs.db, q.mediaRow({ server_name: serverName, media_id: mediaId, is_remote: true, user_id: null, created_ts: now, uploaded_ts: now, last_access_ts: now }));
    const t: ThumbnailRow = {
      server_name: serverName,
      media_id: mediaId,
      width: req.width,
      height: req.height,
      method: req.method,
      animated,
      content_type: type,
      size: spooled.size,
      storage_key: key,
      created_ts: now,
    };
    await q.insertThumbnail(this.hs.db, t);
    return t;
  }

  async open(row: MediaRow, range?: ByteRange): Promise<Readable> {
    return this.store.read(row.storage_key!, range);
  }

  // ---- thumbnails -----------------------------------------------------------------------------

  private async imageInput(row: MediaRow): Promise<string | Buffer> {
    const local = this.store.localPath(row.storage_key!);
    if (local) return local;
    const chunks: Buffer[] = [];
    for await (const c of await this.store.read(row.storage_key!)) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  private tooLargeFor(row: MediaRow): MatrixError {
    return row.is_remote
      ? new MatrixError(502, 'M_TOO_LARGE', 'Remote content is too large to thumbnail')
      : new MatrixError(413, 'M_TOO_LARGE', 'Content is too large to thumbnail');
  }

  /** The thumbnail answering `req` (see chooseThumbnail): the original, a stored one, or one rendered now. */
  async thumbnail(row: MediaRow, req: ThumbnailRequest, animated: boolean): Promise<ThumbnailResult> {
    const type = row.sniffed_type;
    if (!type || !THUMBNAILABLE.has(type)) throw new MatrixError(400, 'M_UNKNOWN', 'Cannot generate thumbnails for the requested content');
    const maxPixels = this.cfg.max_image_pixels;
    // Header dimensions recorded at upload: refused before the file is even opened.
    if (row.width !== null && row.height !== null && row.width * row.height > maxPixels) throw this.tooLargeFor(row);
    const input = await this.imageInput(row);
    let info: ImageInfo;
    try {
      info = await imageInfo(input);
      checkPixels(info, maxPixels);
    } catch (err) {
      if (err instanceof ImageTooLarge) throw this.tooLargeFor(row);
      throw new MatrixError(400, 'M_UNKNOWN', 'Cannot generate thumbnails for the requested content');
    }
    const wantAnimated = animated && info.pages > 1 && ANIMATABLE.has(type);
    const choice = chooseThumbnail(req, info, this.cfg.thumbnail_sizes, this.cfg.dynamic_thumbnails);
    try {
      if (choice.kind === 'original') {
        // Never an animated answer unless asked for one.
        if (info.pages > 1 && !wantAnimated) return { kind: 'rendered', rendered: await this.slots.run(() => renderStill(input, info, maxPixels)) };
        return { kind: 'original', contentType: type };
      }
      if (!choice.stored) {
        return { kind: 'rendered', rendered: await this.slots.run(() => renderThumbnail(input, choice.size, info, { animated: wantAnimated, maxPixels })) };
      }
      return { kind: 'stored', row: await this.storedThumbnail(row, choice.size, wantAnimated, input, info) };
    } catch (err) {
      if (err instanceof ImageTooLarge) throw this.tooLargeFor(row);
      if (err instanceof ImageUnreadable) throw new MatrixError(400, 'M_UNKNOWN', 'Cannot generate thumbnails for the requested content');
      throw err;
    }
  }

  private async storedThumbnail(row: MediaRow, size: ThumbnailRequest, animated: boolean, input: string | Buffer, info: ImageInfo): Promise<ThumbnailRow> {
    const existing = (await q.getThumbnails(this.hs.db, row.server_name, row.media_id)).find(
      (t) => t.width === size.width && t.height === size.height && t.method === size.method && t.animated === animated,
    );
    if (existing) return existing;
    const k = `${row.server_name}/${row.media_id}/${size.width}x${size.height}/${size.method}/${animated}`;
    let p = this.thumbInFlight.get(k);
    if (!p) {
      p = (async () => {
        const rendered = await this.slots.run(() => renderThumbnail(input, size, info, { animated, maxPixels: this.cfg.max_image_pixels }));
        const key = thumbnailKey(row.server_name, row.media_id, size.width, size.height, size.method, animated);
        await this.store.putBuffer(key, rendered.data, rendered.contentType);
        const t: ThumbnailRow = {
          server_name: row.server_name,
          media_id: row.media_id,
          width: size.width,
          height: size.height,
          method: size.method,
          animated,
          content_type: rendered.contentType,
          size: rendered.data.length,
          storage_key: key,
          created_ts: this.hs.now(),
        };
        await q.insertThumbnail(this.hs.db, t);
        return t;
      })().finally(() => this.thumbInFlight.delete(k));
      this.thumbInFlight.set(k, p);
    }
    return p;
  }

  /** Generates the configured sizes for a freshly uploaded image (those smaller than the image). */
  async pregenerate(serverName: string, mediaId: string): Promise<void> {
    const row = await q.getMedia(this.hs.db, serverName, mediaId);
    if (!row?.storage_key) return;
    const input = await this.imageInput(row);
    const info = await imageInfo(input);
    checkPixels(info, this.cfg.max_image_pixels);
    for (const s of this.cfg.thumbnail_sizes) {
      const choice = chooseThumbnail(s, info, this.cfg.thumbnail_sizes, false);
      if (choice.kind === 'size' && choice.size.width === s.width && choice.size.height === s.height && choice.size.method === s.method) {
        await this.storedThumbnail(row, choice.size, false, input, info);
      }
    }
  }

  async readThumbnail(t: ThumbnailRow): Promise<Readable> {
    return this.store.read(t.storage_key);
  }

  // ---- admin and lifecycle ------------------------------------------------------------------------

  /** Removes a piece of media (local or cached remote): its bytes, thumbnails and rows. */
  async deleteMedia(serverName: string, mediaId: string): Promise<boolean> {
    this.checkIds(serverName, mediaId);
    const row = await q.getMedia(this.hs.db, serverName, mediaId);
    if (!row) return false;
    await this.removeFiles(row);
    await q.deleteMediaRows(this.hs.db, serverName, mediaId);
    return true;
  }

  private async removeFiles(row: MediaRow): Promise<void> {
    for (const t of await q.getThumbnails(this.hs.db, row.server_name, row.media_id)) await this.store.delete(t.storage_key);
    if (row.storage_key) await this.store.delete(row.storage_key);
  }

  async setQuarantined(serverName: string, mediaId: string, by: string | null, quarantined: boolean): Promise<boolean> {
    this.checkIds(serverName, mediaId);
    return q.setQuarantine(this.hs.db, serverName, mediaId, quarantined ? by : null, quarantined ? this.hs.now() : null);
  }

  /** Deletes cached remote media older than `beforeTs` (by cache time), reporting progress. */
  async purgeRemoteCache(beforeTs: number, onProgress?: (done: number, total: number) => void): Promise<number> {
    const total = await q.countRemoteCachedBefore(this.hs.db, beforeTs);
    let done = 0;
    for (;;) {
      const batch = await q.remoteCachedBefore(this.hs.db, beforeTs, 100);
      if (batch.length === 0) break;
      for (const row of batch) {
        await this.removeFiles(row);
        await q.deleteMediaRows(this.hs.db, row.server_name, row.media_id);
        done++;
      }
      onProgress?.(done, total);
    }
    return done;
  }

  /** Forgets ids from /create that were never uploaded to in time. */
  async expirePending(): Promise<number> {
    return q.deleteExpiredPending(this.hs.db, this.hs.now());
  }

  async listUserMedia(userId: string, from: number, limit: number): Promise<{ rows: MediaRow[]; total: number }> {
    return q.listUserMedia(this.hs.db, userId, from, limit);
  }

  /** Stores bytes the server fetched itself (URL preview images) as local media with no uploader. */
  async storeServerFile(spooled: Spooled, contentType: string): Promise<MediaRow> {
    const mediaId = newMediaId();
    const key = mediaKey(this.hs.serverName, mediaId, false);
    const probed = await this.probe(spooled);
    try {
      await this.store.putFile(key, spooled.path, { size: spooled.size, sha256: spooled.sha256, contentType });
    } finally {
      await rm(spooled.path, { force: true });
    }
    const now = this.hs.now();
    const row = q.mediaRow({
      server_name: this.hs.serverName,
      media_id: mediaId,
      is_remote: false,
      user_id: null,
      content_type: contentType,
      size: spooled.size,
      sha256: spooled.sha256,
      sniffed_type: probed.type,
      width: probed.info?.width ?? null,
      height: probed.info?.height ?? null,
      storage_key: key,
      created_ts: now,
      uploaded_ts: now,
    });
    await q.insertMedia(this.hs.db, row);
    if (probed.thumbnailable) this.inBackground(this.pregenerate(this.hs.serverName, mediaId));
    return row;
  }
}
