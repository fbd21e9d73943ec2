// The admin CLI against the database a server uses: users it creates can log in, tokens it creates
// let people register.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDuration, runAdmin } from './admin.ts';
import { startTestServer, type TestServer } from '../homeserver/testing.ts';
import { call, loginWithPassword } from '../homeserver/testing-users.ts';

async function admin(args: string[], env: NodeJS.ProcessEnv) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runAdmin(args, { out: (s) => out.push(s), err: (s) => err.push(s), env });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/**
 * Runs CLI commands against the database of a test server, then hands the started server to `check`.
 * PGlite allows one process at a time, so there the CLI runs first on a data dir the server then opens;
 * on PostgreSQL the server starts first and the CLI joins its schema.
 */
async function withCliAndServer(config: Record<string, unknown>, cli: (env: NodeJS.ProcessEnv) => Promise<void>, check: (s: TestServer) => Promise<void>) {
  if (process.env.AXON_TEST_DATABASE_URL) {
    const s = await startTestServer({ config });
    try {
      await cli({ AXON_DATA_DIR: s.dataDir, AXON_DATABASE__URL: s.config.database.url!, AXON_DATABASE__SCHEMA: s.config.database.schema!, AXON_SERVER_NAME: s.serverName });
      await check(s);
    } finally {
      await s.stop();
    }
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'axon-admin-'));
  try {
    await cli({ AXON_DATA_DIR: dir, AXON_SERVER_NAME: 'localhost' });
    const s = await startTestServer({ dataDir: dir, config });
    try {
      await check(s);
    } finally {
      await s.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('create-user makes users that can log in (generated password printed); create-token makes registration tokens', async () => {
  let generated = '';
  let token = '';
  await withCliAndServer(
    { registration: { mode: 'token' } },
    async (env) => {
      const a = await admin(['create-user', 'Operator', '--password', 'operator password', '--admin', '--displayname', 'Ops'], env);
      assert.equal(a.code, 0, a.err);
      assert.match(a.out, /created @operator:localhost \(admin\)/);
      const b = await admin(['create-user', '@second:localhost'], env);
      assert.equal(b.code, 0, b.err);
      generated = /password: (\S+)/.exec(b.out)![1]!;
      const dup = await admin(['create-user', 'operator', '--password', 'operator password'], env);
      assert.equal(dup.code, 1);
      assert.match(dup.err, /M_USER_IN_USE/);
      const t = await admin(['create-token', '--uses', '1', '--expires-in', '1d'], env);
      assert.equal(t.code, 0, t.err);
      token = t.out.split('\n')[0]!;
      assert.match(token, /^[A-Za-z0-9_-]{16}$/);
      assert.match(t.out, /1 use, expires /);
      const named = await admin(['create-token', '--token', 'friends-2026'], env);
      assert.equal(named.out.split('\n')[0], 'friends-2026');
      const list = await admin(['list-tokens'], env);
      assert.match(list.out, new RegExp(`${token}\\t0/1 used`));
      assert.match(list.out, /friends-2026\t0 used\tno expiry/);
    },
    async (s) => {
      assert.equal((await loginWithPassword(s.baseUrl, 'operator', 'operator password')).status, 200);
      assert.equal((await loginWithPassword(s.baseUrl, 'second', generated)).status, 200);
      const row = await s.hs.db.selectFrom('users').select('is_admin').where('user_id', '=', '@operator:localhost').executeTakeFirstOrThrow();
      assert.equal(row.is_admin, true);
      assert.equal((await call(s.baseUrl, 'GET', '/_matrix/client/v3/profile/@operator:localhost/displayname')).body.displayname, 'Ops');
      const first = await call(s.baseUrl, 'POST', '/_matrix/client/v3/register', { body: { username: 'invited', password: 'invited password' } });
      const done = await call(s.baseUrl, 'POST', '/_matrix/client/v3/register', {
        body: { username: 'invited', password: 'invited password', auth: { type: 'm.login.registration_token', token, session: first.body.session } },
      });
      assert.equal(done.status, 200, JSON.stringify(done.body));
    },
  );
});

test('usage errors exit 2 with a message; unknown commands list the commands', async () => {
  const env = { AXON_DATA_DIR: mkdtempSync(join(tmpdir(), 'axon-admin-')) };
  try {
    const unknown = await admin(['frobnicate'], env);
    assert.equal(unknown.code, 2);
    assert.match(unknown.err, /unknown command "frobnicate"/);
    assert.match(unknown.err, /create-user/);
    assert.equal((await admin([], env)).code, 2);
    const badName = await admin(['create-user', 'no spaces'], env);
    assert.equal(badName.code, 2);
    assert.match(badName.err, /invalid localpart/);
    const badUses = await admin(['create-token', '--uses', 'lots'], env);
    assert.equal(badUses.code, 2);
    const badOpt = await admin(['create-user', 'x', '--colour', 'red'], env);
    assert.equal(badOpt.code, 2);
    const badConfig = await admin(['list-tokens'], { ...env, AXON_REGISTRATION__MODE: 'sometimes' });
    assert.equal(badConfig.code, 2);
    assert.match(badConfig.err, /registration\.mode/);
  } finally {
    rmSync(env.AXON_DATA_DIR, { recursive: true, force: true });
  }
  assert.equal(parseDuration('7d'), 7 * 86_400_000);
  assert.equal(parseDuration('90s'), 90_000);
  assert.equal(parseDuration('250'), 250);
  assert.throws(() => parseDuration('soon'));
});
