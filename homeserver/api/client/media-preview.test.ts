import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import { startTestServer, type TestServer } from '../../testing.ts';
import { registerUser } from '../../testing-users.ts';
import { IpPolicy } from '../../services/media/outbound.ts';
import { extractOpenGraph } from '../../services/media/html-meta.ts';

async function site(handler: (req: IncomingMessage, res: ServerResponse, base: string) => void) {
  const hits: string[] = [];
  let base = '';
  const srv = createServer((req, res) => {
    hits.push(req.url ?? '');
    handler(req, res, base);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
  return { base, port, hits, close: () => new Promise<void>((r) => srv.close(() => r())) };
}

async function withServer(config: Record<string, unknown>, fn: (s: TestServer, preview: (url: string) => Promise<Response>) => Promise<void>) {
  const s = await startTestServer({ config });
  try {
    const u = await registerUser(s.baseUrl, 'alice');
    await fn(s, (url) => fetch(`${s.baseUrl}/_matrix/client/v1/media/preview_url?url=${encodeURIComponent(url)}`, { headers: { authorization: `Bearer ${u.accessToken}` } }));
  } finally {
    await s.stop();
  }
}

const allowLoopback = { media: { url_previews: { allowed_ip_ranges: ['127.0.0.1/32'] } } };

test('preview: OpenGraph data, the image stored as mxc media, cached in the database', async () => {
  const logo = await sharp({ create: { width: 48, height: 48, channels: 3, background: 'orange' } }).png().toBuffer();
  const web = await site((req, res) => {
    if (req.url === '/post') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(`<!doctype html><html><head><title>Ignored title</title>
        <meta property="og:title" content="Matrix &amp; friends">
        <meta property="og:description" content="A really cool blog post">
        <meta property="og:image" content="/logo.png">
        <script>var s = '<meta property="og:title" content="evil">';</script>
        </head><body>hello</body></html>`);
    } else if (req.url === '/plain') {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html><head><title>  Just a\n title </title><meta name="description" content="desc"></head></html>');
    } else if (req.url === '/logo.png') {
      res.writeHead(200, { 'content-type': 'image/png' }).end(logo);
    } else res.writeHead(404).end();
  });
  try {
    await withServer(allowLoopback, async (s, preview) => {
      const r = await preview(`${web.base}/post`);
      const og = (await r.json()) as Record<string, unknown>;
      assert.equal(r.status, 200, JSON.stringify(og));
      assert.equal(og['og:title'], 'Matrix & friends');
      assert.equal(og['og:description'], 'A really cool blog post');
      assert.match(String(og['og:image']), /^mxc:\/\/localhost\/[A-Za-z0-9]+$/);
      assert.equal(og['matrix:image:size'], logo.length);
      assert.equal(og['og:image:width'], 48);
      assert.equal(og['og:image:type'], 'image/png');
      const mediaId = String(og['og:image']).split('/').pop();
      const row = await s.hs.db.selectFrom('media').selectAll().where('media_id', '=', mediaId!).executeTakeFirstOrThrow();
      assert.equal(row.size, logo.length);
      // Cached: a second preview does not fetch again.
      const before = web.hits.length;
      const again = await preview(`${web.base}/post`);
      assert.deepEqual(await again.json(), og);
      assert.equal(web.hits.length, before);
      const plain = await preview(`${web.base}/plain`);
      assert.deepEqual(await plain.json(), { 'og:title': 'Just a title', 'og:description': 'desc' });
    });
  } finally {
    await web.close();
  }
});

test('previews of private, loopback and link-local addresses are refused with the default config, before any connection', async () => {
  const web = await site((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<title>internal</title>'));
  try {
    await withServer({}, async (_s, preview) => {
      for (const url of [
        `${web.base}/`,
        `http://localhost:${web.port}/`,
        `http://[::1]:${web.port}/`,
        `http://[::ffff:127.0.0.1]:${web.port}/`,
        `http://0x7f000001:${web.port}/`,
        `http://2130706433:${web.port}/`,
        'http://169.254.169.254/latest/meta-data/',
        'http://10.0.0.1/',
        'http://192.168.1.1/',
        'http://[fe80::1]/',
        'http://[fd00::1]/',
        'http://0.0.0.0/',
      ]) {
        const r = await preview(url);
        assert.equal(r.status, 403, url);
        assert.equal(((await r.json()) as { errcode: string }).errcode, 'M_FORBIDDEN', url);
      }
      const ftp = await preview('ftp://example.org/file');
      assert.equal(ftp.status, 400);
      await ftp.arrayBuffer();
    });
    assert.deepEqual(web.hits, [], 'the internal server was never contacted');
  } finally {
    await web.close();
  }
});

test('a URL redirecting to a private address is refused (checked on every redirect)', async () => {
  const inner = await site((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<title>secret</title>'));
  const web = await site((req, res) => {
    const to: Record<string, string> = {
      '/to-metadata': 'http://169.254.169.254/latest/meta-data/',
      '/to-private': 'http://10.1.2.3/admin',
      '/to-v6-loopback': `http://[::1]:${inner.port}/`,
      '/to-other-loopback': `http://127.0.0.2:${inner.port}/`,
      '/to-localhost-name': `http://localhost:${inner.port}/`,
      '/hop': '/to-private',
      '/ok': '/final',
    };
    if (to[req.url!]) res.writeHead(302, { location: to[req.url!] }).end();
    else if (req.url === '/final') res.writeHead(200, { 'content-type': 'text/html' }).end('<title>public page</title>');
    else res.writeHead(404).end();
  });
  try {
    // Only 127.0.0.1 is allowed (so the test site is reachable); everything else special is not.
    await withServer(allowLoopback, async (_s, preview) => {
      for (const p of ['/to-metadata', '/to-private', '/to-v6-loopback', '/to-other-loopback', '/hop']) {
        const r = await preview(`${web.base}${p}`);
        assert.equal(r.status, 403, p);
        assert.equal(((await r.json()) as { errcode: string }).errcode, 'M_FORBIDDEN');
      }
      assert.deepEqual(inner.hits, [], 'no refused redirect target was contacted');
      // A name: refused when it resolves to anything not allowed (::1 here), fetched when only to 127.0.0.1.
      const lh = await preview(`${web.base}/to-localhost-name`);
      assert.ok(lh.status === 403 || lh.status === 200);
      await lh.arrayBuffer();
      const ok = await preview(`${web.base}/ok`);
      assert.deepEqual(await ok.json(), { 'og:title': 'public page' });
    });
  } finally {
    await web.close();
    await inner.close();
  }
});

test('preview timeout and disabled previews', async () => {
  const web = await site(() => {
    /* never answers */
  });
  try {
    await withServer({ media: { url_previews: { allowed_ip_ranges: ['127.0.0.1/32'], timeout_ms: 300 } } }, async (_s, preview) => {
      const r = await preview(`${web.base}/slow`);
      assert.equal(r.status, 502);
      await r.arrayBuffer();
    });
    await withServer({ media: { url_previews: { enabled: false } } }, async (_s, preview) => {
      const r = await preview('http://example.org/');
      assert.equal(r.status, 403);
      await r.arrayBuffer();
    });
  } finally {
    web.close();
  }
});

test('IpPolicy: IPv4 and IPv6 special ranges, embedded IPv4, allowlist', () => {
  const p = new IpPolicy();
  for (const ip of ['127.0.0.1', '10.9.8.7', '172.31.0.1', '192.168.0.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '224.0.0.1', '::1', '::', 'fe80::1', 'fc00::1', 'fd12:3456::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '64:ff9b::a00:1', '2002:7f00:1::1', 'ff02::1', '2001:db8::1']) {
    assert.equal(p.isAllowed(ip), false, ip);
  }
  for (const ip of ['8.8.8.8', '1.1.1.1', '2606:4700:4700::1111', '2a00:1450:4001::1', '::ffff:8.8.8.8']) assert.equal(p.isAllowed(ip), true, ip);
  const extra = new IpPolicy(['8.8.8.0/24'], ['127.0.0.1/32']);
  assert.equal(extra.isAllowed('8.8.8.8'), false);
  assert.equal(extra.isAllowed('127.0.0.1'), true);
  assert.equal(extra.isAllowed('127.0.0.2'), false);
});

test('extractOpenGraph: entities, relative images, fallbacks', () => {
  const og = extractOpenGraph(
    `<head><meta content='Caf&eacute; &#x2615;' property='og:title'><meta property="og:image" content="img/a.png"><meta property="og:image:width" content="abc"></head>`,
    'https://example.org/blog/post',
  );
  assert.equal(og['og:title'], 'Caf&eacute; ☕');
  assert.equal(og['og:image'], 'https://example.org/blog/img/a.png');
  assert.ok(!('og:image:width' in og));
});
