// Just enough HTML reading for link previews: the page's charset, its <title>, and its <meta>
// OpenGraph (og:*) and description tags. No DOM, no scripts; a page is only ever scanned as text.

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0', '#39': "'" };

export function decodeEntities(s: string): string {
  return s.replace(/&(#x[0-9a-f]{1,6}|#\d{1,7}|[a-z]{2,8}|#39);/gi, (m, e: string) => {
    const lower = e.toLowerCase();
    if (lower.startsWith('#x') || lower.startsWith('#')) {
      const n = lower.startsWith('#x') ? parseInt(lower.slice(2), 16) : parseInt(lower.slice(1), 10);
      return n > 0 && n <= 0x10ffff && !(n >= 0xd800 && n <= 0xdfff) ? String.fromCodePoint(n) : m;
    }
    return ENTITIES[lower] ?? m;
  });
}

function attributes(tag: string): Record<string, string> {
  const out: Record<string, string> = {};
  const re = /([a-zA-Z_:][-a-zA-Z0-9_:.]*)\s*(?:=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(tag))) {
    const name = m[1]!.toLowerCase();
    if (!(name in out)) out[name] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return out;
}

/** The charset named by a Content-Type header, or by the page's own <meta> tags, or utf-8. */
export function detectCharset(contentType: string | undefined, head: Buffer): string {
  const fromHeader = /charset\s*=\s*"?([\w.:-]+)/i.exec(contentType ?? '');
  if (fromHeader) return fromHeader[1]!.toLowerCase();
  const text = head.toString('latin1', 0, Math.min(head.length, 4096));
  const meta = /<meta[^>]+charset\s*=\s*["']?([\w.:-]+)/i.exec(text);
  return meta ? meta[1]!.toLowerCase() : 'utf-8';
}

export function decodeHtml(body: Buffer, contentType: string | undefined): string {
  const label = detectCharset(contentType, body);
  try {
    return new TextDecoder(label, { fatal: false }).decode(body);
  } catch {
    return new TextDecoder('utf-8', { fatal: false }).decode(body);
  }
}

const clip = (s: string, n: number) => (s.length > n ? s.slice(0, n - 1) + '…' : s);

/** OpenGraph data of a page: og:* tags, with <title> and the description meta tag as fallbacks. */
export function extractOpenGraph(html: string, pageUrl: string): Record<string, string | number> {
  const og: Record<string, string | number> = {};
  // Comments and script/style bodies are never read as markup.
  const text = html.replace(/<!--[\s\S]*?-->/g, '').replace(/<(script|style|noscript|template)\b[\s\S]*?<\/\1\s*>/gi, '');
  let description: string | null = null;
  for (const m of text.matchAll(/<meta\b([^>]*)>/gi)) {
    const a = attributes(m[1]!);
    const key = (a.property ?? a.name ?? '').trim();
    const content = a.content;
    if (content === undefined || !key) continue;
    if (/^og:[a-z0-9:_.-]{1,64}$/i.test(key)) {
      const k = key.toLowerCase();
      if (!(k in og)) og[k] = clip(content.trim(), 2000);
    } else if (key.toLowerCase() === 'description' && description === null) description = content.trim();
  }
  if (!('og:title' in og)) {
    const t = /<title\b[^>]*>([\s\S]*?)<\/title\s*>/i.exec(text);
    if (t) {
      const title = decodeEntities(t[1]!).replace(/\s+/g, ' ').trim();
      if (title) og['og:title'] = clip(title, 500);
    }
  }
  if (!('og:description' in og) && description) og['og:description'] = clip(description, 2000);
  for (const k of ['og:image:width', 'og:image:height']) {
    if (k in og) {
      const n = Number(og[k]);
      if (Number.isSafeInteger(n) && n > 0) og[k] = n;
      else delete og[k];
    }
  }
  for (const k of ['og:image', 'og:image:url', 'og:image:secure_url', 'og:url']) {
    if (typeof og[k] === 'string') {
      try {
        og[k] = new URL(og[k], pageUrl).href;
      } catch {
        delete og[k];
      }
    }
  }
  if (!og['og:image'] && typeof og['og:image:secure_url'] === 'string') og['og:image'] = og['og:image:secure_url'];
  if (!og['og:image'] && typeof og['og:image:url'] === 'string') og['og:image'] = og['og:image:url'];
  return og;
}
