import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { startTestServer, type TestServer } from '../../testing.ts';
import { registerUser } from '../../testing-users.ts';

async function uploadOk(base: string, token: string, body: Buffer, type: string): Promise<string> {
  const r = await fetch(`${base}/_matrix/media/v3/upload`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': type }, body });
  const j = (await r.json()) as { content_uri: string };
  assert.equal(r.status, 200, JSON.stringify(j));
  return j.content_uri.split('/').pop()!;
}

function thumb(s: TestServer, token: string, id: string, q: string) {
  return fetch(`${s.baseUrl}/_matrix/client/v1/media/thumbnail/localhost/${id}?${q}`, { headers: { authorization: `Bearer ${token}` } });
}

async function withServer(fn: (s: TestServer, token: string) => Promise<void>, config: Record<string, unknown> = {}) {
  const s = await startTestServer({ config });
  try {
    const u = await registerUser(s.baseUrl, 'alice');
    await fn(s, u.accessToken);
  } finally {
    await s.stop();
  }
}

const png = (w: number, h: number) => sharp({ create: { width: w, height: h, channels: 3, background: { r: 200, g: 30, b: 30 } } }).png().toBuffer();

/** A PNG whose header claims width×height while its data is a few bytes: a decompression bomb's shape. */
function bombPng(width: number, height: number): Buffer {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (b: Buffer) => {
    let c = 0xffffffff;
    for (const x of b) c = crcTable[(c ^ x) & 0xff]! ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer) => {
    const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    td.copy(out, 4);
    out.writeUInt32BE(crc(td), 8 + data.length);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // greyscale
  // Only the first rows of zeros: decoding would have to inflate width×height bytes.
  const idat = deflateSync(Buffer.alloc((width + 1) * 4));
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', idat), chunk('IEND', Buffer.alloc(0))]);
}

test('a 64×48 PNG: 32×32 crop decodes at 32×32, scale keeps the aspect, bigger requests get the original', async () => {
  await withServer(async (s, token) => {
    const original = await png(64, 48);
    const id = await uploadOk(s.baseUrl, token, original, 'image/png');
    const r = await thumb(s, token, id, 'width=32&height=32&method=crop');
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'image/png');
    assert.match(r.headers.get('content-security-policy') ?? '', /sandbox/);
    const m = await sharp(Buffer.from(await r.arrayBuffer())).metadata();
    assert.deepEqual([m.width, m.height, m.format], [32, 32, 'png']);
    // scale 32×32 of a 64×48 image: at least 32 wide, the original's aspect ratio.
    const sc = await thumb(s, token, id, 'width=32&height=32&method=scale');
    const ms = await sharp(Buffer.from(await sc.arrayBuffer())).metadata();
    assert.equal(ms.width! / ms.height!, 64 / 48);
    assert.ok(ms.width! >= 32, 'never smaller than asked');
    // Larger than the image: the original itself.
    const big = await thumb(s, token, id, 'width=640&height=480&method=scale');
    assert.deepEqual(Buffer.from(await big.arrayBuffer()), original);
    // The pre-generated crop sizes were stored on upload (32×32 and, capped to the image, 96×96 is not).
    await s.hs.services.media.idle();
    const rows = await s.hs.db.selectFrom('media_thumbnails').selectAll().where('media_id', '=', id).execute();
    assert.ok(rows.some((t) => t.width === 32 && t.height === 32 && t.method === 'crop'));
  });
});

test('thumbnail parameters are checked; non-images get 400', async () => {
  await withServer(async (s, token) => {
    const id = await uploadOk(s.baseUrl, token, await png(100, 100), 'image/png');
    for (const q of ['width=0&height=10', 'width=-1&height=10', 'width=abc&height=10', 'width=10&height=10&method=stretch', 'width=10', 'width=10&height=10&animated=yes']) {
      const r = await thumb(s, token, id, q);
      assert.equal(r.status, 400, q);
      await r.arrayBuffer();
    }
    const txt = await uploadOk(s.baseUrl, token, Buffer.from('just text'), 'image/png');
    const r = await thumb(s, token, txt, 'width=32&height=32');
    assert.equal(r.status, 400);
    assert.equal(((await r.json()) as { errcode: string }).errcode, 'M_UNKNOWN');
  });
});

test('a decompression-bomb PNG is refused with 413 M_TOO_LARGE before decoding, upload itself accepted', async () => {
  await withServer(async (s, token) => {
    const bomb = bombPng(100_000, 100_000);
    assert.ok(bomb.length < 2000);
    const id = await uploadOk(s.baseUrl, token, bomb, 'image/png');
    const r = await thumb(s, token, id, 'width=32&height=32&method=crop');
    assert.equal(r.status, 413);
    assert.equal(((await r.json()) as { errcode: string }).errcode, 'M_TOO_LARGE');
    await s.hs.services.media.idle();
    const rows = await s.hs.db.selectFrom('media_thumbnails').selectAll().where('media_id', '=', id).execute();
    assert.equal(rows.length, 0, 'nothing was pre-generated');
  });
  // Just over a configured limit: refused too; the same image under the limit works.
  await withServer(
    async (s, token) => {
      const id = await uploadOk(s.baseUrl, token, await png(200, 200), 'image/png');
      const r = await thumb(s, token, id, 'width=32&height=32&method=crop');
      assert.equal(r.status, 413);
      await r.arrayBuffer();
      const ok = await uploadOk(s.baseUrl, token, await png(100, 100), 'image/png');
      const r2 = await thumb(s, token, ok, 'width=32&height=32&method=crop');
      assert.equal(r2.status, 200);
      await r2.arrayBuffer();
    },
    { media: { max_image_pixels: 30_000 } },
  );
});

test('EXIF orientation is honoured and metadata stripped from thumbnails', async () => {
  await withServer(async (s, token) => {
    // Stored 400×200, EXIF says rotate 90°: displayed 200×400.
    const jpeg = await sharp({ create: { width: 400, height: 200, channels: 3, background: 'white' } })
      .jpeg()
      .withMetadata({ orientation: 6 })
      .withExif({ IFD0: { Copyright: 'secret camera owner' } })
      .toBuffer();
    assert.equal((await sharp(jpeg).metadata()).orientation, 6);
    const id = await uploadOk(s.baseUrl, token, jpeg, 'image/jpeg');
    const r = await thumb(s, token, id, 'width=320&height=240&method=scale');
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'image/jpeg');
    const out = Buffer.from(await r.arrayBuffer());
    const m = await sharp(out).metadata();
    assert.deepEqual([m.width, m.height], [120, 240]);
    assert.equal(m.exif, undefined);
    assert.equal(m.orientation, undefined);
    assert.ok(!out.includes(Buffer.from('secret camera owner')));
  });
});

test('animated GIF: animated=true gives an animated WebP, otherwise a still image', async () => {
  await withServer(async (s, token) => {
    const frames = await Promise.all(['red', 'blue', 'green'].map((c) => sharp({ create: { width: 200, height: 150, channels: 4, background: c } }).png().toBuffer()));
    const gif = await sharp(frames, { join: { animated: true } }).gif().toBuffer();
    const id = await uploadOk(s.baseUrl, token, gif, 'image/gif');
    const a = await thumb(s, token, id, 'width=96&height=96&method=crop&animated=true');
    assert.equal(a.status, 200);
    assert.equal(a.headers.get('content-type'), 'image/webp');
    const ma = await sharp(Buffer.from(await a.arrayBuffer()), { animated: true }).metadata();
    assert.equal(ma.pages, 3);
    assert.deepEqual([ma.width, ma.pageHeight], [96, 96]);
    for (const q of ['width=96&height=96&method=crop', 'width=96&height=96&method=crop&animated=false']) {
      const st = await thumb(s, token, id, q);
      assert.equal(st.headers.get('content-type'), 'image/png');
      const ms = await sharp(Buffer.from(await st.arrayBuffer()), { animated: true }).metadata();
      assert.equal(ms.pages ?? 1, 1, q);
    }
    // Asked bigger than the GIF without animation: a still copy, not the animated original.
    const big = await thumb(s, token, id, 'width=800&height=600');
    const mb = await sharp(Buffer.from(await big.arrayBuffer()), { animated: true }).metadata();
    assert.equal(mb.pages ?? 1, 1);
    assert.deepEqual([mb.width, mb.height], [200, 150]);
    // A still PNG with animated=true: treated as animated=false.
    const pid = await uploadOk(s.baseUrl, token, await png(300, 300), 'image/png');
    const p = await thumb(s, token, pid, 'width=96&height=96&method=crop&animated=true');
    assert.equal(p.headers.get('content-type'), 'image/png');
    await p.arrayBuffer();
  });
});

test('requests beyond every configured size are rendered on demand at the requested size, not stored', async () => {
  await withServer(async (s, token) => {
    const id = await uploadOk(s.baseUrl, token, await png(2000, 1000), 'image/png');
    const r = await thumb(s, token, id, 'width=1000&height=1000&method=scale');
    const m = await sharp(Buffer.from(await r.arrayBuffer())).metadata();
    assert.deepEqual([m.width, m.height], [1000, 500]);
    const c = await thumb(s, token, id, 'width=150&height=100&method=crop');
    const mc = await sharp(Buffer.from(await c.arrayBuffer())).metadata();
    assert.deepEqual([mc.width, mc.height], [150, 100]);
    await s.hs.services.media.idle();
    const rows = await s.hs.db.selectFrom('media_thumbnails').selectAll().where('media_id', '=', id).execute();
    assert.deepEqual(rows.map((t) => `${t.width}x${t.height}-${t.method}`).sort(), ['320x240-scale', '32x32-crop', '640x480-scale', '800x600-scale', '96x96-crop']);
  });
});
