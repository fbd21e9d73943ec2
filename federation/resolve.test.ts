import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseWellKnown, pickSrv, ServerResolver, wellKnownCacheMs, type SrvRecord, type WellKnownResult } from './resolve.ts';

function resolver(opts: { wellKnown?: Record<string, string>; srv?: Record<string, SrvRecord[]>; overrides?: Record<string, string> } = {}) {
  const calls: string[] = [];
  const r = new ServerResolver({
    overrides: () => opts.overrides ?? {},
    resolveSrv: async (name) => {
      calls.push(`srv ${name}`);
      return opts.srv?.[name] ?? [];
    },
    fetchWellKnown: async (host): Promise<WellKnownResult> => {
      calls.push(`wk ${host}`);
      const s = opts.wellKnown?.[host];
      return s ? { server: s, cacheMs: 3600_000 } : { server: null, cacheMs: 60_000 };
    },
    now: () => 0,
  });
  return { r, calls };
}

test('overrides, IP literals and explicit ports need no lookups', async () => {
  const { r, calls } = resolver({ overrides: { 'test.local': 'http://127.0.0.1:1234/' } });
  assert.deepEqual(await r.resolve('test.local'), { kind: 'override', baseUrl: 'http://127.0.0.1:1234' });
  assert.deepEqual(await r.resolve('1.2.3.4'), { kind: 'matrix', connectHost: '1.2.3.4', port: 8448, hostHeader: '1.2.3.4', tlsServerName: null });
  assert.deepEqual(await r.resolve('[2001:db8::1]:9000'), { kind: 'matrix', connectHost: '2001:db8::1', port: 9000, hostHeader: '[2001:db8::1]:9000', tlsServerName: null });
  assert.deepEqual(await r.resolve('example.org:8000'), { kind: 'matrix', connectHost: 'example.org', port: 8000, hostHeader: 'example.org:8000', tlsServerName: 'example.org' });
  assert.deepEqual(calls, []);
  await assert.rejects(r.resolve('not a server'));
});

test('.well-known delegation: explicit port, IP literal, SRV on the delegated name, then 8448', async () => {
  const { r } = resolver({
    wellKnown: { 'a.org': 'fed.a.org:443', 'b.org': '5.6.7.8', 'c.org': 'fed.c.org', 'd.org': 'fed.d.org' },
    srv: { '_matrix-fed._tcp.fed.c.org': [{ name: 'box.c.org.', port: 8000, priority: 1, weight: 1 }] },
  });
  assert.deepEqual(await r.resolve('a.org'), { kind: 'matrix', connectHost: 'fed.a.org', port: 443, hostHeader: 'fed.a.org:443', tlsServerName: 'fed.a.org' });
  assert.deepEqual(await r.resolve('b.org'), { kind: 'matrix', connectHost: '5.6.7.8', port: 8448, hostHeader: '5.6.7.8', tlsServerName: null });
  assert.deepEqual(await r.resolve('c.org'), { kind: 'matrix', connectHost: 'box.c.org', port: 8000, hostHeader: 'fed.c.org', tlsServerName: 'fed.c.org' });
  assert.deepEqual(await r.resolve('d.org'), { kind: 'matrix', connectHost: 'fed.d.org', port: 8448, hostHeader: 'fed.d.org', tlsServerName: 'fed.d.org' });
});

test('no .well-known: SRV _matrix-fed then the deprecated _matrix, then port 8448; well-known answers are cached', async () => {
  const { r, calls } = resolver({
    srv: { '_matrix-fed._tcp.e.org': [{ name: 'e1.e.org', port: 1111, priority: 0, weight: 0 }], '_matrix._tcp.f.org': [{ name: 'f1.f.org', port: 2222, priority: 0, weight: 5 }] },
  });
  assert.deepEqual(await r.resolve('e.org'), { kind: 'matrix', connectHost: 'e1.e.org', port: 1111, hostHeader: 'e.org', tlsServerName: 'e.org' });
  assert.deepEqual(await r.resolve('f.org'), { kind: 'matrix', connectHost: 'f1.f.org', port: 2222, hostHeader: 'f.org', tlsServerName: 'f.org' });
  assert.deepEqual(await r.resolve('g.org'), { kind: 'matrix', connectHost: 'g.org', port: 8448, hostHeader: 'g.org', tlsServerName: 'g.org' });
  await r.resolve('g.org');
  assert.equal(calls.filter((c) => c === 'wk g.org').length, 1);
});

test('helpers: SRV choice, well-known parsing and cache lifetimes', () => {
  const recs = [
    { name: 'low', port: 1, priority: 10, weight: 100 },
    { name: 'a', port: 2, priority: 1, weight: 1 },
    { name: 'b', port: 3, priority: 1, weight: 3 },
  ];
  assert.equal(pickSrv(recs, () => 0)?.name, 'a');
  assert.equal(pickSrv(recs, () => 0.99)?.name, 'b');
  assert.equal(pickSrv([{ name: '.', port: 0, priority: 0, weight: 0 }]), null);
  assert.equal(parseWellKnown('{"m.server":"x.org:443"}'), 'x.org:443');
  assert.equal(parseWellKnown('{"m.server":"https://x.org"}'), null);
  assert.equal(parseWellKnown('nope'), null);
  assert.equal(wellKnownCacheMs('public, max-age=600'), 600_000);
  assert.equal(wellKnownCacheMs('max-age=999999999'), 48 * 3600_000);
  assert.equal(wellKnownCacheMs('no-store'), 0);
  assert.equal(wellKnownCacheMs(null), 24 * 3600_000);
});
