// Media journeys with matrix-js-sdk clients: an image sent as m.image with a thumbnail and fetched
// byte-identical by the other user (with a 32×32 server thumbnail that decodes), a 5 MB video and a
// 20 MB file (with a range request), and a client-side encrypted attachment that round-trips
// unchanged; and a user on a second server who downloads and thumbnails media uploaded on the first,
// the servers talking over X-Matrix-signed federation. Every JSON response is validated against the
// spec's OpenAPI definitions by the harness.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import sharp from 'sharp';
import { createClient, type MatrixClient, type MatrixEvent } from 'matrix-js-sdk';
import type { Logger } from 'matrix-js-sdk/lib/logger.js';
import { withHarness, type Harness } from './harness.ts';
import { registerWithDummy, startSyncing, waitUntil } from './journey-kit.ts';
import { startTestServer } from '../homeserver/testing.ts';
import { linkServers } from '../homeserver/testing-federation.ts';
import { boundaryOf, parseMediaMultipart } from '../homeserver/services/media/multipart.ts';
import { Readable } from 'node:stream';

async function startUser(h: Harness, username: string): Promise<MatrixClient> {
  const r = await registerWithDummy(h.newClient(), username);
  return startSyncing(h.newClient(r.userId, r.accessToken, r.deviceId));
}

async function sharedRoom(alice: MatrixClient, bob: MatrixClient): Promise<string> {
  const { room_id: roomId } = await alice.createRoom({ preset: 'public_chat' as never });
  await bob.joinRoom(roomId);
  await waitUntil('both joined', () => alice.getRoom(roomId)?.getJoinedMemberCount() === 2 && bob.getRoom(roomId)?.getMyMembership() === 'join');
  return roomId;
}

function receivedMessage(c: MatrixClient, roomId: string, msgtype: string): Promise<MatrixEvent> {
  return waitUntil(`${msgtype} in ${c.getUserId()}'s timeline`, () =>
    c.getRoom(roomId)?.getLiveTimeline().getEvents().find((e) => e.getType() === 'm.room.message' && e.getContent().msgtype === msgtype),
  );
}

/** Authenticated media download as a client does it: Bearer token, /_matrix/client/v1/media. */
async function download(h: Harness, c: MatrixClient, mxc: string, extra: { width?: number; height?: number; method?: string; headers?: Record<string, string> } = {}) {
  const url = c.mxcUrlToHttp(mxc, extra.width, extra.height, extra.method, false, true, true);
  assert.ok(url);
  assert.match(url, /\/_matrix\/client\/v1\/media\/(download|thumbnail)\//);
  return h.fetch(url, { headers: { authorization: `Bearer ${c.getAccessToken()}`, ...(extra.headers ?? {}) } });
}

test('a 64×48 PNG sent as m.image with a thumbnail: the other user downloads it byte-identical and gets a 32×32 thumbnail', { timeout: 120_000 }, async () => {
  await withHarness(async (h) => {
    const alice = await startUser(h, 'alice');
    const bob = await startUser(h, 'bob');
    const roomId = await sharedRoom(alice, bob);
    const png = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 10, g: 120, b: 200 } } }).png().toBuffer();
    const clientThumb = await sharp(png).resize(32, 24).png().toBuffer();
    const config = await alice.getMediaConfig(true);
    assert.equal(config['m.upload.size'], 50 * 1024 * 1024);
    const up = await alice.uploadContent(new Blob([png], { type: 'image/png' }), { name: 'blue.png', type: 'image/png' });
    const upThumb = await alice.uploadContent(new Blob([clientThumb], { type: 'image/png' }), { name: 'thumb.png', type: 'image/png' });
    await alice.sendMessage(roomId, {
      msgtype: 'm.image',
      body: 'blue.png',
      url: up.content_uri,
      info: { w: 64, h: 48, mimetype: 'image/png', size: png.length, thumbnail_url: upThumb.content_uri, thumbnail_info: { w: 32, h: 24, mimetype: 'image/png', size: clientThumb.length } },
    } as never);
    const ev = await receivedMessage(bob, roomId, 'm.image');
    const content = ev.getContent();
    const r = await download(h, bob, content.url as string);
    assert.equal(r.status, 200);
    assert.deepEqual(Buffer.from(await r.arrayBuffer()), png);
    assert.equal(r.headers.get('content-type'), 'image/png');
    assert.equal(r.headers.get('content-disposition'), 'inline; filename="blue.png"');
    const t = await download(h, bob, content.url as string, { width: 32, height: 32, method: 'crop' });
    assert.equal(t.status, 200);
    const meta = await sharp(Buffer.from(await t.arrayBuffer())).metadata();
    assert.deepEqual([meta.width, meta.height, meta.format], [32, 32, 'png']);
    const ct = await download(h, bob, (content.info as { thumbnail_url: string }).thumbnail_url);
    assert.deepEqual(Buffer.from(await ct.arrayBuffer()), clientThumb);
  });
});

test('a 5 MB video and a 20 MB file: uploaded, downloaded whole and by range', { timeout: 180_000 }, async () => {
  await withHarness(async (h) => {
    const alice = await startUser(h, 'alice');
    const bob = await startUser(h, 'bob');
    const roomId = await sharedRoom(alice, bob);
    // An MP4-shaped header, then noise (incompressible, like real video).
    const video = Buffer.concat([Buffer.from('000000186674797069736f6d0000020069736f6d69736f32', 'hex'), randomBytes(5 * 1024 * 1024)]);
    const file = randomBytes(20 * 1024 * 1024);
    const v = await alice.uploadContent(new Blob([video], { type: 'video/mp4' }), { name: 'clip.mp4', type: 'video/mp4' });
    const f = await alice.uploadContent(new Blob([file], { type: 'application/zip' }), { name: 'archive.zip', type: 'application/zip' });
    await alice.sendMessage(roomId, { msgtype: 'm.video', body: 'clip.mp4', url: v.content_uri, info: { mimetype: 'video/mp4', size: video.length } } as never);
    await alice.sendMessage(roomId, { msgtype: 'm.file', body: 'archive.zip', url: f.content_uri, info: { mimetype: 'application/zip', size: file.length } } as never);
    const vev = await receivedMessage(bob, roomId, 'm.video');
    const fev = await receivedMessage(bob, roomId, 'm.file');
    const rv = await download(h, bob, vev.getContent().url as string);
    assert.equal(rv.headers.get('content-disposition'), 'inline; filename="clip.mp4"');
    assert.ok(Buffer.from(await rv.arrayBuffer()).equals(video));
    const rf = await download(h, bob, fev.getContent().url as string);
    assert.equal(rf.headers.get('content-disposition'), 'attachment; filename="archive.zip"');
    assert.ok(Buffer.from(await rf.arrayBuffer()).equals(file));
    const part = await download(h, bob, fev.getContent().url as string, { headers: { range: 'bytes=10000000-10000999' } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get('content-range'), `bytes 10000000-10000999/${file.length}`);
    assert.ok(Buffer.from(await part.arrayBuffer()).equals(file.subarray(10_000_000, 10_001_000)));
    // Seeking in the video: the last megabyte.
    const tail = await download(h, bob, vev.getContent().url as string, { headers: { range: `bytes=${video.length - 1_000_000}-` } });
    assert.equal(tail.status, 206);
    assert.ok(Buffer.from(await tail.arrayBuffer()).equals(video.subarray(video.length - 1_000_000)));
  });
});

test('a client-side encrypted attachment round-trips unchanged and decrypts', { timeout: 120_000 }, async () => {
  await withHarness(async (h) => {
    const alice = await startUser(h, 'alice');
    const bob = await startUser(h, 'bob');
    const roomId = await sharedRoom(alice, bob);
    // client-server-api "Sending encrypted attachments": AES-CTR-256, JWK key, 128-bit IV (low 64 bits zero), SHA-256 of the ciphertext.
    const plaintext = Buffer.from('a confidential document '.repeat(4000));
    const key = randomBytes(32);
    const iv = Buffer.concat([randomBytes(8), Buffer.alloc(8)]);
    const cipher = createCipheriv('aes-256-ctr', key, iv);
    const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    const b64 = (b: Buffer) => b.toString('base64').replace(/=+$/, '');
    const up = await alice.uploadContent(new Blob([ciphertext], { type: 'application/octet-stream' }), { type: 'application/octet-stream', includeFilename: false });
    const fileInfo = {
      url: up.content_uri,
      key: { kty: 'oct', key_ops: ['encrypt', 'decrypt'], alg: 'A256CTR', k: key.toString('base64url'), ext: true },
      iv: b64(iv),
      hashes: { sha256: b64(createHash('sha256').update(ciphertext).digest()) },
      v: 'v2',
    };
    await alice.sendMessage(roomId, { msgtype: 'm.file', body: 'secret.txt', file: fileInfo, info: { mimetype: 'text/plain', size: plaintext.length } } as never);
    const ev = await receivedMessage(bob, roomId, 'm.file');
    const file = ev.getContent().file as typeof fileInfo;
    const r = await download(h, bob, file.url);
    const got = Buffer.from(await r.arrayBuffer());
    assert.ok(got.equals(ciphertext), 'ciphertext unchanged');
    assert.equal(b64(createHash('sha256').update(got).digest()), file.hashes.sha256);
    const decipher = createDecipheriv('aes-256-ctr', Buffer.from(file.key.k, 'base64url'), Buffer.from(file.iv, 'base64'));
    assert.ok(Buffer.concat([decipher.update(got), decipher.final()]).equals(plaintext));
  });
});

test('a remote user on a second server downloads and thumbnails the media over federation', { timeout: 120_000 }, async () => {
  const serverA = await startTestServer({ serverName: 'a.test' });
  try {
    await withHarness(
      async (h) => {
        // Server B is the harness's server; server A is a second Axon. Each reaches the other by name.
        assert.equal(h.serverName, 'b.test');
        linkServers(serverA, h.server);
        // Alice uploads on server A through matrix-js-sdk.
        const noop = () => {};
        const logger: Logger = { trace: noop, debug: noop, info: noop, warn: noop, error: noop, getChild: () => logger };
        const anonA = createClient({ baseUrl: serverA.baseUrl, fetchFn: h.fetch, logger });
        const reg = await registerWithDummy(anonA, 'alice');
        const alice = createClient({ baseUrl: serverA.baseUrl, fetchFn: h.fetch, logger, userId: reg.userId, accessToken: reg.accessToken, deviceId: reg.deviceId });
        const png = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 200, g: 40, b: 90 } } }).png().toBuffer();
        const up = await alice.uploadContent(new Blob([png], { type: 'image/png' }), { name: 'remote.png', type: 'image/png' });
        assert.match(up.content_uri, /^mxc:\/\/a\.test\//);
        // Bob, on server B, fetches it through B's authenticated media endpoints.
        const bob = await startUser(h, 'bob');
        // The thumbnail first: server B asks server A for it (signed); then the whole file.
        const t = await download(h, bob, up.content_uri, { width: 32, height: 32, method: 'crop' });
        assert.equal(t.status, 200);
        const meta = await sharp(Buffer.from(await t.arrayBuffer())).metadata();
        assert.deepEqual([meta.width, meta.height, meta.format], [32, 32, 'png']);
        const r = await download(h, bob, up.content_uri);
        assert.equal(r.status, 200);
        assert.deepEqual(Buffer.from(await r.arrayBuffer()), png);
        assert.equal(r.headers.get('content-type'), 'image/png');
        assert.equal(r.headers.get('content-disposition'), 'inline; filename="remote.png"');
        const scaled = await download(h, bob, up.content_uri, { width: 16, height: 16, method: 'scale' });
        assert.equal(scaled.status, 200);
        const sm = await sharp(Buffer.from(await scaled.arrayBuffer())).metadata();
        assert.ok(sm.width! <= 64 && sm.width! >= 16, `scaled thumbnail width ${sm.width}`);
        // Without a token, B's authenticated endpoint refuses; and A's federation endpoint refuses
        // anyone who does not sign as a server.
        const anonB = await h.fetch(bob.mxcUrlToHttp(up.content_uri, undefined, undefined, undefined, false, true, true)!);
        assert.equal(anonB.status, 401);
        await anonB.arrayBuffer();
        const mediaId = up.content_uri.split('/').pop()!;
        // Server B asks server A for a thumbnail directly over signed federation, as other servers may.
        const { response: ft } = await h.server.hs.services.federation.client.request('a.test', `/_matrix/federation/v1/media/thumbnail/${mediaId}?width=32&height=32&method=crop`, { timeoutMs: 30_000 });
        assert.equal(ft.status, 200);
        const part = await parseMediaMultipart(Readable.fromWeb(ft.body as import('node:stream/web').ReadableStream<Uint8Array>), boundaryOf(ft.headers.get('content-type'))!);
        const tchunks: Buffer[] = [];
        for await (const c of part.body) tchunks.push(c as Buffer);
        const fm = await sharp(Buffer.concat(tchunks)).metadata();
        assert.deepEqual([part.headers['content-type'], fm.width, fm.height], ['image/png', 32, 32]);
        const unsigned = await fetch(`${serverA.baseUrl}/_matrix/federation/v1/media/download/${mediaId}`);
        assert.equal(unsigned.status, 401);
        assert.equal(((await unsigned.json()) as { errcode: string }).errcode, 'M_UNAUTHORIZED');
      },
      { server: { serverName: 'b.test' } },
    );
  } finally {
    await serverA.stop();
  }
});
