import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import { signV4 } from './s3.ts';
import { startTestServer } from '../../testing.ts';
import { registerUser } from '../../testing-users.ts';

test('SigV4 matches the AWS documentation example (GET Object with Range)', () => {
  const h = signV4({
    method: 'GET',
    host: 'examplebucket.s3.amazonaws.com',
    path: '/test.txt',
    headers: { Range: 'bytes=0-9' },
    payloadHash: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    amzDate: '20130524T000000Z',
    region: 'us-east-1',
    service: 's3',
    accessKeyId: 'AKIAIOSFODNN7EXAMPLE',
    secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
  });
  assert.equal(
    h.authorization,
    'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41',
  );
});

/** A tiny S3: objects in memory, every request's signature and payload hash checked. */
async function fakeS3(secret: string) {
  const objects = new Map<string, { body: Buffer; type: string }>();
  const log: string[] = [];
  const srv = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const auth = req.headers.authorization ?? '';
    const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/s3\/aws4_request,SignedHeaders=([^,]+),Signature=([0-9a-f]{64})$/.exec(auth);
    const path = decodeURIComponent(new URL(req.url!, 'http://x').pathname);
    log.push(`${req.method} ${path}`);
    if (!m) return res.writeHead(403).end('<Error><Code>AccessDenied</Code></Error>');
    const signed = m[4]!.split(';').filter((n) => !['host', 'x-amz-date', 'x-amz-content-sha256'].includes(n));
    const headers: Record<string, string> = {};
    for (const n of signed) headers[n] = String(req.headers[n]);
    const expect = signV4({
      method: req.method!,
      host: req.headers.host!,
      path,
      headers,
      payloadHash: String(req.headers['x-amz-content-sha256']),
      amzDate: String(req.headers['x-amz-date']),
      region: m[3]!,
      service: 's3',
      accessKeyId: m[1]!,
      secretAccessKey: secret,
    });
    if (expect.authorization !== auth) return res.writeHead(403).end('<Error><Code>SignatureDoesNotMatch</Code></Error>');
    if (req.method === 'PUT') {
      if (createHash('sha256').update(body).digest('hex') !== req.headers['x-amz-content-sha256']) return res.writeHead(400).end('<Error><Code>XAmzContentSHA256Mismatch</Code></Error>');
      objects.set(path, { body, type: String(req.headers['content-type']) });
      return res.writeHead(200).end();
    }
    const obj = objects.get(path);
    if (req.method === 'DELETE') {
      objects.delete(path);
      return res.writeHead(204).end();
    }
    if (!obj) return res.writeHead(404).end('<Error><Code>NoSuchKey</Code></Error>');
    const range = /^bytes=(\d+)-(\d+)$/.exec(String(req.headers.range ?? ''));
    if (range) {
      const slice = obj.body.subarray(Number(range[1]), Number(range[2]) + 1);
      return res.writeHead(206, { 'content-length': slice.length }).end(slice);
    }
    res.writeHead(200, { 'content-type': obj.type, 'content-length': obj.body.length }).end(obj.body);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`, objects, log, close: () => new Promise<void>((r) => srv.close(() => r())) };
}

test('the S3 backend stores uploads, serves ranges and thumbnails, and deletes, with signed requests', async () => {
  const s3 = await fakeS3('sekrit');
  const s = await startTestServer({
    config: {
      media: { backend: 's3', s3: { endpoint: s3.url, bucket: 'media', access_key_id: 'AKID', secret_access_key: 'sekrit', prefix: 'axon/', region: 'eu-west-1', path_style: true } },
    },
  });
  try {
    const u = await registerUser(s.baseUrl, 'alice');
    const h = { authorization: `Bearer ${u.accessToken}` };
    const body = Buffer.from(Array.from({ length: 10_000 }, (_, i) => i % 256));
    const up = await fetch(`${s.baseUrl}/_matrix/media/v3/upload?filename=data.bin`, { method: 'POST', headers: { ...h, 'content-type': 'application/octet-stream' }, body });
    assert.equal(up.status, 200);
    const id = ((await up.json()) as { content_uri: string }).content_uri.split('/').pop()!;
    const key = `/media/axon/local/${id.slice(0, 2)}/${id.slice(2, 4)}/${id}`;
    assert.deepEqual(s3.objects.get(key)?.body, body);
    const r = await fetch(`${s.baseUrl}/_matrix/client/v1/media/download/localhost/${id}`, { headers: h });
    assert.deepEqual(Buffer.from(await r.arrayBuffer()), body);
    const part = await fetch(`${s.baseUrl}/_matrix/client/v1/media/download/localhost/${id}`, { headers: { ...h, range: 'bytes=10-19' } });
    assert.equal(part.status, 206);
    assert.deepEqual(Buffer.from(await part.arrayBuffer()), body.subarray(10, 20));

    const png = await sharp({ create: { width: 120, height: 90, channels: 3, background: 'teal' } }).png().toBuffer();
    const up2 = await fetch(`${s.baseUrl}/_matrix/media/v3/upload`, { method: 'POST', headers: { ...h, 'content-type': 'image/png' }, body: png });
    const img = ((await up2.json()) as { content_uri: string }).content_uri.split('/').pop()!;
    const t = await fetch(`${s.baseUrl}/_matrix/client/v1/media/thumbnail/localhost/${img}?width=32&height=32&method=crop`, { headers: h });
    assert.equal(t.status, 200);
    const m = await sharp(Buffer.from(await t.arrayBuffer())).metadata();
    assert.deepEqual([m.width, m.height], [32, 32]);
    await s.hs.services.media.idle();
    assert.ok([...s3.objects.keys()].some((k) => k.startsWith('/media/axon/thumbnails/')));

    assert.equal(await s.hs.services.media.deleteMedia('localhost', img), true);
    assert.ok(![...s3.objects.keys()].some((k) => k.includes(img)), 'object and thumbnails removed');
    // A wrong secret is rejected by the store, and the upload fails cleanly (no row left behind).
    (s.hs.services.media.store as unknown as { opts: { secretAccessKey: string } }).opts.secretAccessKey = 'wrong';
    const bad = await fetch(`${s.baseUrl}/_matrix/media/v3/upload`, { method: 'POST', headers: h, body: 'x' });
    assert.equal(bad.status, 500);
    await bad.arrayBuffer();
  } finally {
    await s.stop();
    await s3.close();
  }
});
