// multipart/mixed for the federation media endpoints (server-server-api "Content Repository"): exactly
// two parts, JSON metadata then the media (bytes, or a Location header to fetch them from). Both
// directions stream: the writer never loads the file, the reader yields the second part's bytes as
// they arrive, holding back only as many bytes as the delimiter is long.
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';

export function newBoundary(): string {
  return randomBytes(16).toString('hex');
}

/** The body of a two-part multipart/mixed response around `media`. */
export function multipartBody(boundary: string, metadata: unknown, mediaHeaders: Record<string, string>, media: Readable | null): Readable {
  const head = Buffer.from(
    `--${boundary}\r\nContent-Type: application/json\r\n\r\n${JSON.stringify(metadata)}\r\n--${boundary}\r\n` +
      Object.entries(mediaHeaders)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('') +
      '\r\n',
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  return Readable.from(
    (async function* () {
      yield head;
      if (media) for await (const chunk of media as AsyncIterable<Buffer>) yield chunk;
      yield tail;
    })(),
    { objectMode: false },
  );
}

export class MultipartError extends Error {}

/** The boundary parameter of a multipart/mixed Content-Type, or null. */
export function boundaryOf(contentType: string | null | undefined): string | null {
  if (!contentType || !/^\s*multipart\/mixed\b/i.test(contentType)) return null;
  const m = /boundary\s*=\s*(?:"([^"]{1,200})"|([^\s;]{1,200}))/i.exec(contentType);
  return m ? (m[1] ?? m[2]!) : null;
}

class Reader {
  private buf: Buffer = Buffer.alloc(0);
  private readonly it: AsyncIterator<Buffer>;
  private done = false;
  constructor(src: AsyncIterable<Buffer | Uint8Array>) {
    const inner = src[Symbol.asyncIterator]();
    this.it = {
      next: async () => {
        const r = await inner.next();
        return r.done ? r : { done: false, value: Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value) };
      },
      return: async () => {
        await inner.return?.();
        return { done: true, value: undefined };
      },
    };
  }
  /** Reads more; false at the end of input. */
  async more(): Promise<boolean> {
    if (this.done) return false;
    const r = await this.it.next();
    if (r.done) {
      this.done = true;
      return false;
    }
    this.buf = this.buf.length ? Buffer.concat([this.buf, r.value]) : r.value;
    return true;
  }
  /** Index of `needle` in the buffered bytes, reading more (up to `limit` buffered bytes) until found. */
  async find(needle: Buffer, limit: number): Promise<number> {
    for (;;) {
      const i = this.buf.indexOf(needle);
      if (i >= 0) return i;
      if (this.buf.length > limit) throw new MultipartError('multipart header section too large');
      if (!(await this.more())) throw new MultipartError('unexpected end of multipart body');
    }
  }
  take(n: number): Buffer {
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }
  get buffered(): Buffer {
    return this.buf;
  }
  async close(): Promise<void> {
    await this.it.return?.();
  }
}

export interface MediaPart {
  metadata: unknown;
  headers: Record<string, string>;
  /** The second part's bytes (empty when it carries a Location header). */
  body: Readable;
}

function parseHeaders(block: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of block.split('\r\n')) {
    if (!line) continue;
    const i = line.indexOf(':');
    if (i <= 0) throw new MultipartError('malformed part header');
    out[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return out;
}

/** Reads the JSON part and the headers of the media part; the media part's bytes stream on. */
export async function parseMediaMultipart(src: AsyncIterable<Buffer | Uint8Array>, boundary: string): Promise<MediaPart> {
  const r = new Reader(src);
  const dash = Buffer.from(`--${boundary}`);
  const delim = Buffer.from(`\r\n--${boundary}`);
  // The first delimiter may start the body (no preamble) or follow a preamble line.
  await r.find(dash, 64 * 1024);
  const first = r.buffered.indexOf(dash);
  r.take(first + dash.length);
  const readPartHeaders = async () => {
    const eol = await r.find(Buffer.from('\r\n'), 1024);
    const rest = r.take(eol + 2).toString('latin1').trim();
    if (rest === '--') throw new MultipartError('multipart body ended early');
    while (r.buffered.length < 2 && (await r.more()));
    if (r.buffered.subarray(0, 2).toString('latin1') === '\r\n') {
      r.take(2);
      return {};
    }
    const end = await r.find(Buffer.from('\r\n\r\n'), 16 * 1024);
    const block = r.take(end).toString('latin1');
    r.take(4);
    return parseHeaders(block);
  };
  await readPartHeaders();
  const jsonEnd = await r.find(delim, 64 * 1024);
  const jsonText = r.take(jsonEnd).toString('utf8');
  r.take(delim.length);
  let metadata: unknown;
  try {
    metadata = jsonText.trim() ? JSON.parse(jsonText) : {};
  } catch {
    throw new MultipartError('first part is not JSON');
  }
  const headers = await readPartHeaders();
  const body = Readable.from(
    (async function* () {
      try {
        for (;;) {
          const i = r.buffered.indexOf(delim);
          if (i >= 0) {
            if (i > 0) yield Buffer.from(r.take(i));
            return;
          }
          const keep = delim.length - 1;
          if (r.buffered.length > keep) yield Buffer.from(r.take(r.buffered.length - keep));
          if (!(await r.more())) throw new MultipartError('unexpected end of multipart body');
        }
      } finally {
        await r.close();
      }
    })(),
    { objectMode: false },
  );
  return { metadata, headers, body };
}
