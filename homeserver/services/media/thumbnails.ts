// Thumbnails (client-server-api/modules/content_repo.md "Thumbnails"): "crop" returns the requested
// aspect ratio, "scale" keeps the original's; never upscaled, never smaller than asked unless the
// original is; the original itself when it is already small enough. Decoding goes through sharp
// (libvips) with the pixel limit enforced twice: from the header before decoding, and by libvips.
import sharp, { type Metadata } from 'sharp';
import type { ThumbnailSize } from '../../config.ts';

// Every thumbnail is decoded once and thrown away: libvips' operation cache would only hold memory.
sharp.cache(false);

export type Method = 'crop' | 'scale';

export interface ThumbnailRequest {
  width: number;
  height: number;
  method: Method;
}

export interface ImageInfo {
  /** Display size (after EXIF orientation). */
  width: number;
  height: number;
  /** Frames (1 for still images). */
  pages: number;
  format: string;
}

export class ImageTooLarge extends Error {}
export class ImageUnreadable extends Error {}

/** Reads the header only (no pixel decoding) for the display size and frame count. */
export async function imageInfo(input: string | Buffer): Promise<ImageInfo> {
  let m: Metadata;
  try {
    m = await sharp(input, { limitInputPixels: false, animated: true }).metadata();
  } catch (err) {
    throw new ImageUnreadable((err as Error).message);
  }
  if (!m.width || !m.height) throw new ImageUnreadable('no dimensions');
  const pages = m.pages ?? 1;
  const frameHeight = m.pageHeight ?? Math.floor(m.height / pages);
  const rotated = (m.orientation ?? 1) >= 5;
  return { width: rotated ? frameHeight : m.width, height: rotated ? m.width : frameHeight, pages, format: m.format ?? 'unknown' };
}

export function checkPixels(info: { width: number; height: number; pages?: number }, maxPixels: number): void {
  if (info.width * info.height * (info.pages ?? 1) > maxPixels) throw new ImageTooLarge(`${info.width}x${info.height}x${info.pages ?? 1} exceeds ${maxPixels} pixels`);
}

const scaleFactor = (box: { width: number; height: number }, src: { width: number; height: number }) => Math.min(box.width / src.width, box.height / src.height, 1);
const sameAspect = (a: { width: number; height: number }, b: { width: number; height: number }) =>
  Math.abs(a.width * b.height - b.width * a.height) <= 0.02 * a.width * b.height;

export type Choice = { kind: 'original' } | { kind: 'size'; size: ThumbnailRequest; stored: boolean };

/**
 * Which thumbnail answers a request: the original when it is no bigger than asked, else the smallest
 * configured size that is at least as big as asked (stored, pre-generated for images), else — with
 * dynamic thumbnails — exactly the requested size, computed and not stored.
 */
export function chooseThumbnail(req: ThumbnailRequest, src: { width: number; height: number }, sizes: readonly ThumbnailSize[], dynamic: boolean): Choice {
  if (src.width <= req.width && src.height <= req.height) return { kind: 'original' };
  let best: ThumbnailSize | null = null;
  if (req.method === 'scale') {
    const want = scaleFactor(req, src);
    for (const s of sizes) {
      if (s.method !== 'scale') continue;
      const f = scaleFactor(s, src);
      if (f + 1e-9 >= want && (!best || f < scaleFactor(best, src))) best = s;
    }
  } else {
    for (const s of sizes) {
      if (s.method !== 'crop' || s.width < req.width || s.height < req.height || !sameAspect(s, req)) continue;
      if (!best || s.width * s.height < best.width * best.height) best = s;
    }
  }
  if (best) return { kind: 'size', size: { width: best.width, height: best.height, method: best.method }, stored: true };
  if (dynamic) return { kind: 'size', size: req, stored: false };
  return { kind: 'original' };
}

/** The output size of a crop or scale of `src` into `box`, without upscaling. */
export function outputSize(box: ThumbnailRequest, src: { width: number; height: number }): { width: number; height: number } {
  if (box.method === 'scale') {
    const f = scaleFactor(box, src);
    return { width: Math.max(1, Math.round(src.width * f)), height: Math.max(1, Math.round(src.height * f)) };
  }
  // crop: the requested aspect ratio, shrunk until it fits inside the original.
  const k = Math.min(1, src.width / box.width, src.height / box.height);
  return { width: Math.max(1, Math.round(box.width * k)), height: Math.max(1, Math.round(box.height * k)) };
}

export interface Rendered {
  data: Buffer;
  contentType: string;
  width: number;
  height: number;
}

/**
 * Renders a thumbnail. EXIF orientation is applied, metadata (EXIF, XMP, ICC beyond sRGB) is not
 * carried over. Animated output (WebP) only when asked and the source has several frames.
 */
export async function renderThumbnail(input: string | Buffer, box: ThumbnailRequest, info: ImageInfo, opts: { animated: boolean; maxPixels: number }): Promise<Rendered> {
  checkPixels(info, opts.maxPixels);
  const animated = opts.animated && info.pages > 1;
  const size = outputSize(box, info);
  let img = sharp(input, { limitInputPixels: opts.maxPixels, animated, failOn: 'error' });
  if (!animated) img = img.rotate(); // EXIF orientation (animated formats carry none)
  img = img.resize({ width: size.width, height: size.height, fit: box.method === 'crop' ? 'cover' : 'inside', position: 'centre', withoutEnlargement: true });
  let contentType: string;
  if (animated) {
    img = img.webp({ quality: 80, effort: 2 });
    contentType = 'image/webp';
  } else if (info.format === 'jpeg') {
    img = img.jpeg({ quality: 80, mozjpeg: false });
    contentType = 'image/jpeg';
  } else {
    img = img.png({ compressionLevel: 6 });
    contentType = 'image/png';
  }
  try {
    const { data, info: out } = await img.toBuffer({ resolveWithObject: true });
    return { data, contentType, width: out.width, height: animated ? (out.pageHeight ?? out.height) : out.height };
  } catch (err) {
    const msg = (err as Error).message;
    if (/pixel limit/i.test(msg)) throw new ImageTooLarge(msg);
    throw new ImageUnreadable(msg);
  }
}

/** A still copy of an image at its own size (an animated original asked for with animated=false). */
export async function renderStill(input: string | Buffer, info: ImageInfo, maxPixels: number): Promise<Rendered> {
  return renderThumbnail(input, { width: info.width, height: info.height, method: 'scale' }, info, { animated: false, maxPixels });
}
