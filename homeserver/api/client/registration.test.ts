// Registration over HTTP: UIA flows, modes (open, token, closed), guests, username rules,
// registration tokens, shared-secret registration, rate limits, UIA sessions kept in the database.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { startTestServer, type TestServer } from '../../testing.ts';
import { call, loginWithPassword, registerUser } from '../../testing-users.ts';
import { startHomeserver } from '../../server.ts';
import { createRegistrationToken } from '../../services/registration-tokens.ts';
import { registrationMac } from '../admin/shared-secret-registration.ts';

const PW = 'correct horse battery staple';
const REGISTER = '/_matrix/client/v3/register';

let open: TestServer;
let clock = Date.now();
before(async () => {
  open = await startTestServer({ now: () => clock, config: { registration: { mode: 'open', allow_guests: true, shared_secret: 'hunter2-shared' } } });
});
after(async () => {
  await open.stop();
});

test('open mode: a request without auth gets 401 with flows, params and session (no errcode); m.login.dummy completes it', async () => {
  const first = await call(open.baseUrl, 'POST', REGISTER, { body: { username: 'alice', password: PW } });
  assert.equal(first.status, 401);
  assert.deepEqual(first.body.flows, [{ stages: ['m.login.dummy'] }]);
  assert.deepEqual(first.body.params, {});
  assert.equal(typeof first.body.session, 'string');
  assert.equal(first.body.errcode, undefined);
  const done = await call(open.baseUrl, 'POST', REGISTER, {
    body: { username: 'alice', password: PW, initial_device_display_name: 'My phone', auth: { type: 'm.login.dummy', session: first.body.session } },
  });
  assert.equal(done.status, 200);
  assert.equal(done.body.user_id, '@alice:localhost');
  assert.equal(done.body.home_server, 'localhost');
  assert.ok(done.body.access_token);
  const dev = await call(open.baseUrl, 'GET', `/_matrix/client/v3/devices/${done.body.device_id}`, { token: done.body.access_token });
  assert.equal(dev.body.display_name, 'My phone');
  const profile = await call(open.baseUrl, 'GET', '/_matrix/client/v3/profile/@alice:localhost');
  assert.deepEqual(profile.body, { displayname: 'alice' });
  // The UIA session was used up.
  const replay = await call(open.baseUrl, 'POST', REGISTER, { body: { username: 'alice2', password: PW, auth: { type: 'm.login.dummy', session: first.body.session } } });
  assert.equal(replay.status, 400);
});

test('a dummy stage without a session starts and completes at once; unknown stage types and out-of-order stages are 401 with errcode', async () => {
  const done = await call(open.baseUrl, 'POST', REGISTER, { body: { username: 'nosession', password: PW, auth: { type: 'm.login.dummy' } } });
  assert.equal(done.status, 200);
  const wrong = await call(open.baseUrl, 'POST', REGISTER, { body: { username: 'wrongstage', password: PW, auth: { type: 'm.login.registration_token', token: 'x' } } });
  assert.equal(wrong.status, 401);
  assert.equal(wrong.body.errcode, 'M_FORBIDDEN');
  assert.deepEqual(wrong.body.flows, [{ stages: ['m.login.dummy'] }]);
  assert.ok(wrong.body.session);
  const badAuth = await call(open.baseUrl, 'POST', REGISTER, { body: { username: 'badauth', password: PW, auth: 'dummy' } });
  assert.equal(badAuth.status, 400);
  assert.equal(badAuth.body.errcode, 'M_BAD_JSON');
});

test('usernames: grammar (M_INVALID_USERNAME), reserved (M_EXCLUSIVE), taken (M_USER_IN_USE) — all before UIA', async () => {
  await registerUser(open.baseUrl, 'taken', PW);
  const cases: Array<[unknown, string]> = [
    ['Bad Name!', 'M_INVALID_USERNAME'],
    ['a:b', 'M_INVALID_USERNAME'],
    ['émile', 'M_INVALID_USERNAME'],
    ['x'.repeat(250), 'M_INVALID_USERNAME'],
    ['', 'M_INVALID_USERNAME'],
    ['admin', 'M_EXCLUSIVE'],
    ['taken', 'M_USER_IN_USE'],
    ['TAKEN', 'M_USER_IN_USE'],
    [42, 'M_BAD_JSON'],
  ];
  for (const [username, errcode] of cases) {
    const r = await call(open.baseUrl, 'POST', REGISTER, { body: { username, password: PW } });
    assert.equal(r.status, 400, `${String(username)}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.errcode, errcode, String(username));
    if (typeof username === 'string' && username !== '') {
      const a = await call(open.baseUrl, 'GET', `/_matrix/client/v3/register/available?username=${encodeURIComponent(username)}`);
      assert.equal(a.status, 400);
      assert.equal(a.body.errcode, errcode);
    }
  }
  assert.deepEqual((await call(open.baseUrl, 'GET', '/_matrix/client/v3/register/available?username=free.name')).body, { available: true });
  assert.equal((await call(open.baseUrl, 'GET', '/_matrix/client/v3/register/available')).body.errcode, 'M_MISSING_PARAM');
  // Upper case is mapped to lower case.
  const upper = await call(open.baseUrl, 'POST', REGISTER, { body: { username: 'MixedCase', password: PW, auth: { type: 'm.login.dummy' } } });
  assert.equal(upper.body.user_id, '@mixedcase:localhost');
});

test('passwords: too short is M_WEAK_PASSWORD; missing after auth is M_MISSING_PARAM', async () => {
  const weak = await call(open.baseUrl, 'POST', REGISTER, { body: { username: 'weak', password: 'short' } });
  assert.equal(weak.status, 400);
  assert.equal(weak.body.errcode, 'M_WEAK_PASSWORD');
  const none = await call(open.baseUrl, 'POST', REGISTER, { body: { username: 'nopass', auth: { type: 'm.login.dummy' } } });
  assert.equal(none.status, 400);
  assert.equal(none.body.errcode, 'M_MISSING_PARAM');
});

test('inhibit_login, device_id, refresh_token and generated usernames', async () => {
  const inhibited = await call(open.baseUrl, 'POST', REGISTER, { body: { username: 'quiet', password: PW, inhibit_login: true, auth: { type: 'm.login.dummy' } } });
  assert.equal(inhibited.status, 200);
  assert.equal(inhibited.body.user_id, '@quiet:localhost');
  assert.equal(inhibited.body.access_token, undefined);
  assert.equal(inhibited.body.device_id, undefined);
  assert.equal((await loginWithPassword(open.baseUrl, 'quiet', PW)).status, 200);

  const withDevice = await call(open.baseUrl, 'POST', REGISTER, {
    body: { username: 'devuser', password: PW, device_id: 'CHOSENDEV', refresh_token: true, auth: { type: 'm.login.dummy' } },
  });
  assert.equal(withDevice.body.device_id, 'CHOSENDEV');
  assert.ok(withDevice.body.refresh_token);

  const generated = await call(open.baseUrl, 'POST', REGISTER, { body: { password: PW, auth: { type: 'm.login.dummy' } } });
  assert.equal(generated.status, 200);
  assert.match(generated.body.user_id, /^@[a-z2-7]{10}:localhost$/);
});

test('guests: kind=guest gets a guest session that is restricted to the guest endpoints', async () => {
  const g = await call(open.baseUrl, 'POST', `${REGISTER}?kind=guest`, { body: { username: 'ignored', initial_device_display_name: 'Guest tab' } });
  assert.equal(g.status, 200);
  assert.notEqual(g.body.user_id, '@ignored:localhost');
  const who = await call(open.baseUrl, 'GET', '/_matrix/client/v3/account/whoami', { token: g.body.access_token });
  assert.equal(who.body.is_guest, true);
  const token = g.body.access_token as string;
  assert.equal((await call(open.baseUrl, 'GET', '/_matrix/client/v3/devices', { token })).status, 200);
  assert.equal((await call(open.baseUrl, 'PUT', `/_matrix/client/v3/profile/${encodeURIComponent(g.body.user_id)}/displayname`, { token, body: { displayname: 'Visitor' } })).status, 200);
  for (const [method, path, body] of [
    ['PUT', `/_matrix/client/v3/profile/${encodeURIComponent(g.body.user_id)}/avatar_url`, { avatar_url: 'mxc://localhost/a' }],
    ['POST', '/_matrix/client/v3/account/password', { new_password: 'whatever-long-enough' }],
    ['POST', '/_matrix/client/v3/account/deactivate', {}],
    ['PUT', `/_matrix/client/v3/user/${encodeURIComponent(g.body.user_id)}/account_data/m.direct`, {}],
    ['POST', '/_matrix/client/v1/login/get_token', {}],
  ] as const) {
    const r = await call(open.baseUrl, method, path, { token, body });
    assert.equal(r.status, 403, path);
    assert.equal(r.body.errcode, 'M_GUEST_ACCESS_FORBIDDEN', path);
  }
  const caps = await call(open.baseUrl, 'GET', '/_matrix/client/v3/capabilities', { token });
  assert.equal(caps.body.capabilities['m.change_password'].enabled, false);
  assert.deepEqual(caps.body.capabilities['m.profile_fields'], { enabled: true, allowed: ['displayname'] });
});

test('shared-secret registration (Synapse-compatible): HMAC-SHA1, single-use expiring nonce, admin flag', async () => {
  const base = open.baseUrl;
  const nonce = async () => (await call(base, 'GET', '/_synapse/admin/v1/register')).body.nonce as string;
  const n1 = await nonce();
  assert.match(n1, /^[0-9a-f]{32}$/);
  const bad = await call(base, 'POST', '/_synapse/admin/v1/register', { body: { nonce: n1, username: 'root', password: PW, admin: true, mac: registrationMac('wrong-secret', n1, 'root', PW, true) } });
  assert.equal(bad.status, 403);
  assert.equal(bad.body.errcode, 'M_FORBIDDEN');
  // The nonce was spent by the failed attempt.
  const reuse = await call(base, 'POST', '/_synapse/admin/v1/register', { body: { nonce: n1, username: 'root', password: PW, admin: true, mac: registrationMac('hunter2-shared', n1, 'root', PW, true) } });
  assert.equal(reuse.status, 400);

  const n2 = await nonce();
  const ok = await call(base, 'POST', '/_synapse/admin/v1/register', {
    body: { nonce: n2, username: 'root', password: PW, admin: true, displayname: 'The Admin', mac: registrationMac('hunter2-shared', n2, 'root', PW, true) },
  });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.equal(ok.body.user_id, '@root:localhost', 'reserved names are allowed to admins');
  assert.ok(ok.body.access_token && ok.body.device_id);
  const row = await open.hs.db.selectFrom('users').select('is_admin').where('user_id', '=', '@root:localhost').executeTakeFirstOrThrow();
  assert.equal(row.is_admin, true);
  assert.equal((await call(base, 'GET', '/_matrix/client/v3/profile/@root:localhost/displayname')).body.displayname, 'The Admin');

  // A mac over "notadmin" does not authorise admin: true.
  const n3 = await nonce();
  const flipped = await call(base, 'POST', '/_synapse/admin/v1/register', { body: { nonce: n3, username: 'sneaky', password: PW, admin: true, mac: registrationMac('hunter2-shared', n3, 'sneaky', PW, false) } });
  assert.equal(flipped.status, 403);

  const n4 = await nonce();
  clock += 61_000;
  const stale = await call(base, 'POST', '/_synapse/admin/v1/register', { body: { nonce: n4, username: 'late', password: PW, mac: registrationMac('hunter2-shared', n4, 'late', PW, false) } });
  assert.equal(stale.status, 400);

  const n5 = await nonce();
  const taken = await call(base, 'POST', '/_synapse/admin/v1/register', { body: { nonce: n5, username: 'root', password: PW, mac: registrationMac('hunter2-shared', n5, 'root', PW, false) } });
  assert.equal(taken.body.errcode, 'M_USER_IN_USE');
});

test('closed mode: M_FORBIDDEN; guests off: M_FORBIDDEN; shared-secret registration off: 400', async () => {
  const closed = await startTestServer({ config: { registration: { mode: 'closed' } } });
  try {
    const r = await call(closed.baseUrl, 'POST', REGISTER, { body: { username: 'x', password: PW, auth: { type: 'm.login.dummy' } } });
    assert.equal(r.status, 403);
    assert.equal(r.body.errcode, 'M_FORBIDDEN');
    const g = await call(closed.baseUrl, 'POST', `${REGISTER}?kind=guest`, { body: {} });
    assert.equal(g.status, 403);
    assert.equal(g.body.errcode, 'M_FORBIDDEN');
    const k = await call(closed.baseUrl, 'POST', `${REGISTER}?kind=robot`, { body: {} });
    assert.equal(k.status, 400);
    assert.equal((await call(closed.baseUrl, 'GET', '/_synapse/admin/v1/register')).status, 400);
    assert.equal((await call(closed.baseUrl, 'GET', '/_matrix/client/v1/register/m.login.registration_token/validity?token=abc')).status, 403);
  } finally {
    await closed.stop();
  }
});

test('token mode: tokens with uses and expiry; pending uses count; a used-up or expired token fails the stage', async () => {
  let t = Date.now();
  const s = await startTestServer({ now: () => t, config: { registration: { mode: 'token' } } });
  try {
    const validity = async (token: string) => (await call(s.baseUrl, 'GET', `/_matrix/client/v1/register/m.login.registration_token/validity?token=${encodeURIComponent(token)}`)).body;
    await createRegistrationToken(s.hs.db, t, { token: 'two-uses', usesAllowed: 2 });
    await createRegistrationToken(s.hs.db, t, { token: 'short-lived', expiryTime: t + 60_000 });
    assert.deepEqual(await validity('two-uses'), { valid: true });
    assert.deepEqual(await validity('unknown'), { valid: false });
    const bad = await call(s.baseUrl, 'GET', '/_matrix/client/v1/register/m.login.registration_token/validity?token=not%20opaque!');
    assert.equal(bad.status, 400);
    assert.equal(bad.body.errcode, 'M_INVALID_PARAM');

    const start = async (username: string) => (await call(s.baseUrl, 'POST', REGISTER, { body: { username, password: PW } })).body;
    const stage = (username: string, session: string, token: string) =>
      call(s.baseUrl, 'POST', REGISTER, { body: { username, password: PW, auth: { type: 'm.login.registration_token', token, session } } });

    const a = await start('ann');
    assert.deepEqual(a.flows, [{ stages: ['m.login.registration_token'] }]);
    const b = await start('ben');
    const c = await start('cat');
    // m.login.dummy is not offered in token mode.
    const dummy = await call(s.baseUrl, 'POST', REGISTER, { body: { username: 'ann', password: PW, auth: { type: 'm.login.dummy', session: a.session } } });
    assert.equal(dummy.status, 401);
    assert.equal((await stage('ann', a.session, 'two-uses')).status, 200);
    // ben's registration reserves the second use in the UIA stage, then completes.
    assert.equal((await stage('ben', b.session, 'two-uses')).status, 200);
    assert.deepEqual(await validity('two-uses'), { valid: false });
    const usedUp = await stage('cat', c.session, 'two-uses');
    assert.equal(usedUp.status, 401);
    assert.equal(usedUp.body.errcode, 'M_FORBIDDEN');
    assert.equal(usedUp.body.session, c.session);
    const row = await s.hs.db.selectFrom('registration_tokens').selectAll().where('token', '=', 'two-uses').executeTakeFirstOrThrow();
    assert.equal(row.completed, 2);
    assert.equal(row.pending, 0);

    t += 61_000;
    assert.deepEqual(await validity('short-lived'), { valid: false });
    const expired = await stage('cat', c.session, 'short-lived');
    assert.equal(expired.status, 401);
    assert.equal(expired.body.errcode, 'M_FORBIDDEN');
  } finally {
    await s.stop();
  }
});

test('registration rate limit trips with M_LIMIT_EXCEEDED and retry_after_ms', async () => {
  const s = await startTestServer({ config: { rate_limits: { enabled: true, registration: { per_second: 1, burst: 2 } } } });
  try {
    const codes: number[] = [];
    let last;
    for (let i = 0; i < 3; i++) {
      last = await call(s.baseUrl, 'POST', REGISTER, { body: { username: `rl${i}`, password: PW } });
      codes.push(last.status);
    }
    assert.deepEqual(codes, [401, 401, 429]);
    assert.equal(last!.body.errcode, 'M_LIMIT_EXCEEDED');
    assert.ok(last!.body.retry_after_ms > 0);
  } finally {
    await s.stop();
  }
});

test('UIA sessions live in the database: a second server (or a restart) continues a session', async () => {
  if (process.env.AXON_TEST_DATABASE_URL) {
    // Two processes' worth of server on one PostgreSQL schema (and Redis, when configured).
    const a = await startTestServer();
    const b = await startHomeserver(a.config, { logger: pino({ level: 'silent' }) });
    try {
      const first = await call(a.baseUrl, 'POST', REGISTER, { body: { username: 'shared', password: PW } });
      assert.equal(first.status, 401);
      const done = await call(b.urls[0]!, 'POST', REGISTER, { body: { username: 'shared', password: PW, auth: { type: 'm.login.dummy', session: first.body.session } } });
      assert.equal(done.status, 200);
      // A session ended on one server is refused by the other at once, even when it cached the token.
      const token = done.body.access_token as string;
      assert.equal((await call(a.baseUrl, 'GET', '/_matrix/client/v3/account/whoami', { token })).status, 200);
      assert.equal((await call(b.urls[0]!, 'POST', '/_matrix/client/v3/logout', { token, body: {} })).status, 200);
      let status = 200;
      for (let i = 0; i < 50 && status === 200; i++) {
        status = (await call(a.baseUrl, 'GET', '/_matrix/client/v3/account/whoami', { token })).status;
        if (status === 200) await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(status, 401);
    } finally {
      await b.stop();
      await a.stop();
    }
    return;
  }
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'axon-uia-'));
  try {
    const a = await startTestServer({ dataDir: dir });
    const first = await call(a.baseUrl, 'POST', REGISTER, { body: { username: 'persisted', password: PW } });
    await a.stop();
    const b = await startTestServer({ dataDir: dir });
    try {
      const done = await call(b.baseUrl, 'POST', REGISTER, { body: { username: 'persisted', password: PW, auth: { type: 'm.login.dummy', session: first.body.session } } });
      assert.equal(done.status, 200);
    } finally {
      await b.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
