// Fetching media that lives on other servers (server-server-api "Content Repository"): first the
// authenticated federation endpoint (multipart/mixed: JSON metadata, then the bytes or a Location to
// fetch them from), then — only on 404 M_UNRECOGNIZED, from servers older than Matrix 1.11 — the
// deprecated /_matrix/media/v3/download with allow_remote=false.
//
// Server discovery and X-Matrix signing come from the federation layer (federation/client.ts) through
// the narrow FederationRequester interface.
import { Readable } from 'node:stream';
import { filenameFromDisposition } from './sniff.ts';
import { boundaryOf, MultipartError, parseMediaMultipart } from './multipart.ts';
import { OutboundFailed, OutboundRefused, OutboundTooLarge, safeGet, type IpPolicy } from './outbound.ts';

export interface RemoteMedia {
  contentType: string | null;
  filename: string | null;
  /** Declared length when the remote gave one. */
  size: number | null;
  body: Readable;
}

export interface RemoteFetchOptions {
  maxBytes: number;
  timeoutMs: number;
}

export interface RemoteThumbnailRequest {
  width: number;
  height: number;
  method: 'crop' | 'scale';
  animated: boolean;
}

/** How the media service gets bytes from other servers. */
export interface RemoteMediaFetcher {
  download(serverName: string, mediaId: string, opts: RemoteFetchOptions): Promise<RemoteMedia>;
  /** A thumbnail made by the origin (federation /media/thumbnail); optional for fetchers. */
  thumbnail?(serverName: string, mediaId: string, req: RemoteThumbnailRequest, opts: RemoteFetchOptions): Promise<RemoteMedia>;
}

/** A remote failure in the spec's terms: the status and errcode the local client should see. */
export class RemoteMediaError extends Error {
  readonly status: number;
  readonly errcode: string;
  constructor(status: number, errcode: string, message: string) {
    super(message);
    this.status = status;
    this.errcode = errcode;
  }
}

/** How requests reach other servers (federation/client.ts FederationClient fits this). */
export interface FederationRequester {
  /**
   * GET `uri` (path and query) from the server `destination`, found by server discovery and signed
   * with X-Matrix when `signed`. Rejects when the server cannot be reached; any HTTP answer resolves.
   */
  request(destination: string, uri: string, opts: { signed?: boolean; timeoutMs: number }): Promise<{ response: Response; url: string }>;
}

export interface HttpRemoteMediaFetcherOptions {
  federation: FederationRequester;
  /** Addresses a Location redirect (given by the remote server) may point at. */
  locationPolicy: IpPolicy;
  userAgent: string;
}

async function errorBody(res: Response): Promise<{ errcode?: string; error?: string }> {
  try {
    const text = (await res.text()).slice(0, 4096);
    const j = JSON.parse(text) as unknown;
    return j && typeof j === 'object' ? (j as { errcode?: string; error?: string }) : {};
  } catch {
    return {};
  }
}

function checkDeclared(size: number | null, maxBytes: number): void {
  if (size !== null && size > maxBytes) throw new RemoteMediaError(502, 'M_TOO_LARGE', 'Remote content is too large');
}

const declaredLength = (v: string | null | undefined) => {
  const n = Number(v);
  return v && Number.isSafeInteger(n) && n >= 0 ? n : null;
};

export class HttpRemoteMediaFetcher implements RemoteMediaFetcher {
  private readonly opts: HttpRemoteMediaFetcherOptions;
  constructor(opts: HttpRemoteMediaFetcherOptions) {
    this.opts = opts;
  }

  async download(serverName: string, mediaId: string, opts: RemoteFetchOptions): Promise<RemoteMedia> {
    const timeout = Math.min(opts.timeoutMs, 60_000);
    const uri = `/_matrix/federation/v1/media/download/${encodeURIComponent(mediaId)}?timeout_ms=${timeout}`;
    const { response: res } = await this.get(serverName, uri, opts.timeoutMs, true);
    if (res.status === 200) return this.fromMultipart(res, opts);
    const err = await errorBody(res);
    if ((res.status === 404 || res.status === 405 || res.status === 400) && err.errcode === 'M_UNRECOGNIZED') return this.legacy(serverName, mediaId, opts);
    throw this.mapError(res.status, err);
  }

  async thumbnail(serverName: string, mediaId: string, req: RemoteThumbnailRequest, opts: RemoteFetchOptions): Promise<RemoteMedia> {
    const timeout = Math.min(opts.timeoutMs, 60_000);
    const params = `width=${req.width}&height=${req.height}&method=${req.method}&animated=${req.animated}&timeout_ms=${timeout}`;
    const uri = `/_matrix/federation/v1/media/thumbnail/${encodeURIComponent(mediaId)}?${params}`;
    const { response: res } = await this.get(serverName, uri, opts.timeoutMs, true);
    if (res.status === 200) return this.fromMultipart(res, opts);
    const err = await errorBody(res);
    if ((res.status === 404 || res.status === 405 || res.status === 400) && err.errcode === 'M_UNRECOGNIZED') {
      const legacyUri = `/_matrix/media/v3/thumbnail/${encodeURIComponent(serverName)}/${encodeURIComponent(mediaId)}?${params}&allow_remote=false`;
      return this.legacyGet(serverName, legacyUri, opts);
    }
    throw this.mapError(res.status, err);
  }

  private async get(destination: string, uri: string, timeoutMs: number, signed: boolean): Promise<{ response: Response; url: string }> {
    try {
      return await this.opts.federation.request(destination, uri, { signed, timeoutMs });
    } catch (err) {
      throw new RemoteMediaError(502, 'M_UNKNOWN', `Fetching from ${destination} failed: ${(err as Error).message}`);
    }
  }

  private mapError(status: number, err: { errcode?: string; error?: string }): RemoteMediaError {
    if (status === 404) return new RemoteMediaError(404, 'M_NOT_FOUND', 'Remote media not found');
    if (status === 504 && err.errcode === 'M_NOT_YET_UPLOADED') return new RemoteMediaError(504, 'M_NOT_YET_UPLOADED', 'Remote content has not yet been uploaded');
    if (err.errcode === 'M_TOO_LARGE') return new RemoteMediaError(502, 'M_TOO_LARGE', 'Remote content is too large');
    return new RemoteMediaError(502, 'M_UNKNOWN', `Remote server answered ${status}${err.errcode ? ` ${err.errcode}` : ''}`);
  }

  private async fromMultipart(res: Response, opts: RemoteFetchOptions): Promise<RemoteMedia> {
    const boundary = boundaryOf(res.headers.get('content-type'));
    if (!boundary || !res.body) {
      await res.body?.cancel();
      throw new RemoteMediaError(502, 'M_UNKNOWN', 'Remote server did not answer with multipart/mixed');
    }
    let part;
    try {
      part = await parseMediaMultipart(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>), boundary);
    } catch (err) {
      throw new RemoteMediaError(502, 'M_UNKNOWN', `Bad multipart response: ${(err as MultipartError).message}`);
    }
    const location = part.headers.location;
    if (location) {
      part.body.destroy();
      return this.fromLocation(location, opts);
    }
    const size = declaredLength(part.headers['content-length']);
    checkDeclared(size, opts.maxBytes);
    return {
      contentType: part.headers['content-type'] ?? null,
      filename: filenameFromDisposition(part.headers['content-disposition']),
      size,
      body: part.body,
    };
  }

  /** The media part pointed elsewhere (a CDN, a signed bucket URL): fetched unsigned, address-checked. */
  private async fromLocation(location: string, opts: RemoteFetchOptions): Promise<RemoteMedia> {
    try {
      const res = await safeGet(location, { policy: this.opts.locationPolicy, timeoutMs: opts.timeoutMs, maxRedirects: 5, userAgent: this.opts.userAgent });
      if (res.status !== 200) {
        res.body.resume();
        throw new RemoteMediaError(502, 'M_UNKNOWN', `Media location answered ${res.status}`);
      }
      const size = declaredLength(res.headers['content-length']);
      if (size !== null && size > opts.maxBytes) res.body.destroy();
      checkDeclared(size, opts.maxBytes);
      return { contentType: res.headers['content-type'] ?? null, filename: filenameFromDisposition(res.headers['content-disposition']), size, body: res.body };
    } catch (err) {
      if (err instanceof RemoteMediaError) throw err;
      if (err instanceof OutboundRefused) throw new RemoteMediaError(502, 'M_UNKNOWN', `Media location refused: ${err.message}`);
      if (err instanceof OutboundTooLarge) throw new RemoteMediaError(502, 'M_TOO_LARGE', 'Remote content is too large');
      throw new RemoteMediaError(502, 'M_UNKNOWN', `Media location failed: ${(err as OutboundFailed).message}`);
    }
  }

  /** Servers older than Matrix 1.11: the unauthenticated endpoint, never letting it fetch further. */
  private async legacy(serverName: string, mediaId: string, opts: RemoteFetchOptions): Promise<RemoteMedia> {
    const timeout = Math.min(opts.timeoutMs, 60_000);
    const uri = `/_matrix/media/v3/download/${encodeURIComponent(serverName)}/${encodeURIComponent(mediaId)}?allow_remote=false&allow_redirect=true&timeout_ms=${timeout}`;
    return this.legacyGet(serverName, uri, opts);
  }

  private async legacyGet(serverName: string, uri: string, opts: RemoteFetchOptions): Promise<RemoteMedia> {
    const { response: res, url } = await this.get(serverName, uri, opts.timeoutMs, false);
    const location = res.headers.get('location');
    if ([301, 302, 303, 307, 308].includes(res.status) && location) {
      await res.body?.cancel();
      // Redirect targets are checked like any address a remote server hands us.
      return this.fromLocation(new URL(location, url).href, opts);
    }
    if (res.status !== 200 || !res.body) throw this.mapError(res.status, await errorBody(res));
    const size = declaredLength(res.headers.get('content-length'));
    if (size !== null && size > opts.maxBytes) await res.body.cancel();
    checkDeclared(size, opts.maxBytes);
    return {
      contentType: res.headers.get('content-type'),
      filename: filenameFromDisposition(res.headers.get('content-disposition')),
      size,
      body: Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>),
    };
  }
}
