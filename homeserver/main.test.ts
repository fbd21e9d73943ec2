// The start command as a user runs it: a real process with a config file, SIGTERM, and a restart that
// keeps the signing key and the data.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeBase64 } from '../spec/base64.ts';
import { verifyJsonSignature } from '../spec/signing.ts';
import { registerUser } from './testing-users.ts';

const main = join(import.meta.dirname, 'main.ts');

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

function start(args: string[], env: Record<string, string> = {}): { child: ChildProcess; ready: Promise<string>; exited: Promise<{ code: number | null; stderr: string }> } {
  const child = spawn(process.execPath, [main, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const ready = new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /Axon serving \S+ on (\S+)/.exec(out);
      if (m) resolve(m[1]!.replace(/,$/, ''));
    });
    child.on('exit', () => reject(new Error(`exited before ready: ${err}`)));
  });
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) => child.on('exit', (code) => resolve({ code, stderr: err })));
  ready.catch(() => {});
  return { child, ready, exited };
}

test('start, serve keys, SIGTERM, restart: same key id and same data', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'axon-main-'));
  const port = await freePort();
  const cfg = join(dir, 'axon.yaml');
  writeFileSync(cfg, `server_name: localhost\ndata_dir: ${join(dir, 'data')}\nlisteners:\n  - port: ${port}\nmetrics:\n  enabled: false\n  bind_address: 127.0.0.1\n  port: 0\nregistration:\n  mode: open\n  shared_secret: null\n  allow_guests: false\n  reserved_localparts: []\nlog:\n  level: warn\n`);
  const env = process.env.AXON_TEST_DATABASE_URL ? {} : {};
  const a = start(['--config', cfg], env);
  const url = await a.ready;
  const key1 = (await (await fetch(`${url}/_matrix/key/v2/server`)).json()) as { verify_keys: Record<string, { key: string }> };
  const [keyId1, { key }] = Object.entries(key1.verify_keys)[0]!;
  assert.equal(verifyJsonSignature(key1, 'localhost', keyId1, decodeBase64(key)), true);
  const versions = (await (await fetch(`${url}/_matrix/client/versions`)).json()) as { versions: string[] };
  assert.ok(versions.versions.includes('v1.19'));
  // The key file is private to the server's user.
  assert.equal(statSync(join(dir, 'data', 'signing.key')).mode & 0o077, 0);
  const alice = await registerUser(url, 'alice');
  a.child.kill('SIGTERM');
  const ex = await a.exited;
  assert.equal(ex.code, 0, `clean exit on SIGTERM, stderr: ${ex.stderr}`);

  const b = start(['--config', cfg], env);
  const url2 = await b.ready;
  const key2 = (await (await fetch(`${url2}/_matrix/key/v2/server`)).json()) as { verify_keys: Record<string, unknown> };
  assert.deepEqual(Object.keys(key2.verify_keys), [keyId1]);
  // Same data: the user registered before the restart still exists and can log in.
  const login = await fetch(`${url2}/_matrix/client/v3/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ type: 'm.login.password', identifier: { type: 'm.id.user', user: 'alice' }, password: 'correct horse battery staple' }),
  });
  assert.equal(login.status, 200);
  assert.equal(((await login.json()) as { user_id: string }).user_id, alice.userId);
  b.child.kill('SIGINT');
  assert.equal((await b.exited).code, 0);
});

test('a bad config stops start-up with one line naming the option, no stack trace', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'axon-main-'));
  const cfg = join(dir, 'axon.yaml');
  writeFileSync(cfg, 'server_name: localhost\ndatabase:\n  pool_size: many\n');
  const r = start(['--config', cfg]);
  const ex = await r.exited;
  assert.equal(ex.code, 2);
  assert.equal(ex.stderr.trim(), 'axon: bad configuration: database.pool_size: expected an integer, got string');
  const r2 = start([], { AXON_CONFIG: cfg.replace('axon.yaml', 'missing.yaml') });
  const ex2 = await r2.exited;
  assert.equal(ex2.code, 2);
  assert.match(ex2.stderr.trim(), /^axon: bad configuration: config file .*missing\.yaml: cannot be read \(ENOENT\)$/);
});
