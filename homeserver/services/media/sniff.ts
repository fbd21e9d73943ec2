// What the first bytes of a file say it is (magic numbers), and image dimensions read straight from
// the header — before any decoder sees the file, so that decompression bombs are refused unopened.
// The declared Content-Type is kept for serving; the sniffed type only decides about thumbnails.

export interface Sniffed {
  /** A MIME type, or null when the bytes are not recognised. */
  type: string | null;
  width?: number;
  height?: number;
  /** True when the header says the image is animated (APNG acTL, animated WebP, GIF is decided later). */
  animated?: boolean;
}

/** How many leading bytes sniff() wants to see (JPEG SOF markers can sit behind large EXIF blocks). */
export const SNIFF_BYTES = 256 * 1024;

const startsWith = (b: Buffer, sig: number[], at = 0) => b.length >= at + sig.length && sig.every((x, i) => b[at + i] === x);
const ascii = (b: Buffer, at: number, s: string) => b.length >= at + s.length && b.toString('latin1', at, at + s.length) === s;

export function sniff(head: Buffer): Sniffed {
  if (startsWith(head, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return png(head);
  if (ascii(head, 0, 'GIF87a') || ascii(head, 0, 'GIF89a')) {
    return { type: 'image/gif', ...(head.length >= 10 ? { width: head.readUInt16LE(6), height: head.readUInt16LE(8) } : {}) };
  }
  if (startsWith(head, [0xff, 0xd8, 0xff])) return jpeg(head);
  if (ascii(head, 0, 'RIFF') && ascii(head, 8, 'WEBP')) return webp(head);
  if (ascii(head, 0, 'RIFF') && ascii(head, 8, 'WAVE')) return { type: 'audio/wav' };
  if (ascii(head, 4, 'ftyp')) {
    const brand = head.toString('latin1', 8, 12);
    if (brand === 'avif' || brand === 'avis') return { type: 'image/avif' };
    if (/^(heic|heix|mif1|msf1)$/.test(brand)) return { type: 'image/heic' };
    if (brand === 'qt  ') return { type: 'video/quicktime' };
    if (/^M4A/.test(brand)) return { type: 'audio/mp4' };
    return { type: 'video/mp4' };
  }
  if (startsWith(head, [0x1a, 0x45, 0xdf, 0xa3])) return { type: 'video/webm' };
  if (ascii(head, 0, 'OggS')) return { type: 'audio/ogg' };
  if (ascii(head, 0, 'ID3') || startsWith(head, [0xff, 0xfb])) return { type: 'audio/mpeg' };
  if (ascii(head, 0, 'fLaC')) return { type: 'audio/flac' };
  if (ascii(head, 0, '%PDF-')) return { type: 'application/pdf' };
  if (startsWith(head, [0x50, 0x4b, 0x03, 0x04])) return { type: 'application/zip' };
  if (ascii(head, 0, 'BM')) return { type: 'image/bmp' };
  if (ascii(head, 0, 'II*\0') || ascii(head, 0, 'MM\0*')) return { type: 'image/tiff' };
  const text = head.toString('latin1', 0, Math.min(head.length, 1024)).replace(/^\uFEFF|^\xEF\xBB\xBF/, '').trimStart().toLowerCase();
  if (/^<!doctype html|^<html|^<head|^<body|^<script|^<iframe|^<!--/.test(text)) return { type: 'text/html' };
  if (/^<svg|^<\?xml[^>]*>\s*(<!--[\s\S]*?-->\s*)*(<!doctype svg[^>]*>\s*)?<svg/.test(text)) return { type: 'image/svg+xml' };
  return { type: null };
}

function png(b: Buffer): Sniffed {
  const out: Sniffed = { type: 'image/png' };
  if (b.length >= 24 && ascii(b, 12, 'IHDR')) {
    out.width = b.readUInt32BE(16);
    out.height = b.readUInt32BE(20);
  }
  // Walk the chunks present in the head: an acTL chunk before IDAT makes it an APNG.
  let at = 8;
  while (at + 8 <= b.length) {
    const len = b.readUInt32BE(at);
    const kind = b.toString('latin1', at + 4, at + 8);
    if (kind === 'acTL') out.animated = true;
    if (kind === 'IDAT' || kind === 'IEND') break;
    at += 12 + len;
  }
  return out;
}

function jpeg(b: Buffer): Sniffed {
  let at = 2;
  while (at + 4 <= b.length) {
    if (b[at] !== 0xff) {
      at++;
      continue;
    }
    const marker = b[at + 1]!;
    if (marker === 0xff) {
      at++;
      continue;
    }
    if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
      at += 2;
      continue;
    }
    const len = b.readUInt16BE(at + 2);
    // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size.
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      if (at + 9 <= b.length) return { type: 'image/jpeg', height: b.readUInt16BE(at + 5), width: b.readUInt16BE(at + 7) };
      break;
    }
    if (marker === 0xda) break; // start of scan: no frame header found before it
    at += 2 + len;
  }
  return { type: 'image/jpeg' };
}

function webp(b: Buffer): Sniffed {
  const chunk = b.toString('latin1', 12, 16);
  if (chunk === 'VP8 ' && b.length >= 30) return { type: 'image/webp', width: b.readUInt16LE(26) & 0x3fff, height: b.readUInt16LE(28) & 0x3fff };
  if (chunk === 'VP8L' && b.length >= 25) {
    const bits = b.readUInt32LE(21);
    return { type: 'image/webp', width: (bits & 0x3fff) + 1, height: ((bits >> 14) & 0x3fff) + 1 };
  }
  if (chunk === 'VP8X' && b.length >= 30) {
    const flags = b[20]!;
    return { type: 'image/webp', width: b.readUIntLE(24, 3) + 1, height: b.readUIntLE(27, 3) + 1, animated: (flags & 0x02) !== 0 };
  }
  return { type: 'image/webp' };
}

/** Formats the thumbnailer decodes (libvips through sharp). SVG, TIFF, BMP and HEIC are left alone. */
export const THUMBNAILABLE = new Set(['image/jpeg', 'image/png', 'image/gif', 'image/webp', 'image/avif']);

/** Formats that may carry animation worth preserving with animated=true. */
export const ANIMATABLE = new Set(['image/gif', 'image/webp', 'image/png']);

// client-server-api/modules/content_repo.md "Serving inline content": the only types served inline.
export const INLINE_SAFE_TYPES = new Set([
  'text/css',
  'text/plain',
  'text/csv',
  'application/json',
  'application/ld+json',
  'image/jpeg',
  'image/gif',
  'image/png',
  'image/apng',
  'image/webp',
  'image/avif',
  'video/mp4',
  'video/webm',
  'video/ogg',
  'video/quicktime',
  'audio/mp4',
  'audio/webm',
  'audio/aac',
  'audio/mpeg',
  'audio/ogg',
  'audio/wave',
  'audio/wav',
  'audio/x-wav',
  'audio/x-pn-wav',
  'audio/flac',
  'audio/x-flac',
]);

/** The type/subtype of a Content-Type value, lower-cased, without parameters. */
export function essence(contentType: string): string {
  return contentType.split(';')[0]!.trim().toLowerCase();
}

/**
 * A Content-Type as given by an uploader, made safe to store and echo: printable ASCII, a
 * type/subtype shape, at most 255 characters. Anything else becomes application/octet-stream.
 */
export function cleanContentType(raw: string | undefined | null): string {
  if (!raw) return 'application/octet-stream';
  const v = raw.trim();
  if (v.length > 255 || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+\/[!#$%&'*+.^_`|~0-9A-Za-z-]+(\s*;\s*[!#$%&'*+.^_`|~0-9A-Za-z-]+=("[^"\\\x00-\x1f\x7f]*"|[!#$%&'*+.^_`|~0-9A-Za-z-]+))*$/.test(v)) {
    return 'application/octet-stream';
  }
  return v;
}

/** An uploader's file name, kept as given but without control characters and within 255 characters. */
export function cleanFilename(raw: unknown): string | null {
  if (typeof raw !== 'string') return null;
  const v = raw.replace(/[\x00-\x1f\x7f]/g, '').trim().slice(0, 255);
  return v.length > 0 ? v : null;
}

/** A Content-Disposition header value (RFC 6266): inline only for the safe list; filename kept. */
export function contentDisposition(contentType: string, filename: string | null): string {
  const kind = INLINE_SAFE_TYPES.has(essence(contentType)) ? 'inline' : 'attachment';
  if (!filename) return kind;
  if (/^[\x20-\x7e]*$/.test(filename)) return `${kind}; filename="${filename.replace(/["\\]/g, '\\$&')}"`;
  const encoded = encodeURIComponent(filename).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `${kind}; filename*=utf-8''${encoded}`;
}

/** The filename in a Content-Disposition header (filename* preferred), or null. */
export function filenameFromDisposition(header: string | null | undefined): string | null {
  if (!header) return null;
  const star = /filename\*\s*=\s*([^']*)'[^']*'([^;\s]+)/i.exec(header);
  if (star) {
    try {
      return cleanFilename(decodeURIComponent(star[2]!));
    } catch {
      /* fall through to filename= */
    }
  }
  const quoted = /filename\s*=\s*"((?:[^"\\]|\\.)*)"/i.exec(header);
  if (quoted) return cleanFilename(quoted[1]!.replace(/\\(.)/g, '$1'));
  const bare = /filename\s*=\s*([^;\s]+)/i.exec(header);
  return bare ? cleanFilename(bare[1]!) : null;
}
