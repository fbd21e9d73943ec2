import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { multipartBody, parseMediaMultipart, boundaryOf } from './multipart.ts';
import { cleanContentType, contentDisposition, filenameFromDisposition, sniff } from './sniff.ts';
import { chooseThumbnail, outputSize } from './thumbnails.ts';
import { checkKey, LocalMediaStore, mediaKey, thumbnailKey } from './store.ts';
import { parseRange } from '../../api/client/media.ts';
import { defaultConfig } from '../../config.ts';

async function collect(src: AsyncIterable<Buffer | Uint8Array>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of src) out.push(Buffer.from(c));
  return Buffer.concat(out);
}

test('multipart: what the writer produces the streaming reader parses back, whatever the chunking', async () => {
  // Bytes that contain near-misses of the delimiter.
  const media = Buffer.concat([Buffer.from('\r\n--bound\r\n--boundar'), randomBytes(5000), Buffer.from('\r\n-')]);
  const wire = await collect(multipartBody('boundaryXYZ', { a: 1 }, { 'Content-Type': 'image/png', 'Content-Disposition': 'inline; filename="a b.png"' }, (await import('node:stream')).Readable.from([media])));
  for (const size of [1, 2, 7, 64, 4096, wire.length]) {
    const chunks = (async function* () {
      for (let i = 0; i < wire.length; i += size) yield wire.subarray(i, i + size);
    })();
    const part = await parseMediaMultipart(chunks, 'boundaryXYZ');
    assert.deepEqual(part.metadata, { a: 1 });
    assert.equal(part.headers['content-type'], 'image/png');
    assert.equal(filenameFromDisposition(part.headers['content-disposition']), 'a b.png');
    assert.ok((await collect(part.body)).equals(media), `chunk size ${size}`);
  }
  assert.equal(boundaryOf('multipart/mixed; boundary="abc def"'), 'abc def');
  assert.equal(boundaryOf('application/json'), null);
  // Truncated bodies are errors, not silently short media.
  const cut = wire.subarray(0, wire.length - 30);
  const part = await parseMediaMultipart((await import('node:stream')).Readable.from([cut]), 'boundaryXYZ');
  await assert.rejects(collect(part.body), /unexpected end/);
});

test('sniff: magic bytes and header dimensions', () => {
  const png = Buffer.alloc(33);
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]).copy(png);
  png.write('IHDR', 12, 'latin1');
  png.writeUInt32BE(640, 16);
  png.writeUInt32BE(480, 20);
  assert.deepEqual(sniff(png), { type: 'image/png', width: 640, height: 480 });
  const gif = Buffer.from('GIF89a\x10\x00\x20\x00', 'latin1');
  assert.deepEqual(sniff(gif), { type: 'image/gif', width: 16, height: 32 });
  assert.equal(sniff(Buffer.from('<!DOCTYPE html><html>')).type, 'text/html');
  assert.equal(sniff(Buffer.from('  <svg xmlns="http://www.w3.org/2000/svg">')).type, 'image/svg+xml');
  assert.equal(sniff(Buffer.from('%PDF-1.7')).type, 'application/pdf');
  assert.equal(sniff(randomBytes(0)).type, null);
});

test('content types and dispositions: unsafe values cleaned, inline only for the safe list', () => {
  assert.equal(cleanContentType('image/png'), 'image/png');
  assert.equal(cleanContentType('text/plain; charset=utf-8'), 'text/plain; charset=utf-8');
  assert.equal(cleanContentType('text/html\r\nSet-Cookie: a=b'), 'application/octet-stream');
  assert.equal(cleanContentType(''), 'application/octet-stream');
  assert.equal(contentDisposition('image/svg+xml', 'x.svg'), 'attachment; filename="x.svg"');
  assert.equal(contentDisposition('TEXT/PLAIN; charset=utf-8', null), 'inline');
  assert.equal(contentDisposition('application/javascript', 'a.js'), 'attachment; filename="a.js"');
});

test('store keys never leave the store directory', () => {
  const store = new LocalMediaStore('/tmp/axon-media-root');
  assert.equal(store.pathFor(mediaKey('localhost', 'abcdef', false)), '/tmp/axon-media-root/local/ab/cd/abcdef');
  assert.equal(mediaKey('[::1]:8448', 'xY', true), 'remote/_5b_3a_3a1_5d_3a8448/xY/__/xY');
  assert.ok(thumbnailKey('a.example', 'id', 32, 32, 'crop', false).startsWith('thumbnails/a.example/'));
  for (const bad of ['../x', 'local/../../etc/passwd', '/etc/passwd', 'a//b', 'a/./b', '']) assert.throws(() => checkKey(bad), bad);
  assert.throws(() => mediaKey('localhost', '../x', false));
  assert.throws(() => mediaKey('localhost', 'a/b', false));
});

test('ranges', () => {
  assert.deepEqual(parseRange('bytes=0-9', 100), { start: 0, end: 9 });
  assert.deepEqual(parseRange('bytes=90-', 100), { start: 90, end: 99 });
  assert.deepEqual(parseRange('bytes=-5', 100), { start: 95, end: 99 });
  assert.deepEqual(parseRange('bytes=50-1000', 100), { start: 50, end: 99 });
  assert.equal(parseRange('bytes=100-', 100), 'unsatisfiable');
  assert.equal(parseRange('bytes=0-1,5-6', 100), null);
  assert.equal(parseRange('items=0-1', 100), null);
  assert.equal(parseRange('bytes=9-1', 100), null);
});

test('thumbnail choice: smallest configured size at least as big as asked; never upscaled', () => {
  const sizes = defaultConfig().media.thumbnail_sizes;
  const src = { width: 4000, height: 3000 };
  assert.deepEqual(chooseThumbnail({ width: 32, height: 32, method: 'crop' }, src, sizes, true), { kind: 'size', size: { width: 32, height: 32, method: 'crop' }, stored: true });
  assert.deepEqual(chooseThumbnail({ width: 50, height: 50, method: 'crop' }, src, sizes, true), { kind: 'size', size: { width: 96, height: 96, method: 'crop' }, stored: true });
  assert.deepEqual(chooseThumbnail({ width: 100, height: 50, method: 'crop' }, src, sizes, true), { kind: 'size', size: { width: 100, height: 50, method: 'crop' }, stored: false });
  // scale 300×300 of 4:3 needs 300×225: 320×240 is enough.
  assert.deepEqual(chooseThumbnail({ width: 300, height: 300, method: 'scale' }, src, sizes, true), { kind: 'size', size: { width: 320, height: 240, method: 'scale' }, stored: true });
  assert.deepEqual(chooseThumbnail({ width: 500, height: 500, method: 'scale' }, src, sizes, true), { kind: 'size', size: { width: 640, height: 480, method: 'scale' }, stored: true });
  assert.deepEqual(chooseThumbnail({ width: 64, height: 64, method: 'crop' }, { width: 64, height: 48 }, sizes, true), { kind: 'original' });
  assert.deepEqual(chooseThumbnail({ width: 2000, height: 2000, method: 'scale' }, src, sizes, false), { kind: 'original' });
  assert.deepEqual(outputSize({ width: 96, height: 96, method: 'crop' }, { width: 64, height: 48 }), { width: 48, height: 48 });
  assert.deepEqual(outputSize({ width: 320, height: 240, method: 'scale' }, { width: 100, height: 400 }), { width: 60, height: 240 });
});
