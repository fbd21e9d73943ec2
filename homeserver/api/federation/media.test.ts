import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import type { Module } from '../../homeserver.ts';
import { MatrixError } from '../../errors.ts';
import { startTestServer, type TestServer } from '../../testing.ts';
import { registerUser } from '../../testing-users.ts';
import { boundaryOf, parseMediaMultipart } from '../../services/media/multipart.ts';
import { HttpRemoteMediaFetcher } from '../../services/media/remote.ts';
import { IpPolicy } from '../../services/media/outbound.ts';

/** Stands in for X-Matrix until the federation layer exists: accepts one fixed Authorization value. */
const stubFederationAuth: Module = {
  name: 'test-federation-auth',
  init(hs) {
    hs.services.federationRequestAuth = {
      async authenticate(ctx) {
        if (ctx.get('authorization') !== 'X-Matrix origin="other.test",key="ed25519:t",sig="stub"') throw new MatrixError(401, 'M_UNAUTHORIZED', 'bad signature');
        return 'other.test';
      },
    };
  },
};

function remoteFetcherModule(resolve: (name: string) => string, allowLoopbackLocations = true): Module {
  return {
    name: 'test-remote-media',
    init(hs) {
      hs.services.remoteMediaFetcher = new HttpRemoteMediaFetcher({
        hooks: {
          resolveServer: async (name) => resolve(name),
          authorize: async () => 'X-Matrix origin="other.test",key="ed25519:t",sig="stub"',
        },
        locationPolicy: new IpPolicy([], allowLoopbackLocations ? ['127.0.0.1/32'] : []),
        userAgent: 'axon-test',
      });
    },
  };
}

async function upload(s: TestServer, token: string, body: Buffer, type: string, filename?: string): Promise<string> {
  const r = await fetch(`${s.baseUrl}/_matrix/media/v3/upload${filename ? `?filename=${filename}` : ''}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': type }, body });
  assert.equal(r.status, 200);
  return ((await r.json()) as { content_uri: string }).content_uri.split('/').pop()!;
}

async function fakeServer(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string; close: () => Promise<void>; hits: string[] }> {
  const hits: string[] = [];
  const srv = createServer((req, res) => {
    hits.push(req.url ?? '');
    handler(req, res);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
  return { url, hits, close: () => new Promise((r) => srv.close(() => r())) };
}

test('federation download/thumbnail: 401 without request authentication, multipart/mixed with it', async () => {
  const bare = await startTestServer();
  try {
    const r = await fetch(`${bare.baseUrl}/_matrix/federation/v1/media/download/abc`);
    assert.equal(r.status, 401);
    await r.arrayBuffer();
  } finally {
    await bare.stop();
  }
  const s = await startTestServer({ extraModules: [stubFederationAuth] });
  try {
    const alice = await registerUser(s.baseUrl, 'alice');
    const body = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 7) % 256));
    const id = await upload(s, alice.accessToken, body, 'application/pdf', 'paper.pdf');
    const auth = { authorization: 'X-Matrix origin="other.test",key="ed25519:t",sig="stub"' };
    const unauth = await fetch(`${s.baseUrl}/_matrix/federation/v1/media/download/${id}`, { headers: { authorization: 'X-Matrix forged' } });
    assert.equal(unauth.status, 401);
    await unauth.arrayBuffer();
    const r = await fetch(`${s.baseUrl}/_matrix/federation/v1/media/download/${id}`, { headers: auth });
    assert.equal(r.status, 200);
    const boundary = boundaryOf(r.headers.get('content-type'));
    assert.ok(boundary);
    const part = await parseMediaMultipart(r.body as AsyncIterable<Uint8Array>, boundary);
    assert.deepEqual(part.metadata, {});
    assert.equal(part.headers['content-type'], 'application/pdf');
    assert.equal(part.headers['content-disposition'], 'attachment; filename="paper.pdf"');
    const chunks: Buffer[] = [];
    for await (const c of part.body) chunks.push(c as Buffer);
    assert.deepEqual(Buffer.concat(chunks), body);

    const img = await upload(s, alice.accessToken, await sharp({ create: { width: 300, height: 200, channels: 3, background: 'blue' } }).png().toBuffer(), 'image/png');
    const t = await fetch(`${s.baseUrl}/_matrix/federation/v1/media/thumbnail/${img}?width=96&height=96&method=crop`, { headers: auth });
    assert.equal(t.status, 200);
    const tp = await parseMediaMultipart(t.body as AsyncIterable<Uint8Array>, boundaryOf(t.headers.get('content-type'))!);
    assert.equal(tp.headers['content-type'], 'image/png');
    const tb: Buffer[] = [];
    for await (const c of tp.body) tb.push(c as Buffer);
    const m = await sharp(Buffer.concat(tb)).metadata();
    assert.deepEqual([m.width, m.height], [96, 96]);
    // Unknown media: 404; another server's media is never served from here.
    const nf = await fetch(`${s.baseUrl}/_matrix/federation/v1/media/download/nothingHere`, { headers: auth });
    assert.equal(nf.status, 404);
    await nf.arrayBuffer();
  } finally {
    await s.stop();
  }
});

test('a user on a second server downloads and thumbnails remote media over federation; the copy is cached', async () => {
  const origin = await startTestServer({ serverName: 'origin.test', extraModules: [stubFederationAuth] });
  let local: TestServer | null = null;
  try {
    const bob = await registerUser(origin.baseUrl, 'bob');
    const image = await sharp({ create: { width: 64, height: 48, channels: 3, background: 'green' } }).png().toBuffer();
    const id = await upload(origin, bob.accessToken, image, 'image/png', 'green.png');
    local = await startTestServer({ extraModules: [remoteFetcherModule(() => origin.baseUrl)] });
    const alice = await registerUser(local.baseUrl, 'alice');
    const h = { authorization: `Bearer ${alice.accessToken}` };
    const r = await fetch(`${local.baseUrl}/_matrix/client/v1/media/download/origin.test/${id}`, { headers: h });
    assert.equal(r.status, 200);
    assert.deepEqual(Buffer.from(await r.arrayBuffer()), image);
    assert.equal(r.headers.get('content-type'), 'image/png');
    assert.equal(r.headers.get('content-disposition'), 'inline; filename="green.png"');
    const t = await fetch(`${local.baseUrl}/_matrix/client/v1/media/thumbnail/origin.test/${id}?width=32&height=32&method=crop`, { headers: h });
    assert.equal(t.status, 200);
    const m = await sharp(Buffer.from(await t.arrayBuffer())).metadata();
    assert.deepEqual([m.width, m.height], [32, 32]);
    // Cached: served with the origin gone.
    await origin.stop();
    const again = await fetch(`${local.baseUrl}/_matrix/client/v1/media/download/origin.test/${id}`, { headers: h });
    assert.deepEqual(Buffer.from(await again.arrayBuffer()), image);
    // Unknown remote media (origin unreachable now): 502, and not cached.
    const gone = await fetch(`${local.baseUrl}/_matrix/client/v1/media/download/origin.test/other`, { headers: h });
    assert.equal(gone.status, 502);
    await gone.arrayBuffer();
    // Purging the remote cache removes it.
    assert.equal(await local.hs.services.media.purgeRemoteCache(Date.now() + 1000), 1);
  } finally {
    await origin.stop().catch(() => {});
    await local?.stop();
  }
});

test('remote fetch falls back to the legacy endpoint with allow_remote=false on 404 M_UNRECOGNIZED', async () => {
  const fake = await fakeServer((req, res) => {
    const u = new URL(req.url!, 'http://x');
    if (u.pathname.startsWith('/_matrix/federation/')) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}');
    } else if (u.pathname === '/_matrix/media/v3/download/old.test/legacyMedia' && u.searchParams.get('allow_remote') === 'false') {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-disposition': 'attachment; filename="old.txt"' }).end('from an old server');
    } else if (u.pathname === '/_matrix/media/v3/download/old.test/missing') {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"errcode":"M_NOT_FOUND","error":"nope"}');
    } else res.writeHead(500).end();
  });
  const s = await startTestServer({ extraModules: [remoteFetcherModule(() => fake.url)] });
  try {
    const alice = await registerUser(s.baseUrl, 'alice');
    const h = { authorization: `Bearer ${alice.accessToken}` };
    const r = await fetch(`${s.baseUrl}/_matrix/client/v1/media/download/old.test/legacyMedia`, { headers: h });
    assert.equal(r.status, 200);
    assert.equal(await r.text(), 'from an old server');
    assert.equal(r.headers.get('content-disposition'), 'inline; filename="old.txt"');
    assert.deepEqual(
      fake.hits.map((x) => x.split('?')[0]),
      ['/_matrix/federation/v1/media/download/legacyMedia', '/_matrix/media/v3/download/old.test/legacyMedia'],
    );
    const nf = await fetch(`${s.baseUrl}/_matrix/client/v1/media/download/old.test/missing`, { headers: h });
    assert.equal(nf.status, 404);
    assert.equal(((await nf.json()) as { errcode: string }).errcode, 'M_NOT_FOUND');
  } finally {
    await s.stop();
    await fake.close();
  }
});

test('multipart with a Location part is followed (address-checked); oversized remote media is 502 M_TOO_LARGE', async () => {
  const fake = await fakeServer((req, res) => {
    const u = new URL(req.url!, 'http://x');
    const boundary = 'b0undary';
    if (u.pathname === '/_matrix/federation/v1/media/download/viaLocation') {
      const port = (req.socket.localPort ?? 0).toString();
      res.writeHead(200, { 'content-type': `multipart/mixed; boundary=${boundary}` });
      res.end(`--${boundary}\r\nContent-Type: application/json\r\n\r\n{}\r\n--${boundary}\r\nLocation: http://127.0.0.1:${port}/cdn/file\r\n\r\n\r\n--${boundary}--\r\n`);
    } else if (u.pathname === '/cdn/file') {
      res.writeHead(200, { 'content-type': 'audio/ogg', 'content-disposition': 'inline; filename="song.ogg"' }).end('OggS fake audio');
    } else if (u.pathname === '/_matrix/federation/v1/media/download/huge') {
      res.writeHead(200, { 'content-type': `multipart/mixed; boundary=${boundary}` });
      res.write(`--${boundary}\r\nContent-Type: application/json\r\n\r\n{}\r\n--${boundary}\r\nContent-Type: application/octet-stream\r\n\r\n`);
      res.write(Buffer.alloc(300_000));
      res.end(`\r\n--${boundary}--\r\n`);
    } else res.writeHead(404, { 'content-type': 'application/json' }).end('{"errcode":"M_NOT_FOUND","error":"x"}');
  });
  const s = await startTestServer({ extraModules: [remoteFetcherModule(() => fake.url)], config: { media: { remote_max_bytes: 100_000 } } });
  const strict = await startTestServer({ extraModules: [remoteFetcherModule(() => fake.url, false)] });
  try {
    const alice = await registerUser(s.baseUrl, 'alice');
    const h = { authorization: `Bearer ${alice.accessToken}` };
    const r = await fetch(`${s.baseUrl}/_matrix/client/v1/media/download/cdn.test/viaLocation`, { headers: h });
    assert.equal(r.status, 200);
    assert.equal(await r.text(), 'OggS fake audio');
    assert.equal(r.headers.get('content-type'), 'audio/ogg');
    const big = await fetch(`${s.baseUrl}/_matrix/client/v1/media/download/cdn.test/huge`, { headers: h });
    assert.equal(big.status, 502);
    assert.equal(((await big.json()) as { errcode: string }).errcode, 'M_TOO_LARGE');
    // With the default address policy a Location on a loopback address is refused.
    const carol = await registerUser(strict.baseUrl, 'carol');
    const refused = await fetch(`${strict.baseUrl}/_matrix/client/v1/media/download/cdn.test/viaLocation`, { headers: { authorization: `Bearer ${carol.accessToken}` } });
    assert.equal(refused.status, 502);
    await refused.arrayBuffer();
    assert.equal(fake.hits.filter((x) => x === '/cdn/file').length, 1, 'the refused Location was never contacted');
  } finally {
    await s.stop();
    await strict.stop();
    await fake.close();
  }
});
