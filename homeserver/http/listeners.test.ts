// Listeners from config: TLS, per-listener resources, the separate metrics listener, .well-known,
// health, and request logs that never carry tokens.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { startTestServer } from '../testing.ts';

function selfSignedCert(): { certificate: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), 'axon-tls-'));
  const certificate = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', certificate, '-days', '1', '-subj', '/CN=localhost'], { stdio: 'ignore' });
  return { certificate, key };
}

function httpsGet(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    request(url, { rejectUnauthorized: false }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    })
      .on('error', reject)
      .end();
  });
}

test('a TLS listener serves HTTPS; listeners serve only their resources; metrics on their own listener', async () => {
  const tls = selfSignedCert();
  const s = await startTestServer({
    config: {
      listeners: [
        { bind_address: '127.0.0.1', port: 0, resources: ['client'], tls },
        { bind_address: '127.0.0.1', port: 0, resources: ['keys', 'federation'] },
      ],
      metrics: { enabled: true, bind_address: '127.0.0.1', port: 0 },
      well_known: { client_base_url: 'https://matrix.example.org', identity_server_base_url: null, server: 'matrix.example.org:443' },
    },
  });
  try {
    assert.match(s.urls[0]!, /^https:\/\//);
    const v = await httpsGet(`${s.urls[0]}/_matrix/client/versions`);
    assert.equal(v.status, 200);
    assert.ok(JSON.parse(v.body).versions.includes('v1.19'));
    // The client listener does not serve keys; the keys listener does not serve the client API.
    const k1 = await httpsGet(`${s.urls[0]}/_matrix/key/v2/server`);
    assert.equal(k1.status, 404);
    assert.equal(JSON.parse(k1.body).errcode, 'M_UNRECOGNIZED');
    const k2 = await fetch(`${s.urls[1]}/_matrix/key/v2/server`);
    assert.equal(k2.status, 200);
    const c2 = await fetch(`${s.urls[1]}/_matrix/client/versions`);
    assert.equal(c2.status, 404);
    // .well-known: client on the client listener, server on the federation listener.
    const wkc = JSON.parse((await httpsGet(`${s.urls[0]}/.well-known/matrix/client`)).body);
    assert.deepEqual(wkc, { 'm.homeserver': { base_url: 'https://matrix.example.org' } });
    const wks = (await (await fetch(`${s.urls[1]}/.well-known/matrix/server`)).json()) as Record<string, string>;
    assert.deepEqual(wks, { 'm.server': 'matrix.example.org:443' });
    const health = JSON.parse((await httpsGet(`${s.urls[0]}/health`)).body);
    assert.equal(health.status, 'ok');
    // Metrics: Prometheus text including the request counter for routes served above.
    assert.ok(s.metricsUrl);
    const m = await (await fetch(s.metricsUrl!)).text();
    assert.match(m, /axon_http_requests_total\{method="GET",route="\/_matrix\/client\/versions",status="200"\} 1/);
    // Metrics are not on the API listeners.
    assert.equal((await fetch(`${s.urls[1]}/metrics`)).status, 404);
  } finally {
    await s.stop();
  }
});

test('.well-known answers 404 M_NOT_FOUND when nothing is configured', async () => {
  const s = await startTestServer();
  try {
    const r = await fetch(`${s.baseUrl}/.well-known/matrix/server`);
    assert.equal(r.status, 404);
    assert.equal(((await r.json()) as { errcode: string }).errcode, 'M_NOT_FOUND');
  } finally {
    await s.stop();
  }
});

test('request logs: one JSON line per request with id, method, route, status, latency; never the token', async () => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  });
  const { startHomeserver } = await import('../server.ts');
  const { loadConfig } = await import('../config.ts');
  const config = loadConfig({
    overrides: { data_dir: mkdtempSync(join(tmpdir(), 'axon-log-')), listeners: [{ port: 0 }], metrics: { enabled: false, bind_address: '127.0.0.1', port: 0 } },
  });
  const srv = await startHomeserver(config, { logger: pino({ level: 'info' }, sink), inMemoryDatabase: true });
  try {
    await fetch(`${srv.urls[0]}/_matrix/client/v3/account/whoami?access_token=secret-token-123`, { headers: {} });
    await fetch(`${srv.urls[0]}/_matrix/client/versions`, { headers: { Authorization: 'Bearer secret-token-456' } });
  } finally {
    await srv.stop();
  }
  const reqs = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'request');
  assert.equal(reqs.length, 2);
  for (const r of reqs) {
    for (const k of ['reqId', 'method', 'route', 'status', 'ms']) assert.ok(k in r, `log line has ${k}`);
  }
  assert.equal(reqs[1]!.route, '/_matrix/client/versions');
  assert.equal(reqs[1]!.status, 200);
  const all = lines.join('\n');
  assert.ok(!all.includes('secret-token'), 'no token in logs');
});
