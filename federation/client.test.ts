import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateSigningKey } from '../spec/signing.ts';
import { RequestAuthenticator } from './auth.ts';
import { FederationClient, FederationRequestError, FederationUnreachable } from './client.ts';
import { ServerResolver } from './resolve.ts';

function certFor(name: string): { cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), 'axon-fed-tls-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem'), '-days', '1', '-subj', `/CN=${name}`, '-addext', `subjectAltName=DNS:${name}`], { stdio: 'ignore' });
    return { cert: readFileSync(join(dir, 'c.pem'), 'utf8'), key: readFileSync(join(dir, 'k.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('requests go over TLS to the checked address with the spec Host header, SNI and a verifiable X-Matrix signature', async () => {
  const { cert, key } = certFor('fed.test');
  const seen: { host?: string; sni?: string | false | null; url?: string; authorization?: string; body?: string }[] = [];
  const srv = createServer({ cert, key }, (req: IncomingMessage, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      seen.push({ host: req.headers.host, sni: (req.socket as TLSSocket).servername, url: req.url, authorization: req.headers.authorization, body });
      if (req.url === '/_matrix/federation/v1/missing') res.writeHead(404, { 'content-type': 'application/json' }).end('{"errcode":"M_NOT_FOUND","error":"x"}');
      else res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  const signingKey = generateSigningKey('c1');
  const checked: string[] = [];
  const client = new FederationClient({
    serverName: 'origin.test',
    signingKey: () => signingKey,
    resolver: new ServerResolver({ overrides: () => ({}), resolveSrv: async () => [], fetchWellKnown: async () => ({ server: null, cacheMs: 0 }), now: Date.now }),
    checkAddress: async (host) => {
      checked.push(host);
      if (host === 'fed.test' || host === 'wrongname.test') return { address: '127.0.0.1', family: 4 };
      throw new Error(`${host} is not allowed`);
    },
    userAgent: 'test',
    ca: cert,
  });
  try {
    const uri = '/_matrix/federation/v1/send/t1?a=b%20c';
    const got = await client.requestJson(`fed.test:${port}`, uri, { method: 'PUT', content: { pdus: [], edus: [] }, timeoutMs: 10_000 });
    assert.deepEqual(got, { ok: true });
    const s = seen[0]!;
    assert.equal(s.host, `fed.test:${port}`);
    assert.equal(s.sni, 'fed.test');
    assert.equal(s.url, uri);
    assert.deepEqual(JSON.parse(s.body!), { pdus: [], edus: [] });
    assert.deepEqual(checked, ['fed.test']);
    // The receiving side verifies it as a real server would.
    const verifier = new RequestAuthenticator(`fed.test:${port}`, { verifyKey: async (server, keyId) => (server === 'origin.test' && keyId === 'ed25519:c1' ? signingKey.publicKey : null) });
    assert.deepEqual(await verifier.authenticate({ method: 'PUT', uri, authorization: s.authorization, content: { pdus: [], edus: [] } }), { origin: 'origin.test', keyId: 'ed25519:c1' });
    await assert.rejects(verifier.authenticate({ method: 'PUT', uri, authorization: s.authorization, content: { pdus: [1] } }), /does not verify/);
    // Error answers carry status and errcode.
    await assert.rejects(client.requestJson(`fed.test:${port}`, '/_matrix/federation/v1/missing', { timeoutMs: 10_000 }), (e: Error) => e instanceof FederationRequestError && e.status === 404 && e.errcode === 'M_NOT_FOUND');
    // A certificate for another name is refused; so are addresses the policy refuses.
    await assert.rejects(client.request(`wrongname.test:${port}`, '/_matrix/key/v2/server', { signed: false, timeoutMs: 10_000 }), FederationUnreachable);
    await assert.rejects(client.request('10.1.2.3:8448', '/_matrix/key/v2/server', { signed: false, timeoutMs: 10_000 }), /not allowed/);
    assert.equal(seen.length, 2);
  } finally {
    client.close();
    await new Promise<void>((r) => srv.close(() => r()));
  }
});
