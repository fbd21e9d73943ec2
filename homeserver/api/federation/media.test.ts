import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import type { Module } from '../../homeserver.ts';
import { startTestServer, type TestServer } from '../../testing.ts';
import { registerUser } from '../../testing-users.ts';
import { boundaryOf, parseMediaMultipart } from '../../services/media/multipart.ts';
import { HttpRemoteMediaFetcher } from '../../services/media/remote.ts';
import { IpPolicy } from '../../services/media/outbound.ts';
import { linkServers } from '../../testing-federation.ts';
import { getMedia, getThumbnails } from '../../storage/media.ts';
import { authorizationHeader } from '../../../federation/x-matrix.ts';
import { encodeBase64 } from '../../../spec/base64.ts';
import { generateSigningKey, signJson, type SigningKey } from '../../../spec/signing.ts';

/** Remote media through a stand-in federation client that sends requests to `resolve(server)`. */
function remoteFetcherModule(resolve: (name: string) => string, allowLoopbackLocations = true): Module {
  return {
    name: 'test-remote-media',
    init(hs) {
      hs.services.remoteMediaFetcher = new HttpRemoteMediaFetcher({
        federation: {
          async request(destination, uri, opts) {
            const url = resolve(destination) + uri;
            const headers: Record<string, string> = opts.signed === false ? {} : { authorization: 'X-Matrix origin="other.test",key="ed25519:t",sig="stub"' };
            return { response: await fetch(url, { headers, redirect: 'manual' }), url };
          },
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

/**
 * A stand-in remote server: publishes a signing key at /_matrix/key/v2/server under `name` and signs
 * requests with it, so the server under test can verify real X-Matrix headers.
 */
async function fakeOrigin(name: string) {
  const key = generateSigningKey('fake1');
  const srv = await fakeServer((req, res) => {
    if (req.url === '/_matrix/key/v2/server') {
      const body = signJson({ server_name: name, valid_until_ts: Date.now() + 3600_000, verify_keys: { [key.keyId]: { key: encodeBase64(key.publicKey) } }, old_verify_keys: {} }, name, key);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    } else res.writeHead(404, { 'content-type': 'application/json' }).end('{"errcode":"M_UNRECOGNIZED","error":"x"}');
  });
  return {
    ...srv,
    name,
    key,
    sign: (uri: string, destination: string, signer: SigningKey = key, origin = name) => authorizationHeader({ method: 'GET', uri, origin, destination }, signer),
  };
}

test('federation media endpoints require a valid X-Matrix signature (401 M_UNAUTHORIZED otherwise) and answer multipart/mixed', async () => {
  const s = await startTestServer({ serverName: 'media.test' });
  const origin = await fakeOrigin('other.test');
  s.hs.services.federation.overrides.set('other.test', origin.url);
  try {
    const alice = await registerUser(s.baseUrl, 'alice');
    const body = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 7) % 256));
    const id = await upload(s, alice.accessToken, body, 'application/pdf', 'paper.pdf');
    const uri = `/_matrix/federation/v1/media/download/${id}`;
    const get = (authorization?: string, path = uri) => fetch(s.baseUrl + path, { headers: authorization ? { authorization } : {} });
    const refused = async (authorization: string | undefined, why: string) => {
      const r = await get(authorization);
      assert.equal(r.status, 401, why);
      assert.equal(((await r.json()) as { errcode: string }).errcode, 'M_UNAUTHORIZED', why);
    };
    await refused(undefined, 'missing header');
    await refused(`Bearer ${alice.accessToken}`, 'a client access token');
    await refused('X-Matrix origin="other.test",key="ed25519:fake1"', 'no signature');
    await refused('X-Matrix origin="other.test",destination="media.test",key="ed25519:fake1",sig="AAAA"', 'garbage signature');
    await refused(origin.sign(uri, 'media.test', generateSigningKey('fake1')), 'signed by another key under the same id');
    await refused(origin.sign(`${uri}x`, 'media.test'), 'signature over another uri');
    await refused(origin.sign(uri, 'elsewhere.test'), 'wrong destination');
    await refused(origin.sign(uri, 'media.test', generateSigningKey('nokey')), 'a key id the origin does not publish');
    await refused(origin.sign(uri, 'media.test', origin.key, 'unreachable.test'), 'an origin whose keys cannot be fetched');
    await refused(origin.sign(uri, 'media.test', origin.key, 'media.test'), 'our own name as origin');

    const r = await get(origin.sign(uri, 'media.test'));
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
    // Servers older than Matrix 1.3 send no destination; the signature still covers ours.
    const legacy = origin.sign(uri, 'media.test').replace(/,destination="[^"]*"/, '');
    const old = await get(legacy);
    assert.equal(old.status, 200);
    await old.arrayBuffer();
    // The origin's keys were fetched once and cached.
    assert.equal(origin.hits.filter((h) => h === '/_matrix/key/v2/server').length, 1);

    const img = await upload(s, alice.accessToken, await sharp({ create: { width: 300, height: 200, channels: 3, background: 'blue' } }).png().toBuffer(), 'image/png');
    const turi = `/_matrix/federation/v1/media/thumbnail/${img}?width=96&height=96&method=crop`;
    assert.equal((await get(undefined, turi)).status, 401);
    const t = await get(origin.sign(turi, 'media.test'), turi);
    assert.equal(t.status, 200);
    const tp = await parseMediaMultipart(t.body as AsyncIterable<Uint8Array>, boundaryOf(t.headers.get('content-type'))!);
    assert.equal(tp.headers['content-type'], 'image/png');
    const tb: Buffer[] = [];
    for await (const c of tp.body) tb.push(c as Buffer);
    const m = await sharp(Buffer.concat(tb)).metadata();
    assert.deepEqual([m.width, m.height], [96, 96]);
    // Unknown media: 404; another server's media is never served from here.
    const nuri = '/_matrix/federation/v1/media/download/nothingHere';
    const nf = await get(origin.sign(nuri, 'media.test'), nuri);
    assert.equal(nf.status, 404);
    await nf.arrayBuffer();
  } finally {
    await s.stop();
    await origin.close();
  }
});

test('a user on a second server downloads and thumbnails remote media over signed federation; the copy is cached', async () => {
  const origin = await startTestServer({ serverName: 'origin.test' });
  const local = await startTestServer({ serverName: 'local.test' });
  try {
    linkServers(origin, local);
    const bob = await registerUser(origin.baseUrl, 'bob');
    const image = await sharp({ create: { width: 64, height: 48, channels: 3, background: 'green' } }).png().toBuffer();
    const id = await upload(origin, bob.accessToken, image, 'image/png', 'green.png');
    const big = await sharp({ create: { width: 1200, height: 900, channels: 3, background: 'red' } }).jpeg().toBuffer();
    const bigId = await upload(origin, bob.accessToken, big, 'image/jpeg', 'red.jpg');
    const alice = await registerUser(local.baseUrl, 'alice');
    const h = { authorization: `Bearer ${alice.accessToken}` };
    // A thumbnail of remote media not cached here comes from the origin's federation thumbnail
    // endpoint; only the thumbnail is cached (the row has no bytes of its own yet).
    const bt = await fetch(`${local.baseUrl}/_matrix/client/v1/media/thumbnail/origin.test/${bigId}?width=32&height=32&method=crop`, { headers: h });
    assert.equal(bt.status, 200);
    assert.equal(bt.headers.get('content-security-policy')?.startsWith('sandbox'), true);
    const btm = await sharp(Buffer.from(await bt.arrayBuffer())).metadata();
    assert.deepEqual([btm.width, btm.height], [32, 32]);
    const bigRow = await getMedia(local.hs.db, 'origin.test', bigId);
    assert.equal(bigRow?.storage_key, null);
    assert.equal((await getThumbnails(local.hs.db, 'origin.test', bigId)).length, 1);
    // Downloading it later caches the original in the same row.
    const bd = await fetch(`${local.baseUrl}/_matrix/client/v1/media/download/origin.test/${bigId}`, { headers: h });
    assert.ok(Buffer.from(await bd.arrayBuffer()).equals(big));
    assert.ok((await getMedia(local.hs.db, 'origin.test', bigId))?.storage_key);
    const r = await fetch(`${local.baseUrl}/_matrix/client/v1/media/download/origin.test/${id}`, { headers: h });
    assert.equal(r.status, 200);
    assert.deepEqual(Buffer.from(await r.arrayBuffer()), image);
    assert.equal(r.headers.get('content-type'), 'image/png');
    assert.equal(r.headers.get('content-disposition'), 'inline; filename="green.png"');
    const t = await fetch(`${local.baseUrl}/_matrix/client/v1/media/thumbnail/origin.test/${id}?width=32&height=32&method=crop`, { headers: h });
    assert.equal(t.status, 200);
    const m = await sharp(Buffer.from(await t.arrayBuffer())).metadata();
    assert.deepEqual([m.width, m.height], [32, 32]);
    // The origin verified local.test's signature with keys it fetched from local.test.
    assert.ok(origin.hs.services.federation.serverKeys.cached('local.test'));
    // Cached: served with the origin gone.
    await origin.stop();
    const again = await fetch(`${local.baseUrl}/_matrix/client/v1/media/download/origin.test/${id}`, { headers: h });
    assert.deepEqual(Buffer.from(await again.arrayBuffer()), image);
    // Unknown remote media (origin unreachable now): 502, and not cached.
    const gone = await fetch(`${local.baseUrl}/_matrix/client/v1/media/download/origin.test/other`, { headers: h });
    assert.equal(gone.status, 502);
    await gone.arrayBuffer();
    const bt2 = await fetch(`${local.baseUrl}/_matrix/client/v1/media/thumbnail/origin.test/${bigId}?width=32&height=32&method=crop`, { headers: h });
    assert.equal(bt2.status, 200);
    await bt2.arrayBuffer();
    // Purging the remote cache removes both.
    assert.equal(await local.hs.services.media.purgeRemoteCache(Date.now() + 1000), 2);
    assert.equal((await getThumbnails(local.hs.db, 'origin.test', bigId)).length, 0);
  } finally {
    await origin.stop().catch(() => {});
    await local.stop();
  }
});

test('outbound federation never reaches private addresses unless configured (server names are not an SSRF vector)', async () => {
  const s = await startTestServer();
  try {
    const alice = await registerUser(s.baseUrl, 'alice');
    const h = { authorization: `Bearer ${alice.accessToken}` };
    for (const name of ['127.0.0.1:6379', '[::1]:8448', '10.0.0.1', '169.254.169.254']) {
      const r = await fetch(`${s.baseUrl}/_matrix/client/v1/media/download/${name}/abcdef`, { headers: h });
      assert.equal(r.status, 502, name);
      const j = (await r.json()) as { errcode: string; error: string };
      assert.match(j.error, /not allowed/, name);
    }
  } finally {
    await s.stop();
  }
});

test('remote fetch falls back to the legacy endpoint with allow_remote=false on 404 M_UNRECOGNIZED', async () => {
  const oldThumb = await sharp({ create: { width: 32, height: 32, channels: 3, background: 'gray' } }).png().toBuffer();
  const fake = await fakeServer((req, res) => {
    const u = new URL(req.url!, 'http://x');
    if (u.pathname.startsWith('/_matrix/federation/')) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}');
    } else if (u.pathname === '/_matrix/media/v3/download/old.test/legacyMedia' && u.searchParams.get('allow_remote') === 'false') {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-disposition': 'attachment; filename="old.txt"' }).end('from an old server');
    } else if (u.pathname === '/_matrix/media/v3/thumbnail/old.test/legacyThumb' && u.searchParams.get('allow_remote') === 'false') {
      res.writeHead(200, { 'content-type': 'image/png' }).end(oldThumb);
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
    // Thumbnails of uncached media from an old server come from its legacy thumbnail endpoint.
    const th = await fetch(`${s.baseUrl}/_matrix/client/v1/media/thumbnail/old.test/legacyThumb?width=32&height=32`, { headers: h });
    assert.equal(th.status, 200);
    assert.deepEqual(Buffer.from(await th.arrayBuffer()), oldThumb);
    assert.equal(th.headers.get('content-type'), 'image/png');
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
