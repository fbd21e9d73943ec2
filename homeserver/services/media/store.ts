// Where media bytes live. The service spools every upload to a staging file first (counting and
// hashing as it goes, never holding the file in memory), then hands the finished file to the store.
// Keys are built here from validated ids only, and the local store re-checks that a key can never
// resolve outside its root.
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';

export interface ByteRange {
  /** First byte, inclusive. */
  start: number;
  /** Last byte, inclusive. */
  end: number;
}

export interface PutInfo {
  size: number;
  sha256: string;
  contentType: string;
}

export interface MediaStore {
  readonly kind: 'local' | 's3';
  /** Takes a finished staging file into the store (the file is moved or removed). */
  putFile(key: string, file: string, info: PutInfo): Promise<void>;
  /** Small objects produced by the server itself (thumbnails, preview images). */
  putBuffer(key: string, data: Buffer, contentType: string): Promise<void>;
  /** The object's bytes, or a byte range of them. */
  read(key: string, range?: ByteRange): Promise<Readable>;
  /** Removes the object; a missing one is not an error. */
  delete(key: string): Promise<void>;
  /** A path on this machine the image decoder may open directly, when the store has one. */
  localPath(key: string): string | null;
}

/** mxc media ids: client-server-api "Matrix Content (mxc://) URIs" allows only these characters. */
export const MEDIA_ID_RE = /^[A-Za-z0-9_-]{1,255}$/;

export function isValidMediaId(id: string): boolean {
  return MEDIA_ID_RE.test(id);
}

/** A server name as one safe path segment: anything outside [A-Za-z0-9.-] becomes _xx (injective). */
function serverSegment(serverName: string): string {
  const s = serverName.replace(/[^A-Za-z0-9.-]/g, (c) => `_${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return s.startsWith('.') ? `_2e${s.slice(1)}` : s;
}

function fanOut(id: string): string {
  const a = id.slice(0, 2).padEnd(2, '_');
  const b = id.slice(2, 4).padEnd(2, '_');
  return `${a}/${b}/${id}`;
}

export function mediaKey(serverName: string, mediaId: string, isRemote: boolean): string {
  if (!isValidMediaId(mediaId)) throw new Error('invalid media id');
  return isRemote ? `remote/${serverSegment(serverName)}/${fanOut(mediaId)}` : `local/${fanOut(mediaId)}`;
}

export function thumbnailKey(serverName: string, mediaId: string, width: number, height: number, method: string, animated: boolean): string {
  if (!isValidMediaId(mediaId)) throw new Error('invalid media id');
  if (method !== 'crop' && method !== 'scale') throw new Error('invalid method');
  return `thumbnails/${serverSegment(serverName)}/${fanOut(mediaId)}/${width}x${height}-${method}${animated ? '-animated' : ''}`;
}

const KEY_RE = /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/;

export function checkKey(key: string): void {
  if (!KEY_RE.test(key) || key.split('/').some((s) => s === '.' || s === '..')) throw new Error(`invalid media store key: ${JSON.stringify(key)}`);
}

/** Media in a directory: <root>/local/ab/cd/abcdef…, <root>/remote/<server>/…, <root>/thumbnails/…. */
export class LocalMediaStore implements MediaStore {
  readonly kind = 'local' as const;
  readonly root: string;
  constructor(root: string) {
    this.root = resolve(root);
  }

  pathFor(key: string): string {
    checkKey(key);
    const p = resolve(this.root, key);
    if (!p.startsWith(this.root + sep)) throw new Error('media store key escapes the store');
    return p;
  }

  async putFile(key: string, file: string): Promise<void> {
    const p = this.pathFor(key);
    await mkdir(dirname(p), { recursive: true });
    try {
      await rename(file, p);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
      // Staging on another filesystem: copy, then remove the staging file.
      await new Promise<void>((res, rej) => {
        const w = createWriteStream(p);
        createReadStream(file).on('error', rej).pipe(w).on('finish', () => res()).on('error', rej);
      });
      await rm(file, { force: true });
    }
  }

  async putBuffer(key: string, data: Buffer): Promise<void> {
    const p = this.pathFor(key);
    await mkdir(dirname(p), { recursive: true });
    const tmp = `${p}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
    await writeFile(tmp, data);
    await rename(tmp, p);
  }

  async read(key: string, range?: ByteRange): Promise<Readable> {
    const p = this.pathFor(key);
    await stat(p); // a missing file fails here, not midway through a response
    return createReadStream(p, range ? { start: range.start, end: range.end } : {});
  }

  async delete(key: string): Promise<void> {
    await rm(this.pathFor(key), { force: true });
  }

  localPath(key: string): string | null {
    return this.pathFor(key);
  }
}

export function stagingDirFor(root: string): string {
  return join(root, '.staging');
}
