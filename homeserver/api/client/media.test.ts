import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { startTestServer, type TestServer } from '../../testing.ts';
import { registerUser } from '../../testing-users.ts';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function upload(base: string, token: string, body: Buffer, opts: { type?: string; filename?: string } = {}) {
  const q = opts.filename !== undefined ? `?filename=${encodeURIComponent(opts.filename)}` : '';
  return fetch(`${base}/_matrix/media/v3/upload${q}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, ...(opts.type ? { 'content-type': opts.type } : {}) },
    body,
  });
}

async function uploadOk(base: string, token: string, body: Buffer, opts: { type?: string; filename?: string } = {}): Promise<string> {
  const r = await upload(base, token, body, opts);
  const j = (await r.json()) as { content_uri: string };
  assert.equal(r.status, 200, JSON.stringify(j));
  assert.match(j.content_uri, /^mxc:\/\/localhost\/[A-Za-z0-9_-]+$/);
  return j.content_uri.split('/').pop()!;
}

function get(base: string, path: string, token?: string, headers: Record<string, string> = {}) {
  return fetch(`${base}${path}`, { headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers } });
}

async function withServer(config: Record<string, unknown>, fn: (s: TestServer, token: string) => Promise<void>, now?: () => number) {
  const s = await startTestServer({ config, ...(now ? { now } : {}) });
  try {
    const u = await registerUser(s.baseUrl, 'alice');
    await fn(s, u.accessToken);
  } finally {
    await s.stop();
  }
}

test('upload, then download byte-identical with the safe headers, the filename and the recorded type', async () => {
  await withServer({}, async (s, token) => {
    const body = Buffer.from('hello, media repository\n'.repeat(1000));
    const id = await uploadOk(s.baseUrl, token, body, { type: 'text/plain', filename: 'notes "v1".txt' });
    const r = await get(s.baseUrl, `/_matrix/client/v1/media/download/localhost/${id}`, token);
    assert.equal(r.status, 200);
    assert.deepEqual(Buffer.from(await r.arrayBuffer()), body);
    assert.equal(r.headers.get('content-type'), 'text/plain');
    assert.equal(r.headers.get('content-disposition'), 'inline; filename="notes \\"v1\\".txt"');
    assert.match(r.headers.get('content-security-policy') ?? '', /^sandbox;/);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(r.headers.get('cross-origin-resource-policy'), 'cross-origin');
    assert.equal(r.headers.get('etag'), `"${sha(body)}"`);
    assert.match(r.headers.get('cache-control') ?? '', /max-age=31536000/);
    assert.equal(r.headers.get('content-length'), String(body.length));
    // A file name in the path overrides the stored one; non-ASCII goes into filename*.
    const r2 = await get(s.baseUrl, `/_matrix/client/v1/media/download/localhost/${id}/r%C3%A9sum%C3%A9.txt`, token);
    assert.equal(r2.headers.get('content-disposition'), "inline; filename*=utf-8''r%C3%A9sum%C3%A9.txt");
    await r2.arrayBuffer();
    // No content type given: application/octet-stream, served as an attachment.
    const id2 = await uploadOk(s.baseUrl, token, Buffer.from([1, 2, 3]));
    const r3 = await get(s.baseUrl, `/_matrix/client/v1/media/download/localhost/${id2}`, token);
    assert.equal(r3.headers.get('content-type'), 'application/octet-stream');
    assert.equal(r3.headers.get('content-disposition'), 'attachment');
    await r3.arrayBuffer();
    // If-None-Match → 304.
    const r4 = await get(s.baseUrl, `/_matrix/client/v1/media/download/localhost/${id}`, token, { 'if-none-match': `"${sha(body)}"` });
    assert.equal(r4.status, 304);
    // The file sits under the data dir's media directory, named by its id.
    const path = join(s.dataDir, 'media', 'local', id.slice(0, 2), id.slice(2, 4), id);
    assert.ok(existsSync(path));
  });
});

test('an HTML file uploaded as text/html is served as an attachment with the sandbox CSP', async () => {
  await withServer({}, async (s, token) => {
    const html = Buffer.from('<!doctype html><script>alert(document.cookie)</script>');
    const id = await uploadOk(s.baseUrl, token, html, { type: 'text/html', filename: 'x.html' });
    const r = await get(s.baseUrl, `/_matrix/client/v1/media/download/localhost/${id}`, token);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-disposition'), 'attachment; filename="x.html"');
    assert.match(r.headers.get('content-security-policy') ?? '', /sandbox/);
    assert.match(r.headers.get('content-security-policy') ?? '', /script-src 'none'/);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
    assert.deepEqual(Buffer.from(await r.arrayBuffer()), html);
    // A header-injection attempt in the content type is not stored as given.
    const r2 = await fetch(`${s.baseUrl}/_matrix/media/v3/upload`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'text/html; x="a\tb"' }, body: 'x' });
    const id2 = ((await r2.json()) as { content_uri: string }).content_uri.split('/').pop()!;
    const r3 = await get(s.baseUrl, `/_matrix/client/v1/media/download/localhost/${id2}`, token);
    assert.equal(r3.headers.get('content-type'), 'application/octet-stream');
    await r3.arrayBuffer();
  });
});

test('unauthenticated downloads are refused on the authenticated endpoints', async () => {
  await withServer({}, async (s, token) => {
    const id = await uploadOk(s.baseUrl, token, Buffer.from('secret'));
    for (const path of [`/_matrix/client/v1/media/download/localhost/${id}`, `/_matrix/client/v1/media/thumbnail/localhost/${id}?width=32&height=32`, '/_matrix/client/v1/media/config']) {
      const r = await get(s.baseUrl, path);
      assert.equal(r.status, 401, path);
      assert.equal(((await r.json()) as { errcode: string }).errcode, 'M_MISSING_TOKEN');
    }
    const bad = await get(s.baseUrl, `/_matrix/client/v1/media/download/localhost/${id}`, 'not-a-token');
    assert.equal(bad.status, 401);
    const up = await fetch(`${s.baseUrl}/_matrix/media/v3/upload`, { method: 'POST', body: 'x' });
    assert.equal(up.status, 401);
  });
});

test('path-traversal media ids and server names are refused, never read', async () => {
  await withServer({}, async (s, token) => {
    await uploadOk(s.baseUrl, token, Buffer.from('x'));
    const attempts = [
      '/_matrix/client/v1/media/download/localhost/..%2F..%2F..%2Fetc%2Fpasswd',
      '/_matrix/client/v1/media/download/localhost/%2e%2e',
      '/_matrix/client/v1/media/download/localhost/abc.def',
      '/_matrix/client/v1/media/download/..%2F..%2Fetc/passwd',
      '/_matrix/client/v1/media/download/localhost%2F..%2F../abc',
      '/_matrix/client/v1/media/thumbnail/localhost/..%2Fsigning.key?width=32&height=32',
    ];
    for (const a of attempts) {
      const r = await get(s.baseUrl, a, token);
      assert.ok(r.status === 400 || r.status === 404, `${a}: ${r.status}`);
      const text = await r.text();
      assert.match(text, /"errcode":"M_(INVALID_PARAM|NOT_FOUND|UNRECOGNIZED)"/, a);
    }
    const put = await fetch(`${s.baseUrl}/_matrix/media/v3/upload/localhost/..%2F..%2Fescape`, { method: 'PUT', headers: { authorization: `Bearer ${token}` }, body: 'x' });
    assert.equal(put.status, 404);
    assert.ok(!existsSync(join(s.dataDir, 'escape')));
  });
});

test('uploads over max_upload_bytes get 413 M_TOO_LARGE, declared or streamed, and leave nothing behind', async () => {
  await withServer({ media: { max_upload_bytes: 100_000 } }, async (s, token) => {
    const r = await upload(s.baseUrl, token, Buffer.alloc(150_000, 1));
    assert.equal(r.status, 413);
    assert.equal(((await r.json()) as { errcode: string }).errcode, 'M_TOO_LARGE');
    // Chunked (no Content-Length): the byte counter stops it.
    const chunks = Array.from({ length: 15 }, () => new Uint8Array(10_000));
    const stream = new ReadableStream<Uint8Array>({
      pull(c) {
        const next = chunks.shift();
        if (next) c.enqueue(next);
        else c.close();
      },
    });
    const r2 = await fetch(`${s.baseUrl}/_matrix/media/v3/upload`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: stream, duplex: 'half' } as RequestInit);
    assert.equal(r2.status, 413);
    assert.equal(((await r2.json()) as { errcode: string }).errcode, 'M_TOO_LARGE');
    const staging = join(s.dataDir, 'media', '.staging');
    assert.deepEqual(readdirSync(staging), []);
    // Exactly at the limit is fine.
    await uploadOk(s.baseUrl, token, Buffer.alloc(100_000, 2));
    const cfg = await get(s.baseUrl, '/_matrix/client/v1/media/config', token);
    assert.deepEqual(await cfg.json(), { 'm.upload.size': 100_000 });
  });
});

test('per-user quotas: bytes and files, 403 M_FORBIDDEN', async () => {
  await withServer({ media: { user_quota_bytes: 1000, user_quota_files: 3 } }, async (s, token) => {
    await uploadOk(s.baseUrl, token, Buffer.alloc(600));
    const r = await upload(s.baseUrl, token, Buffer.alloc(500));
    assert.equal(r.status, 403);
    assert.equal(((await r.json()) as { errcode: string }).errcode, 'M_FORBIDDEN');
    await uploadOk(s.baseUrl, token, Buffer.alloc(300));
    await uploadOk(s.baseUrl, token, Buffer.alloc(10));
    const r2 = await upload(s.baseUrl, token, Buffer.alloc(1));
    assert.equal(r2.status, 403);
    await r2.arrayBuffer();
    // Another user has their own quota.
    const bob = await registerUser(s.baseUrl, 'bob');
    await uploadOk(s.baseUrl, bob.accessToken, Buffer.alloc(900));
  });
});

test('upload rate limit: 429 M_LIMIT_EXCEEDED beyond the burst', async () => {
  await withServer({ rate_limits: { enabled: true, media_upload: { per_second: 0, burst: 2 }, registration: { per_second: 1, burst: 100 } } }, async (s, token) => {
    await uploadOk(s.baseUrl, token, Buffer.from('a'));
    await uploadOk(s.baseUrl, token, Buffer.from('b'));
    const r = await upload(s.baseUrl, token, Buffer.from('c'));
    assert.equal(r.status, 429);
    assert.equal(((await r.json()) as { errcode: string }).errcode, 'M_LIMIT_EXCEEDED');
  });
});

test('create + PUT: pending ids, owner only, no overwrite, expiry, pending limit, downloads wait', async () => {
  let now = 1_700_000_000_000;
  await withServer(
    { media: { max_pending_uploads: 2, unused_id_lifetime_ms: 60_000 } },
    async (s, token) => {
      const create = async (t = token) => fetch(`${s.baseUrl}/_matrix/media/v1/create`, { method: 'POST', headers: { authorization: `Bearer ${t}` } });
      const put = (id: string, body: string, t = token) =>
        fetch(`${s.baseUrl}/_matrix/media/v3/upload/localhost/${id}?filename=a.txt`, { method: 'PUT', headers: { authorization: `Bearer ${t}`, 'content-type': 'text/plain' }, body });
      const c1 = await create();
      const j1 = (await c1.json()) as { content_uri: string; unused_expires_at: number };
      assert.equal(c1.status, 200);
      assert.equal(j1.unused_expires_at, now + 60_000);
      const id1 = j1.content_uri.split('/').pop()!;
      // Pending: a download with a short timeout gets 504 M_NOT_YET_UPLOADED.
      const early = await get(s.baseUrl, `/_matrix/client/v1/media/download/localhost/${id1}?timeout_ms=50`, token);
      assert.equal(early.status, 504);
      assert.equal(((await early.json()) as { errcode: string }).errcode, 'M_NOT_YET_UPLOADED');
      // A download waiting when the upload arrives gets the content.
      const waiting = get(s.baseUrl, `/_matrix/client/v1/media/download/localhost/${id1}?timeout_ms=20000`, token);
      const bob = await registerUser(s.baseUrl, 'bob');
      const other = await put(id1, 'bob was here', bob.accessToken);
      assert.equal(other.status, 403);
      assert.equal(((await other.json()) as { errcode: string }).errcode, 'M_FORBIDDEN');
      const ok = await put(id1, 'first');
      assert.equal(ok.status, 200);
      assert.deepEqual(await ok.json(), {});
      const w = await waiting;
      assert.equal(w.status, 200);
      assert.equal(await w.text(), 'first');
      assert.equal(w.headers.get('content-disposition'), 'inline; filename="a.txt"');
      const again = await put(id1, 'second');
      assert.equal(again.status, 409);
      assert.equal(((await again.json()) as { errcode: string }).errcode, 'M_CANNOT_OVERWRITE_MEDIA');
      const unknown = await put('NoSuchId', 'x');
      assert.equal(unknown.status, 404);
      await unknown.arrayBuffer();
      // Two pending at most.
      const id2 = ((await (await create()).json()) as { content_uri: string }).content_uri.split('/').pop()!;
      await (await create()).arrayBuffer();
      const third = await create();
      assert.equal(third.status, 429);
      assert.equal(((await third.json()) as { errcode: string }).errcode, 'M_LIMIT_EXCEEDED');
      // Expired ids cannot be uploaded to, and stop counting as pending.
      now += 61_000;
      const late = await put(id2, 'late');
      assert.equal(late.status, 404);
      await late.arrayBuffer();
      const fresh = await create();
      assert.equal(fresh.status, 200);
      await fresh.arrayBuffer();
      assert.equal(await s.hs.services.media.expirePending(), 2);
    },
    () => now,
  );
});

test('range requests: 206 with Content-Range, suffix ranges, 416 when unsatisfiable, If-Range', async () => {
  await withServer({}, async (s, token) => {
    const body = Buffer.from(Array.from({ length: 5000 }, (_, i) => i % 251));
    const id = await uploadOk(s.baseUrl, token, body, { type: 'video/mp4' });
    const path = `/_matrix/client/v1/media/download/localhost/${id}`;
    const r = await get(s.baseUrl, path, token, { range: 'bytes=100-199' });
    assert.equal(r.status, 206);
    assert.equal(r.headers.get('content-range'), 'bytes 100-199/5000');
    assert.equal(r.headers.get('accept-ranges'), 'bytes');
    assert.deepEqual(Buffer.from(await r.arrayBuffer()), body.subarray(100, 200));
    const suffix = await get(s.baseUrl, path, token, { range: 'bytes=-10' });
    assert.equal(suffix.status, 206);
    assert.deepEqual(Buffer.from(await suffix.arrayBuffer()), body.subarray(4990));
    const open = await get(s.baseUrl, path, token, { range: 'bytes=4990-' });
    assert.deepEqual(Buffer.from(await open.arrayBuffer()), body.subarray(4990));
    const beyond = await get(s.baseUrl, path, token, { range: 'bytes=6000-7000' });
    assert.equal(beyond.status, 416);
    assert.equal(beyond.headers.get('content-range'), 'bytes */5000');
    await beyond.arrayBuffer();
    const stale = await get(s.baseUrl, path, token, { range: 'bytes=0-9', 'if-range': '"other"' });
    assert.equal(stale.status, 200);
    assert.equal((await stale.arrayBuffer()).byteLength, 5000);
  });
});

test('the deprecated unauthenticated downloads are frozen unless switched on', async () => {
  await withServer({}, async (s, token) => {
    const id = await uploadOk(s.baseUrl, token, Buffer.from('frozen'));
    const r = await get(s.baseUrl, `/_matrix/media/v3/download/localhost/${id}`);
    assert.equal(r.status, 404);
    assert.equal(((await r.json()) as { errcode: string }).errcode, 'M_NOT_FOUND');
  });
  await withServer({ media: { legacy_freeze_ts: 4_000_000_000_000 } }, async (s, token) => {
    const id = await uploadOk(s.baseUrl, token, Buffer.from('before the freeze'), { filename: 'f.txt' });
    const r = await get(s.baseUrl, `/_matrix/media/v3/download/localhost/${id}`);
    assert.equal(r.status, 200);
    assert.equal(await r.text(), 'before the freeze');
    assert.match(r.headers.get('content-security-policy') ?? '', /sandbox/);
  });
  await withServer({ media: { legacy_unauthenticated_downloads: true } }, async (s, token) => {
    const id = await uploadOk(s.baseUrl, token, Buffer.from('open'));
    const r = await get(s.baseUrl, `/_matrix/media/v3/download/localhost/${id}/x.bin`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-disposition'), 'attachment; filename="x.bin"');
    assert.equal(await r.text(), 'open');
  });
});

test('unknown media: 404 M_NOT_FOUND; media on an unreachable server: 502', async () => {
  await withServer({}, async (s, token) => {
    const r = await get(s.baseUrl, '/_matrix/client/v1/media/download/localhost/doesNotExist', token);
    assert.equal(r.status, 404);
    assert.equal(((await r.json()) as { errcode: string }).errcode, 'M_NOT_FOUND');
    const remote = await get(s.baseUrl, '/_matrix/client/v1/media/download/elsewhere.example/abc', token);
    assert.equal(remote.status, 502);
    await remote.arrayBuffer();
  });
});
