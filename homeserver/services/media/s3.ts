// An S3-compatible media store with a small, dependency-free AWS Signature Version 4 signer
// (https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html). Objects are
// uploaded with a single PUT of the finished staging file (its size and SHA-256 already known), read
// with ranged GETs, and removed with DELETE.
import { createHash, createHmac } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import { checkKey, type ByteRange, type MediaStore, type PutInfo } from './store.ts';

export interface S3Options {
  endpoint: string;
  region: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  prefix: string;
  pathStyle: boolean;
  /** The clock (tests sign at fixed times). */
  now?: () => number;
}

const sha256Hex = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');
const hmac = (key: Buffer | string, data: string) => createHmac('sha256', key).update(data).digest();

/** RFC 3986 encoding as SigV4 wants it: everything but unreserved characters, '/' kept in paths. */
export function uriEncode(s: string, keepSlash: boolean): string {
  let out = '';
  for (const byte of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(byte);
    if (/[A-Za-z0-9\-._~]/.test(c) || (keepSlash && c === '/')) out += c;
    else out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

export interface SignInput {
  method: string;
  /** Host header value (with port when not the default). */
  host: string;
  /** The URI path, not yet encoded. */
  path: string;
  query?: Record<string, string>;
  /** Headers to sign besides host, x-amz-date and x-amz-content-sha256 (names in any case). */
  headers?: Record<string, string>;
  payloadHash: string;
  /** YYYYMMDD'T'HHMMSS'Z' */
  amzDate: string;
  region: string;
  service: string;
  accessKeyId: string;
  secretAccessKey: string;
}

export function amzDate(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

/** Returns the headers to send: Authorization, x-amz-date, x-amz-content-sha256 and the signed ones. */
export function signV4(input: SignInput): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(input.headers ?? {})) headers[k.toLowerCase()] = v.trim().replace(/\s+/g, ' ');
  headers.host = input.host;
  headers['x-amz-date'] = input.amzDate;
  headers['x-amz-content-sha256'] = input.payloadHash;
  const names = Object.keys(headers).sort();
  const canonicalHeaders = names.map((n) => `${n}:${headers[n]}\n`).join('');
  const signedHeaders = names.join(';');
  const query = Object.entries(input.query ?? {})
    .map(([k, v]) => [uriEncode(k, false), uriEncode(v, false)] as const)
    .sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const canonicalRequest = [input.method, uriEncode(input.path, true), query, canonicalHeaders, signedHeaders, input.payloadHash].join('\n');
  const day = input.amzDate.slice(0, 8);
  const scope = `${day}/${input.region}/${input.service}/aws4_request`;
  const stringToSign = ['AWS4-HMAC-SHA256', input.amzDate, scope, sha256Hex(canonicalRequest)].join('\n');
  const kDate = hmac(`AWS4${input.secretAccessKey}`, day);
  const kSigning = hmac(hmac(hmac(kDate, input.region), input.service), 'aws4_request');
  const signature = createHmac('sha256', kSigning).update(stringToSign).digest('hex');
  const out: Record<string, string> = { ...headers };
  delete out.host;
  out.authorization = `AWS4-HMAC-SHA256 Credential=${input.accessKeyId}/${scope},SignedHeaders=${signedHeaders},Signature=${signature}`;
  return out;
}

export class S3Error extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

export class S3MediaStore implements MediaStore {
  readonly kind = 's3' as const;
  private readonly opts: S3Options;
  private readonly base: URL;
  constructor(opts: S3Options) {
    this.opts = opts;
    this.base = new URL(opts.endpoint);
  }

  private target(key: string): { host: string; path: string; url: URL } {
    checkKey(key);
    const objectKey = this.opts.prefix + key;
    const url = new URL(this.base.href);
    if (!this.opts.pathStyle) url.hostname = `${this.opts.bucket}.${url.hostname}`;
    const basePath = url.pathname.replace(/\/$/, '');
    const path = this.opts.pathStyle ? `${basePath}/${this.opts.bucket}/${objectKey}` : `${basePath}/${objectKey}`;
    return { host: url.host, path, url };
  }

  private send(method: string, key: string, extra: Record<string, string>, payloadHash: string, body?: Readable | Buffer): Promise<IncomingMessage> {
    const { host, path, url } = this.target(key);
    const headers = signV4({
      method,
      host,
      path,
      headers: extra,
      payloadHash,
      amzDate: amzDate((this.opts.now ?? Date.now)()),
      region: this.opts.region,
      service: 's3',
      accessKeyId: this.opts.accessKeyId,
      secretAccessKey: this.opts.secretAccessKey,
    });
    const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = request(
        { method, hostname: url.hostname, port: url.port || undefined, path: uriEncode(path, true), headers: { ...headers, host } },
        resolve,
      );
      req.on('error', reject);
      if (Buffer.isBuffer(body)) req.end(body);
      else if (body) body.on('error', (e: Error) => req.destroy(e)).pipe(req);
      else req.end();
    });
  }

  private async expectOk(res: IncomingMessage, what: string, okStatuses: number[] = [200, 204]): Promise<void> {
    if (okStatuses.includes(res.statusCode ?? 0)) {
      res.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let n = 0;
    for await (const c of res as AsyncIterable<Buffer>) {
      if (n < 4096) chunks.push(c);
      n += c.length;
    }
    const text = Buffer.concat(chunks).toString('utf8').slice(0, 300);
    throw new S3Error(res.statusCode ?? 0, `S3 ${what}: HTTP ${res.statusCode} ${text}`);
  }

  async putFile(key: string, file: string, info: PutInfo): Promise<void> {
    const res = await this.send(
      'PUT',
      key,
      { 'content-length': String(info.size), 'content-type': info.contentType },
      info.sha256,
      createReadStream(file),
    );
    await this.expectOk(res, `PUT ${key}`);
    await rm(file, { force: true });
  }

  async putBuffer(key: string, data: Buffer, contentType: string): Promise<void> {
    const res = await this.send('PUT', key, { 'content-length': String(data.length), 'content-type': contentType }, sha256Hex(data), data);
    await this.expectOk(res, `PUT ${key}`);
  }

  async read(key: string, range?: ByteRange): Promise<Readable> {
    const res = await this.send('GET', key, range ? { range: `bytes=${range.start}-${range.end}` } : {}, sha256Hex(''));
    if (res.statusCode === 200 || res.statusCode === 206) return res;
    await this.expectOk(res, `GET ${key}`);
    return res;
  }

  async delete(key: string): Promise<void> {
    const res = await this.send('DELETE', key, {}, sha256Hex(''));
    await this.expectOk(res, `DELETE ${key}`, [200, 204, 404]);
  }

  localPath(): string | null {
    return null;
  }
}
