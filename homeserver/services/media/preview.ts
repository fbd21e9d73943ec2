// URL previews (GET /_matrix/client/v1/media/preview_url): fetch the page through the guarded
// outbound client, read its OpenGraph data, store its image as local media (og:image becomes an mxc
// URI), cache the result in the database.
import { mkdir } from 'node:fs/promises';
import { MatrixError } from '../../errors.ts';
import { getUrlPreview, putUrlPreview } from '../../storage/media.ts';
import { decodeHtml, extractOpenGraph } from './html-meta.ts';
import type { MediaService } from './media.ts';
import { spool } from './media.ts';
import { IpPolicy, OutboundFailed, OutboundRefused, OutboundTooLarge, readCapped, safeGet } from './outbound.ts';
import { cleanContentType, essence, THUMBNAILABLE } from './sniff.ts';

export class UrlPreviewService {
  private readonly media: MediaService;
  readonly policy: IpPolicy;
  private readonly inFlight = new Map<string, Promise<Record<string, unknown>>>();

  constructor(media: MediaService) {
    this.media = media;
    const c = media.hs.config.media.url_previews;
    this.policy = new IpPolicy(c.denied_ip_ranges, c.allowed_ip_ranges);
  }

  private get cfg() {
    return this.media.hs.config.media.url_previews;
  }

  async preview(rawUrl: string): Promise<Record<string, unknown>> {
    if (!this.cfg.enabled) throw new MatrixError(403, 'M_FORBIDDEN', 'URL previews are disabled on this server');
    let url: URL;
    try {
      url = new URL(rawUrl);
    } catch {
      throw new MatrixError(400, 'M_INVALID_PARAM', 'url is not a valid URL');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new MatrixError(400, 'M_INVALID_PARAM', 'Only http and https URLs can be previewed');
    url.hash = '';
    const key = url.href;
    const hs = this.media.hs;
    const cached = await getUrlPreview(hs.db, key, hs.now());
    if (cached) return cached;
    let p = this.inFlight.get(key);
    if (!p) {
      p = this.fetchPreview(key).finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, p);
    }
    return p;
  }

  private async fetchPreview(url: string): Promise<Record<string, unknown>> {
    const hs = this.media.hs;
    const cfg = this.cfg;
    const deadline = AbortSignal.timeout(cfg.timeout_ms);
    const opts = { policy: this.policy, timeoutMs: cfg.timeout_ms, maxRedirects: cfg.max_redirects, userAgent: cfg.user_agent, signal: deadline };
    let og: Record<string, unknown>;
    try {
      const res = await safeGet(url, { ...opts, headers: { accept: 'text/html,application/xhtml+xml,image/*;q=0.9,*/*;q=0.5' } });
      if (res.status < 200 || res.status >= 300) {
        res.body.resume();
        throw new MatrixError(502, 'M_UNKNOWN', `The page answered HTTP ${res.status}`);
      }
      const type = essence(res.headers['content-type'] ?? '');
      if (type.startsWith('image/')) {
        og = {};
        await this.attachImage(og, res, cleanContentType(res.headers['content-type']));
      } else if (type === 'text/html' || type === 'application/xhtml+xml') {
        const body = await readCapped(res.body, cfg.max_bytes, true);
        og = extractOpenGraph(decodeHtml(body, res.headers['content-type']), res.url);
        const image = typeof og['og:image'] === 'string' ? og['og:image'] : null;
        delete og['og:image'];
        delete og['og:image:url'];
        delete og['og:image:secure_url'];
        if (image) {
          try {
            const img = await safeGet(image, { ...opts, headers: { accept: 'image/*' } });
            if (img.status === 200 && essence(img.headers['content-type'] ?? '').startsWith('image/')) await this.attachImage(og, img, cleanContentType(img.headers['content-type']));
            else img.body.resume();
          } catch (err) {
            // A preview without its image is still a preview; a refused image address is not fetched.
            hs.logger.debug({ err: (err as Error).message }, 'url preview: image not fetched');
          }
        }
      } else {
        res.body.destroy();
        og = {};
      }
    } catch (err) {
      if (err instanceof MatrixError) throw err;
      if (err instanceof OutboundRefused) throw new MatrixError(403, 'M_FORBIDDEN', `URL not allowed: ${err.message}`);
      if (err instanceof OutboundTooLarge) throw new MatrixError(502, 'M_TOO_LARGE', 'The page is too large');
      if (err instanceof OutboundFailed || (err as Error).name === 'TimeoutError' || (err as Error).name === 'AbortError') {
        throw new MatrixError(502, 'M_UNKNOWN', `Fetching the URL failed: ${(err as Error).message}`);
      }
      throw err;
    }
    const now = hs.now();
    await putUrlPreview(hs.db, url, now, now + cfg.cache_ms, og);
    return og;
  }

  private async attachImage(og: Record<string, unknown>, res: Awaited<ReturnType<typeof safeGet>>, contentType: string): Promise<void> {
    const cap = Math.min(this.cfg.max_bytes, this.media.hs.config.media.max_upload_bytes);
    await mkdir(this.media.stagingDir, { recursive: true });
    const declared = Number(res.headers['content-length']);
    if (Number.isFinite(declared) && declared > cap) {
      res.body.destroy();
      return;
    }
    let spooled;
    try {
      spooled = await spool(res.body, this.media.stagingDir, cap, () => new OutboundTooLarge('image too large'));
    } catch {
      return;
    }
    const row = await this.media.storeServerFile(spooled, contentType);
    og['og:image'] = `mxc://${row.server_name}/${row.media_id}`;
    og['matrix:image:size'] = row.size;
    if (row.sniffed_type && THUMBNAILABLE.has(row.sniffed_type)) og['og:image:type'] = row.sniffed_type;
    if (row.width && row.height) {
      og['og:image:width'] = row.width;
      og['og:image:height'] = row.height;
    }
  }
}
