// The federation layer inside a running server: requireServerAuth for routes with JSON bodies, and
// outbound requests from one Axon verified by another.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Module } from '../../homeserver.ts';
import type { ApiContext } from '../../http/api.ts';
import { startTestServer } from '../../testing.ts';
import { linkServers } from '../../testing-federation.ts';
import { readJsonObject } from '../../http/body.ts';
import { requireServerAuth } from './federation-module.ts';
import { authorizationHeader } from '../../../federation/x-matrix.ts';

/** A test-only federation endpoint that echoes who called and what they sent. */
const echoModule: Module = {
  name: 'test-echo',
  routes(api, hs) {
    api.put('federation', '/_matrix/federation/v1/test_echo/:id', requireServerAuth(hs), async (ctx: ApiContext) => {
      ctx.body = { origin: ctx.state.origin, body: await readJsonObject(ctx), id: ctx.params.id };
    });
    api.get('federation', '/_matrix/federation/v1/test_echo', requireServerAuth(hs), (ctx: ApiContext) => {
      ctx.body = { origin: ctx.state.origin, query: ctx.query.q };
    });
  },
};

test('requireServerAuth: signed JSON bodies and queries from another Axon verify; tampering does not', async () => {
  const a = await startTestServer({ serverName: 'a.test' });
  const b = await startTestServer({ serverName: 'b.test', extraModules: [echoModule] });
  try {
    linkServers(a, b);
    const client = a.hs.services.federation.client;
    const put = await client.requestJson('b.test', '/_matrix/federation/v1/test_echo/x1', { method: 'PUT', content: { hello: ['world', 1] }, timeoutMs: 20_000 });
    assert.deepEqual(put, { origin: 'a.test', body: { hello: ['world', 1] }, id: 'x1' });
    const get = await client.requestJson('b.test', '/_matrix/federation/v1/test_echo?q=a%20b', { timeoutMs: 20_000 });
    assert.deepEqual(get, { origin: 'a.test', query: 'a b' });
    // A valid header for one body, sent with another, is refused.
    const captured = authorizationHeader({ method: 'PUT', uri: '/_matrix/federation/v1/test_echo/x2', origin: 'a.test', destination: 'b.test', content: { n: 1 } }, a.hs.keys.current);
    const ok = await fetch(`${b.baseUrl}/_matrix/federation/v1/test_echo/x2`, { method: 'PUT', headers: { authorization: captured, 'content-type': 'application/json' }, body: '{"n":1}' });
    assert.equal(ok.status, 200);
    await ok.arrayBuffer();
    const forged = await fetch(`${b.baseUrl}/_matrix/federation/v1/test_echo/x2`, { method: 'PUT', headers: { authorization: captured, 'content-type': 'application/json' }, body: '{"n":2}' });
    assert.equal(forged.status, 401);
    assert.equal(((await forged.json()) as { errcode: string }).errcode, 'M_UNAUTHORIZED');
    const noAuth = await fetch(`${b.baseUrl}/_matrix/federation/v1/test_echo/x2`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"n":1}' });
    assert.equal(noAuth.status, 401);
    await noAuth.arrayBuffer();
  } finally {
    await a.stop();
    await b.stop();
  }
});
