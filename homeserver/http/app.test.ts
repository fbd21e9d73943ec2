// The foundation over real HTTP: versions, keys, errors for bad input, CORS, 404/405, limits.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { decodeBase64 } from '../../spec/base64.ts';
import { verifyJsonSignature } from '../../spec/signing.ts';
import { startTestServer, type TestServer } from '../testing.ts';
import { requireAuth } from '../auth/access-tokens.ts';
import { rateLimit, type Module } from '../homeserver.ts';
import { readJsonObject } from './body.ts';

let s: TestServer;

// A test-only module exercising the shared middleware with a fixed token.
const probe: Module = {
  name: 'probe',
  init(hs) {
    hs.tokens.addResolver({
      async resolve(t) {
        if (t === 'good') return { userId: '@probe:localhost', deviceId: 'D', isGuest: false, sessionId: '1' };
        if (t === 'old') return { expired: true };
        return null;
      },
    });
  },
  routes(api, hs) {
    api.get('client', '/_matrix/client/v3/probe/auth', requireAuth(hs.tokens), (ctx) => {
      ctx.body = { user_id: ctx.state.requester!.userId };
    });
    api.post('client', '/_matrix/client/v3/probe/echo', async (ctx) => {
      ctx.body = { got: await readJsonObject(ctx) };
    });
    api.post('client', '/_matrix/client/v3/probe/limited', rateLimit(hs, 'login'), (ctx) => {
      ctx.body = {};
    });
  },
};

before(async () => {
  s = await startTestServer({ extraModules: [probe], config: { rate_limits: { enabled: true, login: { per_second: 0, burst: 2 } } } });
});
after(async () => {
  await s?.stop();
});

async function raw(method: string, path: string, body?: string | Buffer, headers: Record<string, string> = {}) {
  const res = await fetch(s.baseUrl + path, { method, body, headers });
  const text = await res.text();
  let json: any = undefined;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: res.status, json, headers: res.headers };
}

test('GET /_matrix/client/versions advertises v1.19', async () => {
  const r = await raw('GET', '/_matrix/client/versions');
  assert.equal(r.status, 200);
  assert.ok(r.json.versions.includes('v1.19'));
  assert.ok(r.json.versions.every((v: string) => /^v1\.\d+$/.test(v)));
});

test('GET /_matrix/key/v2/server is signed by the key it carries', async () => {
  const r = await raw('GET', '/_matrix/key/v2/server');
  assert.equal(r.status, 200);
  assert.equal(r.json.server_name, 'localhost');
  const [keyId, { key }] = Object.entries(r.json.verify_keys)[0] as [string, { key: string }];
  assert.match(keyId, /^ed25519:[a-zA-Z0-9_]+$/);
  assert.ok(r.json.valid_until_ts > Date.now());
  assert.equal(verifyJsonSignature(r.json, 'localhost', keyId, decodeBase64(key)), true);
  // Tampering breaks it: the check can fail.
  assert.equal(verifyJsonSignature({ ...r.json, valid_until_ts: 1 }, 'localhost', keyId, decodeBase64(key)), false);
});

test('unknown endpoint: 404 M_UNRECOGNIZED; known endpoint, wrong method: 405 M_UNRECOGNIZED', async () => {
  const a = await raw('GET', '/_matrix/client/v3/no/such/thing');
  assert.equal(a.status, 404);
  assert.equal(a.json.errcode, 'M_UNRECOGNIZED');
  assert.equal(typeof a.json.error, 'string');
  const b = await raw('DELETE', '/_matrix/client/versions');
  assert.equal(b.status, 405);
  assert.equal(b.json.errcode, 'M_UNRECOGNIZED');
});

test('routes without parameters answer the same by exact path, with a trailing slash and for HEAD', async () => {
  // The exact-path table and the router must agree: both spellings reach the handler chain (two
  // handlers here: the token check, then the handler).
  for (const path of ['/_matrix/client/v3/probe/auth', '/_matrix/client/v3/probe/auth/']) {
    const ok = await raw('GET', path, undefined, { authorization: 'Bearer good' });
    assert.equal(ok.status, 200, path);
    assert.deepEqual(ok.json, { user_id: '@probe:localhost' });
    const no = await raw('GET', path);
    assert.equal(no.status, 401, path);
    assert.equal(no.json.errcode, 'M_MISSING_TOKEN');
    const head = await raw('HEAD', path, undefined, { authorization: 'Bearer good' });
    assert.equal(head.status, 200, path);
  }
  const wrong = await raw('PUT', '/_matrix/client/v3/probe/auth');
  assert.equal(wrong.status, 405);
  assert.equal(wrong.json.errcode, 'M_UNRECOGNIZED');
});

test('CORS headers on responses and OPTIONS preflight', async () => {
  const a = await raw('GET', '/_matrix/client/versions');
  assert.equal(a.headers.get('access-control-allow-origin'), '*');
  const b = await raw('OPTIONS', '/_matrix/client/v3/login');
  assert.equal(b.status, 204);
  assert.match(b.headers.get('access-control-allow-methods') ?? '', /PUT/);
  assert.match(b.headers.get('access-control-allow-headers') ?? '', /Authorization/);
});

test('missing token 401 M_MISSING_TOKEN, unknown token 401 M_UNKNOWN_TOKEN, expired token soft_logout', async () => {
  const a = await raw('GET', '/_matrix/client/v3/probe/auth');
  assert.equal(a.status, 401);
  assert.equal(a.json.errcode, 'M_MISSING_TOKEN');
  const b = await raw('GET', '/_matrix/client/v3/probe/auth', undefined, { Authorization: 'Bearer nope' });
  assert.equal(b.status, 401);
  assert.equal(b.json.errcode, 'M_UNKNOWN_TOKEN');
  const c = await raw('GET', '/_matrix/client/v3/probe/auth', undefined, { Authorization: 'Bearer old' });
  assert.equal(c.json.errcode, 'M_UNKNOWN_TOKEN');
  assert.equal(c.json.soft_logout, true);
  const d = await raw('GET', '/_matrix/client/v3/probe/auth', undefined, { Authorization: 'Bearer good' });
  assert.equal(d.status, 200);
  assert.equal(d.json.user_id, '@probe:localhost');
  const e = await raw('GET', '/_matrix/client/v3/probe/auth?access_token=good');
  assert.equal(e.status, 200);
});

test('bad bodies: M_NOT_JSON for non-JSON and non-objects, M_TOO_LARGE 413 beyond the limit', async () => {
  const a = await raw('POST', '/_matrix/client/v3/probe/echo', '{not json', { 'Content-Type': 'application/json' });
  assert.equal(a.status, 400);
  assert.equal(a.json.errcode, 'M_NOT_JSON');
  const b = await raw('POST', '/_matrix/client/v3/probe/echo', '[1,2]', { 'Content-Type': 'application/json' });
  assert.equal(b.status, 400);
  assert.equal(b.json.errcode, 'M_NOT_JSON');
  const big = JSON.stringify({ x: 'a'.repeat(1024 * 1024 + 10) });
  const c = await raw('POST', '/_matrix/client/v3/probe/echo', big, { 'Content-Type': 'application/json' });
  assert.equal(c.status, 413);
  assert.equal(c.json.errcode, 'M_TOO_LARGE');
  const d = await raw('POST', '/_matrix/client/v3/probe/echo', '{"a":1}', { 'Content-Type': 'application/json' });
  assert.deepEqual(d.json, { got: { a: 1 } });
});

test('oversized body sent chunked (no Content-Length) is still refused with 413', async () => {
  const url = new URL(s.baseUrl + '/_matrix/client/v3/probe/echo');
  const status = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: { 'Transfer-Encoding': 'chunked' } }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    const chunk = Buffer.alloc(64 * 1024, 'a');
    let sent = 0;
    const pump = () => {
      while (sent < 1.5 * 1024 * 1024) {
        sent += chunk.length;
        if (!req.write(chunk)) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
  assert.equal(status.status, 413);
  assert.equal(JSON.parse(status.body).errcode, 'M_TOO_LARGE');
});

test('rate limit trips with 429 M_LIMIT_EXCEEDED and retry_after_ms', async () => {
  const r1 = await raw('POST', '/_matrix/client/v3/probe/limited', '{}');
  const r2 = await raw('POST', '/_matrix/client/v3/probe/limited', '{}');
  const r3 = await raw('POST', '/_matrix/client/v3/probe/limited', '{}');
  assert.equal(r1.status, 200);
  assert.equal(r2.status, 200);
  assert.equal(r3.status, 429);
  assert.equal(r3.json.errcode, 'M_LIMIT_EXCEEDED');
  assert.equal(typeof r3.json.retry_after_ms, 'number');
  assert.ok(r3.json.retry_after_ms > 0);
});

test('database unavailable: requests get 503 in the spec error shape, not a crash', async () => {
  s.hs.database.health.up = false;
  try {
    const r = await raw('GET', '/_matrix/client/v3/probe/auth', undefined, { Authorization: 'Bearer good' });
    assert.equal(r.status, 503);
    assert.equal(typeof r.json.errcode, 'string');
    assert.match(r.json.errcode, /^M_/);
    assert.ok(r.headers.get('retry-after'));
  } finally {
    s.hs.database.health.up = true;
  }
});
