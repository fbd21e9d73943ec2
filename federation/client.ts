// Outbound server-server requests: discovery (resolve.ts), an address check on every connection the
// discovery did not come from configuration, X-Matrix signing (x-matrix.ts), and the HTTP exchange.
// Answers are web `Response`s whose body streams, so callers can read JSON or relay media alike.
//
// Connections go to exactly the address that was checked (the lookup is pinned), with the Host header
// and TLS server name the spec asks for.
import { request as httpRequest, Agent as HttpAgent, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { request as httpsRequest, Agent as HttpsAgent } from 'node:https';
import type { LookupFunction } from 'node:net';
import { Readable } from 'node:stream';
import type { SigningKey } from '../spec/signing.ts';
import type { ServerKeySource } from './keys.ts';
import { parseWellKnown, wellKnownCacheMs, WELL_KNOWN_ERROR_CACHE_MS, type Destination, type ServerResolver, type WellKnownResult } from './resolve.ts';
import { authorizationHeader } from './x-matrix.ts';

/** The remote could not be reached (resolution, refused address, connection, timeout). */
export class FederationUnreachable extends Error {}

/** The remote answered, but not with what was asked for. */
export class FederationRequestError extends Error {
  readonly status: number;
  readonly errcode: string | undefined;
  constructor(status: number, errcode: string | undefined, message: string) {
    super(message);
    this.status = status;
    this.errcode = errcode;
  }
}

export interface CheckedAddress {
  address: string;
  family: 4 | 6;
}

export interface FederationClientOptions {
  /** This server's name: the X-Matrix origin. */
  serverName: string;
  /** The key to sign with (read at each request, so rotation takes effect). */
  signingKey: () => SigningKey;
  resolver: ServerResolver;
  /**
   * Resolves a host to the address to connect to, refusing (by throwing) addresses the deployment
   * does not allow federation traffic to reach. Not used for configured overrides.
   */
  checkAddress: (host: string) => Promise<CheckedAddress>;
  userAgent: string;
  /** Certificate verification; turn off only for test networks. */
  rejectUnauthorized?: boolean;
  /** Trusted certificate authorities instead of the system's (PEM). */
  ca?: string | Buffer;
}

export interface FederationRequestOptions {
  method?: 'GET' | 'PUT' | 'POST' | 'DELETE';
  /** A JSON body (signed as the X-Matrix `content`). */
  content?: unknown;
  /** Sign with X-Matrix (default true). Key and discovery endpoints are fetched unsigned. */
  signed?: boolean;
  /** Deadline for the response headers. */
  timeoutMs: number;
  /** After the headers, the longest the body may stall. Defaults to timeoutMs. */
  idleTimeoutMs?: number;
}

export interface FederationResponse {
  response: Response;
  /** The URL that was requested (for resolving relative redirects). */
  url: string;
}

const NO_BODY = new Set([204, 205, 304]);

function toResponse(res: IncomingMessage, method: string): Response {
  const headers = new Headers();
  for (const [k, v] of Object.entries(res.headers)) {
    if (v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) headers.append(k, one);
  }
  const status = res.statusCode ?? 502;
  if (NO_BODY.has(status) || method === 'HEAD' || status < 200 || status > 599) {
    res.resume();
    return new Response(null, { status: status < 200 || status > 599 ? 502 : status, headers });
  }
  return new Response(Readable.toWeb(res) as ReadableStream<Uint8Array>, { status, headers });
}

async function readCapped(body: ReadableStream<Uint8Array> | null, max: number): Promise<Buffer> {
  if (!body) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let size = 0;
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.length;
      if (size > max) throw new FederationRequestError(502, undefined, `response body exceeds ${max} bytes`);
      chunks.push(Buffer.from(value));
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return Buffer.concat(chunks, size);
}

export class FederationClient implements ServerKeySource {
  private readonly opts: FederationClientOptions;
  private readonly httpAgent = new HttpAgent({ keepAlive: true, maxSockets: 50 });
  private readonly httpsAgent: HttpsAgent;

  constructor(opts: FederationClientOptions) {
    this.opts = opts;
    this.httpsAgent = new HttpsAgent({ keepAlive: true, maxSockets: 50, rejectUnauthorized: opts.rejectUnauthorized ?? true, ...(opts.ca ? { ca: opts.ca } : {}) });
  }

  get serverName(): string {
    return this.opts.serverName;
  }

  /**
   * Sends a request to `destination` (a server name) for `uri` (`/_matrix/...` with any query, already
   * encoded). Throws FederationUnreachable when no answer came; any HTTP answer is returned as is.
   */
  async request(destination: string, uri: string, opts: FederationRequestOptions): Promise<FederationResponse> {
    if (!uri.startsWith('/')) throw new Error('uri must start with /');
    const method = opts.method ?? 'GET';
    let dest: Destination;
    try {
      dest = await this.opts.resolver.resolve(destination);
    } catch (err) {
      throw new FederationUnreachable(`cannot resolve ${destination}: ${(err as Error).message}`);
    }
    const headers: OutgoingHttpHeaders = { 'user-agent': this.opts.userAgent, accept: 'application/json, */*' };
    let body: Buffer | undefined;
    if (opts.content !== undefined) {
      body = Buffer.from(JSON.stringify(opts.content));
      headers['content-type'] = 'application/json';
      headers['content-length'] = body.length;
    }
    if (opts.signed !== false) {
      headers.authorization = authorizationHeader(
        { method, uri, origin: this.opts.serverName, destination, ...(opts.content !== undefined ? { content: opts.content } : {}) },
        this.opts.signingKey(),
      );
    }
    let url: URL;
    let pinned: CheckedAddress | null = null;
    let servername: string | undefined;
    if (dest.kind === 'override') {
      url = new URL(dest.baseUrl);
    } else {
      const hostForUrl = dest.connectHost.includes(':') ? `[${dest.connectHost}]` : dest.connectHost;
      url = new URL(`https://${hostForUrl}:${dest.port}`);
      try {
        pinned = await this.opts.checkAddress(dest.connectHost);
      } catch (err) {
        throw new FederationUnreachable(`cannot connect to ${destination}: ${(err as Error).message}`);
      }
      headers.host = dest.hostHeader;
      // No SNI for IP addresses; the certificate is then checked against the address.
      servername = dest.tlsServerName ?? '';
    }
    const res = await this.send(url, method, headers, body, pinned, servername, opts.timeoutMs, opts.idleTimeoutMs ?? opts.timeoutMs, destination, uri);
    return { response: toResponse(res, method), url: url.origin + uri };
  }

  private send(
    url: URL,
    method: string,
    headers: OutgoingHttpHeaders,
    body: Buffer | undefined,
    pinned: CheckedAddress | null,
    servername: string | undefined,
    timeoutMs: number,
    idleMs: number,
    destination: string,
    rawPath?: string,
  ): Promise<IncomingMessage> {
    const https = url.protocol === 'https:';
    // The path goes out exactly as given (and signed): URL parsing could re-encode it.
    const path = rawPath ?? url.pathname + url.search;
    if (!https && url.protocol !== 'http:') return Promise.reject(new FederationUnreachable(`scheme ${url.protocol} is not supported`));
    const lookup: LookupFunction | undefined = pinned
      ? (_host, options, cb) => {
          if ((options as { all?: boolean }).all) (cb as unknown as (e: null, a: CheckedAddress[]) => void)(null, [pinned]);
          else cb(null, pinned.address, pinned.family);
        }
      : undefined;
    return new Promise((resolve, reject) => {
      const ctrl = new AbortController();
      const timer = setTimeout(() => ctrl.abort(), timeoutMs);
      const req = (https ? httpsRequest : httpRequest)(
        {
          protocol: url.protocol,
          hostname: url.hostname.replace(/^\[|\]$/g, ''),
          port: url.port || (https ? 443 : 80),
          path,
          method,
          headers,
          agent: https ? this.httpsAgent : this.httpAgent,
          signal: ctrl.signal,
          ...(lookup ? { lookup } : {}),
          ...(https && servername !== undefined ? { servername } : {}),
        },
        (res) => {
          clearTimeout(timer);
          resolve(res);
        },
      );
      // Inactivity at any point (connecting, waiting, mid-body) ends the exchange.
      req.setTimeout(idleMs, () => req.destroy(new Error('stalled')));
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(new FederationUnreachable(`request to ${destination} failed: ${ctrl.signal.aborted ? 'timed out' : err.message}`));
      });
      req.end(body);
    });
  }

  /** A JSON request; a non-2xx answer or a body that is not a JSON object throws FederationRequestError. */
  async requestJson(destination: string, uri: string, opts: FederationRequestOptions & { maxBytes?: number }): Promise<Record<string, unknown>> {
    const { response } = await this.request(destination, uri, opts);
    const raw = await readCapped(response.body, opts.maxBytes ?? 1024 * 1024).catch((err) => {
      if (err instanceof FederationRequestError) throw err;
      throw new FederationUnreachable(`reading the answer from ${destination} failed: ${(err as Error).message}`);
    });
    let json: unknown;
    try {
      json = JSON.parse(raw.toString('utf8'));
    } catch {
      json = undefined;
    }
    const obj = json !== null && typeof json === 'object' && !Array.isArray(json) ? (json as Record<string, unknown>) : null;
    if (response.status < 200 || response.status > 299) {
      const errcode = typeof obj?.errcode === 'string' ? obj.errcode : undefined;
      throw new FederationRequestError(response.status, errcode, `${destination} answered ${response.status}${errcode ? ` ${errcode}` : ''}`);
    }
    if (!obj) throw new FederationRequestError(response.status, undefined, `${destination} did not answer with a JSON object`);
    return obj;
  }

  /** ServerKeySource: GET /_matrix/key/v2/server on the server itself (unsigned; the answer is self-signed). */
  fetchServerKeys(serverName: string): Promise<unknown> {
    return this.requestJson(serverName, '/_matrix/key/v2/server', { signed: false, timeoutMs: 10_000, maxBytes: 64 * 1024 });
  }

  /**
   * For the resolver: GET https://<hostname>/.well-known/matrix/server, following up to five redirects
   * (each target address-checked, loops end at the limit), with a small body cap.
   */
  async fetchWellKnown(hostname: string): Promise<WellKnownResult> {
    let url = new URL(`https://${hostname.includes(':') ? `[${hostname}]` : hostname}/.well-known/matrix/server`);
    const error = { server: null, cacheMs: WELL_KNOWN_ERROR_CACHE_MS };
    for (let hop = 0; hop <= 5; hop++) {
      if (url.protocol !== 'https:') return error;
      let res: IncomingMessage;
      try {
        const addr = await this.opts.checkAddress(url.hostname.replace(/^\[|\]$/g, ''));
        res = await this.send(url, 'GET', { 'user-agent': this.opts.userAgent, accept: 'application/json' }, undefined, addr, undefined, 10_000, 10_000, hostname);
      } catch {
        return error;
      }
      const status = res.statusCode ?? 0;
      if ([301, 302, 303, 307, 308].includes(status) && res.headers.location) {
        res.resume();
        try {
          url = new URL(res.headers.location, url);
        } catch {
          return error;
        }
        continue;
      }
      const response = toResponse(res, 'GET');
      let text: string;
      try {
        text = (await readCapped(response.body, 64 * 1024)).toString('utf8');
      } catch {
        return error;
      }
      if (status !== 200) return error;
      const server = parseWellKnown(text);
      return server ? { server, cacheMs: wellKnownCacheMs(res.headers['cache-control']) } : error;
    }
    return error;
  }

  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }
}
