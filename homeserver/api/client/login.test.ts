// Login, sessions and tokens over HTTP against a real server.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../../testing.ts';
import { call as rawCall, loginWithPassword, registerUser } from '../../testing-users.ts';

const PW = 'correct horse battery staple';

// One server for most tests, with a clock the tests move and expiring access tokens for refresh-capable clients.
let s: TestServer;
let clock = Date.now();
before(async () => {
  s = await startTestServer({ now: () => clock, config: { auth: { access_token_lifetime_ms: 60_000 } } });
});
after(async () => {
  await s.stop();
});

const call = (method: string, path: string, opts: { token?: string; body?: unknown; rawBody?: string } = {}) => rawCall(s.baseUrl, method, path, opts);
const login = (user: string, password: string, extra: Record<string, unknown> = {}) => loginWithPassword(s.baseUrl, user, password, extra);
const whoami = (token: string) => call('GET', '/_matrix/client/v3/account/whoami', { token });

test('login with password: m.id.user identifier, full user id, legacy user field; whoami', async () => {
  await registerUser(s.baseUrl, 'alice', PW);
  const flows = await call('GET', '/_matrix/client/v3/login');
  assert.deepEqual(flows.body.flows, [{ type: 'm.login.password' }, { type: 'm.login.token', get_login_token: true }]);

  const a = await login('alice', PW, { initial_device_display_name: 'Laptop' });
  assert.equal(a.status, 200);
  assert.equal(a.body.user_id, '@alice:localhost');
  assert.match(a.body.device_id, /^[A-Z]{10}$/);
  assert.ok(a.body.access_token.length >= 43, '≥ 256 bits of randomness');
  assert.equal(a.body.refresh_token, undefined);
  assert.equal(a.body.expires_in_ms, undefined, 'clients without refresh support get non-expiring tokens');
  assert.equal((await login('@alice:localhost', PW)).status, 200);
  assert.equal((await login('ALICE', PW)).status, 200, 'localparts are matched case-insensitively');
  assert.equal((await call('POST', '/_matrix/client/v3/login', { body: { type: 'm.login.password', user: 'alice', password: PW } })).status, 200);

  const who = await whoami(a.body.access_token);
  assert.deepEqual(who.body, { user_id: '@alice:localhost', device_id: a.body.device_id, is_guest: false });
  // The deprecated query parameter works too.
  const q = await call('GET', `/_matrix/client/v3/account/whoami?access_token=${encodeURIComponent(a.body.access_token)}`);
  assert.equal(q.body.user_id, '@alice:localhost');
});

test('logging in again with an existing device_id replaces that device’s token', async () => {
  await registerUser(s.baseUrl, 'devreuse', PW);
  const a = await login('devreuse', PW, { device_id: 'MYDEVICE' });
  assert.equal(a.body.device_id, 'MYDEVICE');
  const b = await login('devreuse', PW, { device_id: 'MYDEVICE' });
  assert.equal(b.body.device_id, 'MYDEVICE');
  assert.equal((await whoami(a.body.access_token)).status, 401);
  assert.equal((await whoami(b.body.access_token)).body.device_id, 'MYDEVICE');
});

test('wrong password and unknown user: 403 M_FORBIDDEN; malformed input: 400', async () => {
  await registerUser(s.baseUrl, 'bob', PW);
  const wrong = await login('bob', 'not the password');
  assert.equal(wrong.status, 403);
  assert.equal(wrong.body.errcode, 'M_FORBIDDEN');
  const nobody = await login('nobody', PW);
  assert.equal(nobody.status, 403);
  assert.equal(nobody.body.errcode, 'M_FORBIDDEN');
  assert.equal((await login('@bob:elsewhere.example', PW)).status, 403);
  assert.equal((await login('@bob', PW)).status, 403, 'malformed user id');
  const threepid = await call('POST', '/_matrix/client/v3/login', {
    body: { type: 'm.login.password', identifier: { type: 'm.id.thirdparty', medium: 'email', address: 'bob@example.org' }, password: PW },
  });
  assert.equal(threepid.status, 403);
  const noPw = await call('POST', '/_matrix/client/v3/login', { body: { type: 'm.login.password', identifier: { type: 'm.id.user', user: 'bob' } } });
  assert.equal(noPw.status, 400);
  assert.equal(noPw.body.errcode, 'M_BAD_JSON');
  const badIdent = await call('POST', '/_matrix/client/v3/login', { body: { type: 'm.login.password', identifier: { type: 'm.id.user', user: 7 }, password: PW } });
  assert.equal(badIdent.body.errcode, 'M_BAD_JSON');
  const badType = await call('POST', '/_matrix/client/v3/login', { body: { type: 'm.login.magic' } });
  assert.equal(badType.status, 400);
  assert.equal(badType.body.errcode, 'M_UNKNOWN');
  const notJson = await call('POST', '/_matrix/client/v3/login', { rawBody: '{"type": "m.login.password",' });
  assert.equal(notJson.status, 400);
  assert.equal(notJson.body.errcode, 'M_NOT_JSON');
  const array = await call('POST', '/_matrix/client/v3/login', { rawBody: '[]' });
  assert.equal(array.status, 400);
  const big = await call('POST', '/_matrix/client/v3/login', { rawBody: JSON.stringify({ type: 'm.login.password', password: 'x'.repeat(2 * 1024 * 1024) }) });
  assert.equal(big.status, 413);
  assert.equal(big.body.errcode, 'M_TOO_LARGE');
});

test('tokens: missing → 401 M_MISSING_TOKEN, unknown → 401 M_UNKNOWN_TOKEN without soft_logout', async () => {
  const missing = await call('GET', '/_matrix/client/v3/account/whoami');
  assert.equal(missing.status, 401);
  assert.equal(missing.body.errcode, 'M_MISSING_TOKEN');
  const unknown = await whoami('axa_not-a-real-token');
  assert.equal(unknown.status, 401);
  assert.equal(unknown.body.errcode, 'M_UNKNOWN_TOKEN');
  assert.equal(unknown.body.soft_logout, undefined);
});

test('logout ends that session only; logout/all ends every session', async () => {
  const u = await registerUser(s.baseUrl, 'carol', PW);
  const second = (await login('carol', PW)).body.access_token as string;
  const third = (await login('carol', PW)).body.access_token as string;
  assert.equal((await whoami(second)).status, 200);
  assert.equal((await call('POST', '/_matrix/client/v3/logout', { token: second, body: {} })).status, 200);
  assert.equal((await whoami(second)).status, 401);
  assert.equal((await whoami(u.accessToken)).status, 200);
  assert.equal((await call('POST', '/_matrix/client/v3/logout/all', { token: third, body: {} })).status, 200);
  for (const t of [u.accessToken, third]) {
    const r = await whoami(t);
    assert.equal(r.status, 401);
    assert.equal(r.body.errcode, 'M_UNKNOWN_TOKEN');
  }
  const devices = await s.hs.db.selectFrom('devices').select('device_id').where('user_id', '=', u.userId).execute();
  assert.equal(devices.length, 0, 'logout/all removes the devices');
  assert.equal((await login('carol', PW)).status, 200, 'the password still works');
});

test('refresh tokens: expiring access token → soft_logout; refresh rotates; the old refresh token lives until the new token is used', async () => {
  await registerUser(s.baseUrl, 'erin', PW);
  const l = await login('erin', PW, { refresh_token: true });
  assert.equal(l.status, 200);
  assert.equal(l.body.expires_in_ms, 60_000);
  assert.ok(typeof l.body.refresh_token === 'string' && l.body.refresh_token !== l.body.access_token);
  assert.equal((await whoami(l.body.access_token)).status, 200);

  clock += 61_000;
  const expired = await whoami(l.body.access_token);
  assert.equal(expired.status, 401);
  assert.equal(expired.body.errcode, 'M_UNKNOWN_TOKEN');
  assert.equal(expired.body.soft_logout, true);

  const r1 = await call('POST', '/_matrix/client/v3/refresh', { body: { refresh_token: l.body.refresh_token } });
  assert.equal(r1.status, 200);
  assert.equal(r1.body.expires_in_ms, 60_000);
  assert.notEqual(r1.body.refresh_token, l.body.refresh_token);
  // The client lost the answer and retries with the old refresh token: still accepted.
  const r2 = await call('POST', '/_matrix/client/v3/refresh', { body: { refresh_token: l.body.refresh_token } });
  assert.equal(r2.status, 200);
  assert.equal((await whoami(r1.body.access_token)).status, 401, 'a newer refresh replaced r1');
  const who = await whoami(r2.body.access_token);
  assert.equal(who.status, 200);
  assert.equal(who.body.device_id, l.body.device_id, 'refreshed tokens stay on the device');
  // r2's access token has been used: the original refresh token is now revoked.
  const stale = await call('POST', '/_matrix/client/v3/refresh', { body: { refresh_token: l.body.refresh_token } });
  assert.equal(stale.status, 401);
  assert.equal(stale.body.errcode, 'M_UNKNOWN_TOKEN');
  assert.equal((await call('POST', '/_matrix/client/v3/refresh', { body: { refresh_token: r2.body.refresh_token } })).status, 200);
  assert.equal((await call('POST', '/_matrix/client/v3/refresh', { body: {} })).body.errcode, 'M_BAD_JSON');
});

test('m.login.token: /login/get_token needs UIA every time; the token is single use and expires', async () => {
  const u = await registerUser(s.baseUrl, 'frank', PW);
  const first = await call('POST', '/_matrix/client/v1/login/get_token', { token: u.accessToken, body: {} });
  assert.equal(first.status, 401);
  assert.deepEqual(first.body.flows, [{ stages: ['m.login.password'] }]);
  assert.equal(first.body.errcode, undefined);
  const auth = { type: 'm.login.password', identifier: { type: 'm.id.user', user: u.userId }, password: PW, session: first.body.session };
  const got = await call('POST', '/_matrix/client/v1/login/get_token', { token: u.accessToken, body: { auth } });
  assert.equal(got.status, 200);
  assert.equal(got.body.expires_in_ms, 120_000);
  // The finished UIA session cannot be replayed for a second token.
  const replay = await call('POST', '/_matrix/client/v1/login/get_token', { token: u.accessToken, body: { auth } });
  assert.equal(replay.status, 400);

  const viaToken = await call('POST', '/_matrix/client/v3/login', { body: { type: 'm.login.token', token: got.body.login_token } });
  assert.equal(viaToken.status, 200);
  assert.equal(viaToken.body.user_id, u.userId);
  assert.notEqual(viaToken.body.device_id, u.deviceId);
  const again = await call('POST', '/_matrix/client/v3/login', { body: { type: 'm.login.token', token: got.body.login_token } });
  assert.equal(again.status, 403);
  assert.equal(again.body.errcode, 'M_FORBIDDEN');

  const s2 = (await call('POST', '/_matrix/client/v1/login/get_token', { token: u.accessToken, body: {} })).body.session;
  const t2 = await call('POST', '/_matrix/client/v1/login/get_token', { token: u.accessToken, body: { auth: { ...auth, session: s2 } } });
  clock += 121_000;
  const late = await call('POST', '/_matrix/client/v3/login', { body: { type: 'm.login.token', token: t2.body.login_token } });
  assert.equal(late.status, 403);
  assert.equal(late.body.errcode, 'M_FORBIDDEN');
});

test('tokens are stored only as sha256 digests; passwords as argon2id', async () => {
  const u = await registerUser(s.baseUrl, 'dave', PW);
  const rows = await s.hs.db.selectFrom('sessions').selectAll().where('user_id', '=', u.userId).execute();
  assert.equal(rows.length, 1);
  assert.notEqual(rows[0]!.access_token_hash, u.accessToken);
  assert.match(rows[0]!.access_token_hash, /^[0-9a-f]{64}$/);
  const user = await s.hs.db.selectFrom('users').selectAll().where('user_id', '=', u.userId).executeTakeFirstOrThrow();
  assert.match(user.password_hash!, /^\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$/);
  assert.ok(!user.password_hash!.includes(PW));
});

test('rate limits: logins per client and sends per user trip with M_LIMIT_EXCEEDED; failed logins for one account slow down', async () => {
  const rl = await startTestServer({
    config: {
      rate_limits: {
        enabled: true,
        login: { per_second: 1, burst: 3 },
        login_failures_per_account: { per_second: 1, burst: 2 },
        registration: { per_second: 100, burst: 100 },
        message: { per_second: 0, burst: 3 },
      },
    },
  });
  try {
    await registerUser(rl.baseUrl, 'gina', PW);
    await registerUser(rl.baseUrl, 'hank', PW);
    // Sending (the "message" class): the fourth send in a row from one user is refused, and refused
    // without writing anything.
    const ivy = await registerUser(rl.baseUrl, 'ivy', PW);
    const created = await rawCall(rl.baseUrl, 'POST', '/_matrix/client/v3/createRoom', { token: ivy.accessToken, body: {} });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const roomId = encodeURIComponent(created.body.room_id);
    const sends: number[] = [];
    let refused: { status: number; body: Record<string, any> } | undefined;
    for (let i = 0; i < 6 && !refused; i++) {
      const r = await rawCall(rl.baseUrl, 'PUT', `/_matrix/client/v3/rooms/${roomId}/send/m.room.message/rl${i}`, { token: ivy.accessToken, body: { msgtype: 'm.text', body: `n${i}` } });
      if (r.status === 429) refused = r;
      else sends.push(r.status);
    }
    assert.ok(refused, 'sending never tripped the limit');
    assert.ok(sends.length <= 3 && sends.every((x) => x === 200), JSON.stringify(sends));
    assert.equal(refused.body.errcode, 'M_LIMIT_EXCEEDED');
    assert.ok(refused.body.retry_after_ms > 0);
    assert.equal((await loginWithPassword(rl.baseUrl, 'gina', 'wrong')).status, 403);
    assert.equal((await loginWithPassword(rl.baseUrl, 'gina', 'wrong')).status, 403);
    // Two failures used the account's allowance: even the right password now waits.
    const slowed = await loginWithPassword(rl.baseUrl, 'gina', PW);
    assert.equal(slowed.status, 429);
    assert.equal(slowed.body.errcode, 'M_LIMIT_EXCEEDED');
    assert.ok(slowed.body.retry_after_ms > 0 && slowed.body.retry_after_ms <= 1000);
    // The per-client login bucket (burst 3) is empty now too.
    const tripped = await loginWithPassword(rl.baseUrl, 'hank', PW);
    assert.equal(tripped.status, 429);
    assert.equal(tripped.body.errcode, 'M_LIMIT_EXCEEDED');
    assert.ok(tripped.body.retry_after_ms > 0);
    assert.ok(Number(tripped.headers.get('retry-after')) >= 1);
  } finally {
    await rl.stop();
  }
});
