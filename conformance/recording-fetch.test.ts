import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SpecValidator } from './openapi.ts';
import { createCheckingFetch } from './recording-fetch.ts';

type Route = { status: number; body: string; contentType?: string };

/** A fetch answering from a table of "METHOD /path" routes, recording the requests it saw. */
function fakeFetch(routes: Record<string, Route>): typeof fetch & { seen: string[] } {
  const seen: string[] = [];
  const f = async (input: Parameters<typeof fetch>[0], init?: RequestInit): Promise<Response> => {
    const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
    const key = `${init?.method ?? 'GET'} ${url.pathname}`;
    seen.push(key);
    const r = routes[key];
    if (!r) return new Response(JSON.stringify({ errcode: 'M_UNRECOGNIZED', error: 'no route' }), { status: 404, headers: { 'content-type': 'application/json' } });
    return new Response(r.body, { status: r.status, headers: { 'content-type': r.contentType ?? 'application/json' } });
  };
  return Object.assign(f, { seen }) as typeof fetch & { seen: string[] };
}

const base = 'http://hs.test';

describe('createCheckingFetch', () => {
  let v: SpecValidator;
  before(async () => {
    v = await SpecValidator.load();
  });

  test('conforming responses pass through untouched and are counted', async () => {
    const inner = fakeFetch({ 'GET /_matrix/client/versions': { status: 200, body: '{"versions":["v1.11"]}' } });
    const f = createCheckingFetch(v, { fetch: inner });
    const res = await f(`${base}/_matrix/client/versions`);
    assert.deepEqual(await res.json(), { versions: ['v1.11'] }); // the caller still gets the whole body
    assert.equal(f.checkedCount(), 1);
    assert.deepEqual(f.getViolations(), []);
    f.assertNoViolations();
  });

  test('a non-conforming response is recorded and assertNoViolations lists method, path, status and field', async () => {
    const inner = fakeFetch({
      'GET /_matrix/client/versions': { status: 200, body: '{"versions":"v1.1"}' },
      'GET /_matrix/client/v3/account/whoami': { status: 200, body: '{"device_id":"D"}' },
    });
    const seen: string[] = [];
    const f = createCheckingFetch(v, { fetch: inner, onViolation: (x) => seen.push(x.path) });
    await f(`${base}/_matrix/client/versions`);
    await f(new URL(`${base}/_matrix/client/v3/account/whoami?x=1`), { method: 'GET' });
    const violations = f.getViolations();
    assert.equal(violations.length, 2);
    assert.deepEqual(seen, ['/_matrix/client/versions', '/_matrix/client/v3/account/whoami']);
    assert.equal(violations[0]!.status, 200);
    assert.match(violations[0]!.errors[0]!, /^\$\.versions: must be array/);
    assert.throws(() => f.assertNoViolations(), (e: Error) => {
      assert.match(e.message, /GET \/_matrix\/client\/versions -> 200\n\s+\$\.versions: must be array/);
      assert.match(e.message, /GET \/_matrix\/client\/v3\/account\/whoami -> 200\n\s+\$\.user_id: required property is missing/);
      return true;
    });
    f.reset();
    f.assertNoViolations();
  });

  test('unknown operations are recorded separately, not as violations; non-Matrix paths are ignored', async () => {
    const inner = fakeFetch({
      'GET /_matrix/client/unstable/org.example/thing': { status: 200, body: '{"anything":1}' },
      'GET /other': { status: 200, body: '{"versions":"not checked"}' },
    });
    const f = createCheckingFetch(v, { fetch: inner });
    await f(`${base}/_matrix/client/unstable/org.example/thing`);
    await f(`${base}/other`);
    assert.deepEqual(f.getUnknownOperations(), [{ method: 'GET', path: '/_matrix/client/unstable/org.example/thing', status: 200 }]);
    assert.deepEqual(f.getViolations(), []);
    assert.equal(f.checkedCount(), 0);
  });

  test('a Matrix error response is checked against the error schema', async () => {
    const inner = fakeFetch({ 'GET /_matrix/client/v3/account/whoami': { status: 401, body: '{"error":"who?"}' } });
    const f = createCheckingFetch(v, { fetch: inner });
    const res = await f(`${base}/_matrix/client/v3/account/whoami`);
    assert.equal(res.status, 401);
    assert.match(f.getViolations()[0]!.errors[0]!, /^\$\.errcode: required/);
  });

  test('a documented JSON response sent as something else, or invalid JSON, is a violation', async () => {
    const inner = fakeFetch({
      'GET /_matrix/client/versions': { status: 200, body: '{"versions":[]}', contentType: 'text/plain' },
      'GET /_matrix/client/v3/account/whoami': { status: 200, body: '{"user_id":', contentType: 'application/json; charset=utf-8' },
    });
    const f = createCheckingFetch(v, { fetch: inner });
    await f(`${base}/_matrix/client/versions`);
    await f(`${base}/_matrix/client/v3/account/whoami`);
    const [a, b] = f.getViolations();
    assert.match(a!.errors[0]!, /content-type is text\/plain/);
    assert.match(b!.errors[0]!, /not valid JSON/);
  });

  test('request bodies are checked when asked, and ignore() skips exchanges', async () => {
    const inner = fakeFetch({
      'POST /_matrix/client/v3/createRoom': { status: 200, body: '{"room_id":"!r:hs.test"}' },
      'GET /_matrix/client/versions': { status: 200, body: '{}' },
    });
    const f = createCheckingFetch(v, { fetch: inner, checkRequests: true, ignore: (_m, p) => p.endsWith('/versions') });
    await f(`${base}/_matrix/client/v3/createRoom`, { method: 'POST', body: JSON.stringify({ preset: 'bogus' }), headers: { 'content-type': 'application/json' } });
    await f(`${base}/_matrix/client/versions`);
    const violations = f.getViolations();
    assert.equal(violations.length, 1);
    assert.equal(violations[0]!.kind, 'request');
    assert.match(violations[0]!.errors[0]!, /^\$\.preset: must be one of/);
    assert.equal(f.checkedCount(), 1);
  });
});
