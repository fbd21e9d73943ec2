// Devices, password change, deactivation, profiles, account data, tags, filters and capabilities over HTTP.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../../testing.ts';
import { call as rawCall, loginWithPassword, registerUser, type RegisteredUser } from '../../testing-users.ts';
import type { ProfileChange } from '../../services/profiles.ts';

const PW = 'correct horse battery staple';
let s: TestServer;
before(async () => {
  s = await startTestServer();
});
after(async () => {
  await s.stop();
});

const call = (method: string, path: string, opts: { token?: string; body?: unknown; rawBody?: string } = {}) => rawCall(s.baseUrl, method, path, opts);
const enc = encodeURIComponent;
const pwAuth = (u: RegisteredUser, session: string, password = PW) => ({ type: 'm.login.password', identifier: { type: 'm.id.user', user: u.userId }, password, session });

/** Runs a UIA-protected call: first without auth (expects 401 + session), then with the password. */
async function withPassword(u: RegisteredUser, method: string, path: string, body: Record<string, unknown>, password = PW) {
  const first = await call(method, path, { token: u.accessToken, body });
  assert.equal(first.status, 401, JSON.stringify(first.body));
  assert.deepEqual(first.body.flows, [{ stages: ['m.login.password'] }]);
  return call(method, path, { token: u.accessToken, body: { ...body, auth: pwAuth(u, first.body.session, password) } });
}

test('devices: list, get, rename, 404 for unknown, delete with UIA (wrong password keeps the session), bulk delete', async () => {
  const u = await registerUser(s.baseUrl, 'dev-owner', PW);
  const other = await loginWithPassword(s.baseUrl, 'dev-owner', PW, { initial_device_display_name: 'Tablet' });
  const third = await loginWithPassword(s.baseUrl, 'dev-owner', PW);
  const list = await call('GET', '/_matrix/client/v3/devices', { token: u.accessToken });
  assert.deepEqual(new Set(list.body.devices.map((d: { device_id: string }) => d.device_id)), new Set([u.deviceId, other.body.device_id, third.body.device_id]));
  assert.ok(list.body.devices.every((d: { last_seen_ts?: number }) => typeof d.last_seen_ts === 'number'));

  assert.equal((await call('GET', '/_matrix/client/v3/devices/NOPE', { token: u.accessToken })).body.errcode, 'M_NOT_FOUND');
  assert.equal((await call('PUT', '/_matrix/client/v3/devices/NOPE', { token: u.accessToken, body: { display_name: 'x' } })).status, 404);
  assert.equal((await call('PUT', `/_matrix/client/v3/devices/${u.deviceId}`, { token: u.accessToken, body: { display_name: 7 } })).body.errcode, 'M_BAD_JSON');
  assert.equal((await call('PUT', `/_matrix/client/v3/devices/${u.deviceId}`, { token: u.accessToken, body: { display_name: 'Desk' } })).status, 200);
  assert.equal((await call('GET', `/_matrix/client/v3/devices/${u.deviceId}`, { token: u.accessToken })).body.display_name, 'Desk');
  // Another user cannot see or touch these devices.
  const stranger = await registerUser(s.baseUrl, 'dev-stranger', PW);
  assert.equal((await call('GET', `/_matrix/client/v3/devices/${u.deviceId}`, { token: stranger.accessToken })).status, 404);

  // Wrong password: 401 with M_FORBIDDEN, same session, nothing deleted.
  const path = `/_matrix/client/v3/devices/${other.body.device_id}`;
  const first = await call('DELETE', path, { token: u.accessToken, body: {} });
  const wrong = await call('DELETE', path, { token: u.accessToken, body: { auth: pwAuth(u, first.body.session, 'bad password') } });
  assert.equal(wrong.status, 401);
  assert.equal(wrong.body.errcode, 'M_FORBIDDEN');
  assert.equal(wrong.body.session, first.body.session);
  assert.equal((await call('GET', '/_matrix/client/v3/account/whoami', { token: other.body.access_token })).status, 200);
  // Someone else's password does not count either.
  const foreign = await call('DELETE', path, { token: u.accessToken, body: { auth: pwAuth(stranger, first.body.session) } });
  assert.equal(foreign.status, 401);
  const ok = await call('DELETE', path, { token: u.accessToken, body: { auth: pwAuth(u, first.body.session) } });
  assert.equal(ok.status, 200);
  assert.equal((await call('GET', '/_matrix/client/v3/account/whoami', { token: other.body.access_token })).body.errcode, 'M_UNKNOWN_TOKEN');
  // A UIA session belongs to one endpoint: it cannot authorise a different request.
  const s2 = (await call('POST', '/_matrix/client/v3/delete_devices', { token: u.accessToken, body: { devices: [third.body.device_id] } })).body.session;
  const crossed = await call('POST', '/_matrix/client/v3/account/password', { token: u.accessToken, body: { new_password: 'another long password', auth: pwAuth(u, s2) } });
  assert.equal(crossed.status, 403);

  const bulk = await call('POST', '/_matrix/client/v3/delete_devices', { token: u.accessToken, body: { devices: [third.body.device_id, 'UNKNOWNDEV'], auth: pwAuth(u, s2) } });
  assert.equal(bulk.status, 200);
  assert.equal((await call('GET', '/_matrix/client/v3/account/whoami', { token: third.body.access_token })).status, 401);
  assert.deepEqual((await call('GET', '/_matrix/client/v3/devices', { token: u.accessToken })).body.devices.map((d: { device_id: string }) => d.device_id), [u.deviceId]);
  assert.equal((await call('POST', '/_matrix/client/v3/delete_devices', { token: u.accessToken, body: { devices: 'x' } })).body.errcode, 'M_BAD_JSON');
});

test('password change: UIA, old password fails, other devices logged out unless logout_devices is false, weak passwords refused', async () => {
  const u = await registerUser(s.baseUrl, 'pw-changer', PW);
  const other = (await loginWithPassword(s.baseUrl, 'pw-changer', PW)).body.access_token as string;
  const weak = await call('POST', '/_matrix/client/v3/account/password', { token: u.accessToken, body: { new_password: 'short' } });
  assert.equal(weak.body.errcode, 'M_WEAK_PASSWORD');
  const r = await withPassword(u, 'POST', '/_matrix/client/v3/account/password', { new_password: 'new password one' });
  assert.equal(r.status, 200);
  assert.equal((await loginWithPassword(s.baseUrl, 'pw-changer', PW)).body.errcode, 'M_FORBIDDEN');
  assert.equal((await loginWithPassword(s.baseUrl, 'pw-changer', 'new password one')).status, 200);
  assert.equal((await call('GET', '/_matrix/client/v3/account/whoami', { token: other })).status, 401);
  assert.equal((await call('GET', '/_matrix/client/v3/account/whoami', { token: u.accessToken })).status, 200, 'the requesting session stays');

  const kept = (await loginWithPassword(s.baseUrl, 'pw-changer', 'new password one')).body.access_token as string;
  const r2 = await withPassword(u, 'POST', '/_matrix/client/v3/account/password', { new_password: 'new password two', logout_devices: false }, 'new password one');
  assert.equal(r2.status, 200);
  assert.equal((await call('GET', '/_matrix/client/v3/account/whoami', { token: kept })).status, 200);
});

test('deactivation: sessions end, the erase flag is recorded, login is M_FORBIDDEN, the localpart stays taken', async () => {
  const u = await registerUser(s.baseUrl, 'leaver', PW);
  const deactivated: Array<[string, boolean]> = [];
  s.hs.services.accounts.deactivationListeners.push((userId, erase) => void deactivated.push([userId, erase]));
  const r = await withPassword(u, 'POST', '/_matrix/client/v3/account/deactivate', { erase: true });
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, { id_server_unbind_result: 'no-support' });
  assert.deepEqual(deactivated, [[u.userId, true]]);
  const row = await s.hs.db.selectFrom('users').selectAll().where('user_id', '=', u.userId).executeTakeFirstOrThrow();
  assert.equal(row.erased, true);
  assert.ok(row.deactivated_ts);
  assert.equal((await call('GET', '/_matrix/client/v3/account/whoami', { token: u.accessToken })).status, 401);
  const login = await loginWithPassword(s.baseUrl, 'leaver', PW);
  assert.equal(login.status, 403);
  assert.equal(login.body.errcode, 'M_FORBIDDEN');
  assert.equal((await call('GET', '/_matrix/client/v3/register/available?username=leaver')).body.errcode, 'M_USER_IN_USE');
  assert.equal((await call('GET', '/_matrix/client/v3/account/3pid', { token: (await registerUser(s.baseUrl, 'stayer', PW)).accessToken })).body.threepids.length, 0);
});

test('profiles: displayname, avatar_url, m.tz and custom keys; limits; only the owner writes; listeners hear changes', async () => {
  const u = await registerUser(s.baseUrl, 'profiled', PW);
  const other = await registerUser(s.baseUrl, 'profile-reader', PW);
  const heard: ProfileChange[] = [];
  s.hs.services.accounts.profileListeners.push((c) => void heard.push(c));
  const base = `/_matrix/client/v3/profile/${enc(u.userId)}`;
  assert.equal((await call('PUT', `${base}/displayname`, { token: u.accessToken, body: { displayname: 'Pro Filed' } })).status, 200);
  assert.equal((await call('PUT', `${base}/avatar_url`, { token: u.accessToken, body: { avatar_url: 'mxc://localhost/xyz' } })).status, 200);
  assert.equal((await call('PUT', `${base}/m.tz`, { token: u.accessToken, body: { 'm.tz': 'Europe/Paris' } })).status, 200);
  assert.equal((await call('PUT', `${base}/com.example.status`, { token: u.accessToken, body: { 'com.example.status': { busy: true } } })).status, 200);
  assert.deepEqual((await call('GET', base, { token: other.accessToken })).body, {
    displayname: 'Pro Filed',
    avatar_url: 'mxc://localhost/xyz',
    'm.tz': 'Europe/Paris',
    'com.example.status': { busy: true },
  });
  assert.deepEqual((await call('GET', `${base}/displayname`)).body, { displayname: 'Pro Filed' });
  assert.deepEqual(heard.map((c) => [c.userId, c.field, c.value]), [
    [u.userId, 'displayname', 'Pro Filed'],
    [u.userId, 'avatar_url', 'mxc://localhost/xyz'],
    [u.userId, 'm.tz', 'Europe/Paris'],
    [u.userId, 'com.example.status', { busy: true }],
  ]);
  assert.equal((await call('DELETE', `${base}/com.example.status`, { token: u.accessToken })).status, 200);
  assert.equal((await call('GET', `${base}/com.example.status`)).status, 404);
  assert.equal(heard.at(-1)!.value, undefined);

  const bad: Array<[string, string, unknown, number, string]> = [
    ['PUT', `${base}/displayname`, { displayname: 5 }, 400, 'M_BAD_JSON'],
    ['PUT', `${base}/avatar_url`, { avatar_url: 'https://example.org/a.png' }, 400, 'M_BAD_JSON'],
    ['PUT', `${base}/displayname`, { other: 'x' }, 400, 'M_MISSING_PARAM'],
    ['PUT', `${base}/Not_A_Key`, { Not_A_Key: 1 }, 400, 'M_INVALID_PARAM'],
    ['PUT', `${base}/${'a.'.repeat(128)}b`, { [`${'a.'.repeat(128)}b`]: 1 }, 400, 'M_KEY_TOO_LARGE'],
    ['PUT', `${base}/org.example.big`, { 'org.example.big': 'x'.repeat(65 * 1024) }, 400, 'M_PROFILE_TOO_LARGE'],
    ['PUT', `/_matrix/client/v3/profile/${enc(other.userId)}/displayname`, { displayname: 'Hijack' }, 403, 'M_FORBIDDEN'],
    ['DELETE', `/_matrix/client/v3/profile/${enc(other.userId)}/displayname`, undefined, 403, 'M_FORBIDDEN'],
  ];
  for (const [method, path, body, status, errcode] of bad) {
    const r = await call(method, path, { token: u.accessToken, ...(body !== undefined ? { body } : {}) });
    assert.equal(r.status, status, `${path} ${JSON.stringify(r.body)}`);
    assert.equal(r.body.errcode, errcode, path);
  }
  // Many fields that each fit but together exceed 64 KiB.
  for (let i = 0; i < 3; i++) assert.equal((await call('PUT', `${base}/org.example.f${i}`, { token: u.accessToken, body: { [`org.example.f${i}`]: 'y'.repeat(20_000) } })).status, 200);
  assert.equal((await call('PUT', `${base}/org.example.f3`, { token: u.accessToken, body: { 'org.example.f3': 'y'.repeat(20_000) } })).body.errcode, 'M_PROFILE_TOO_LARGE');
  assert.equal((await call('PUT', `${base}/displayname`, { body: { displayname: 'anon' } })).status, 401);
  assert.equal((await call('GET', '/_matrix/client/v3/profile/@nobody:localhost')).body.errcode, 'M_NOT_FOUND');
  assert.equal((await call('GET', '/_matrix/client/v3/profile/not-a-user-id')).status, 400);
});

test('account data: global and per room, server-managed types refused, other users refused, stream positions and bus notifications', async () => {
  const u = await registerUser(s.baseUrl, 'datum', PW);
  const other = await registerUser(s.baseUrl, 'datum-other', PW);
  const base = `/_matrix/client/v3/user/${enc(u.userId)}`;
  const accounts = s.hs.services.accounts;
  const notes: unknown[] = [];
  const unsub = s.hs.bus.subscribe(`user:${u.userId}`, (m) => void notes.push(m));
  const p0 = await accounts.accountDataPosition();

  assert.equal((await call('GET', `${base}/account_data/org.example.x`, { token: u.accessToken })).body.errcode, 'M_NOT_FOUND');
  assert.equal((await call('PUT', `${base}/account_data/org.example.x`, { token: u.accessToken, body: { a: 1 } })).status, 200);
  assert.deepEqual((await call('GET', `${base}/account_data/org.example.x`, { token: u.accessToken })).body, { a: 1 });
  assert.equal((await call('PUT', `${base}/rooms/${enc('!r:localhost')}/account_data/org.example.y`, { token: u.accessToken, body: { b: 2 } })).status, 200);
  assert.deepEqual((await call('GET', `${base}/rooms/${enc('!r:localhost')}/account_data/org.example.y`, { token: u.accessToken })).body, { b: 2 });
  assert.equal((await call('GET', `${base}/rooms/${enc('!other:localhost')}/account_data/org.example.y`, { token: u.accessToken })).status, 404);

  const since = await accounts.getAccountDataSince(u.userId, p0);
  assert.deepEqual(since.map((c) => [c.roomId, c.type, c.content]), [
    [null, 'org.example.x', { a: 1 }],
    ['!r:localhost', 'org.example.y', { b: 2 }],
  ]);
  assert.ok(since[1]!.streamPosition > since[0]!.streamPosition);
  assert.equal(await accounts.accountDataPosition(), since[1]!.streamPosition);
  assert.deepEqual(await accounts.getAccountDataSince(u.userId, since[1]!.streamPosition), []);
  assert.deepEqual(notes, [
    { stream: 'account_data', position: since[0]!.streamPosition },
    { stream: 'account_data', position: since[1]!.streamPosition },
  ]);
  unsub();

  const refused: Array<[string, unknown, number, string]> = [
    [`${base}/account_data/m.push_rules`, {}, 405, 'M_BAD_JSON'],
    [`${base}/rooms/${enc('!r:localhost')}/account_data/m.fully_read`, { event_id: '$x' }, 405, 'M_BAD_JSON'],
    [`/_matrix/client/v3/user/${enc(other.userId)}/account_data/org.example.x`, {}, 403, 'M_FORBIDDEN'],
    [`${base}/rooms/not-a-room/account_data/org.example.y`, {}, 400, 'M_INVALID_PARAM'],
    [`${base}/account_data/m.ignored_user_list`, { ignored_users: ['@x:y'] }, 400, 'M_BAD_JSON'],
    [`${base}/account_data/m.ignored_user_list`, { ignored_users: { [u.userId]: {} } }, 400, 'M_BAD_JSON'],
    [`${base}/account_data/m.direct`, { '@x:localhost': '!notalist:localhost' }, 400, 'M_BAD_JSON'],
  ];
  for (const [path, body, status, errcode] of refused) {
    const r = await call('PUT', path, { token: u.accessToken, body });
    assert.equal(r.status, status, `${path} ${JSON.stringify(r.body)}`);
    assert.equal(r.body.errcode, errcode, path);
  }
  assert.equal((await call('PUT', `${base}/account_data/org.example.x`, { token: u.accessToken, rawBody: '[1]' })).status, 400);
  assert.equal((await call('PUT', `${base}/account_data/org.example.x`, { token: u.accessToken, rawBody: 'nope' })).body.errcode, 'M_NOT_JSON');
  assert.equal((await call('GET', `/_matrix/client/v3/user/${enc(other.userId)}/account_data/org.example.x`, { token: u.accessToken })).status, 403);

  // m.ignored_user_list is stored and answers isIgnoring.
  assert.equal(await accounts.isIgnoring(u.userId, other.userId), false);
  assert.equal((await call('PUT', `${base}/account_data/m.ignored_user_list`, { token: u.accessToken, body: { ignored_users: { [other.userId]: {} } } })).status, 200);
  assert.equal(await accounts.isIgnoring(u.userId, other.userId), true);
  assert.equal(await accounts.isIgnoring(other.userId, u.userId), false);
});

test('tags: add, list, replace, remove (stored as m.tag room account data)', async () => {
  const u = await registerUser(s.baseUrl, 'tagger', PW);
  const room = enc('!tagged:localhost');
  const base = `/_matrix/client/v3/user/${enc(u.userId)}/rooms/${room}/tags`;
  assert.deepEqual((await call('GET', base, { token: u.accessToken })).body, { tags: {} });
  assert.equal((await call('PUT', `${base}/m.favourite`, { token: u.accessToken, body: { order: 0.5 } })).status, 200);
  assert.equal((await call('PUT', `${base}/u.work`, { token: u.accessToken, body: {} })).status, 200);
  assert.equal((await call('PUT', `${base}/m.favourite`, { token: u.accessToken, body: { order: 0.1 } })).status, 200);
  assert.deepEqual((await call('GET', base, { token: u.accessToken })).body, { tags: { 'm.favourite': { order: 0.1 }, 'u.work': {} } });
  assert.equal((await call('DELETE', `${base}/u.work`, { token: u.accessToken })).status, 200);
  assert.deepEqual((await call('GET', base, { token: u.accessToken })).body, { tags: { 'm.favourite': { order: 0.1 } } });
  const mtag = await call('GET', `/_matrix/client/v3/user/${enc(u.userId)}/rooms/${room}/account_data/m.tag`, { token: u.accessToken });
  assert.deepEqual(mtag.body, { tags: { 'm.favourite': { order: 0.1 } } });
  assert.equal((await call('PUT', `${base}/m.lowpriority`, { token: u.accessToken, body: { order: 'first' } })).body.errcode, 'M_BAD_JSON');
});

test('filters: create and read back; invalid filters, other users and unknown ids refused', async () => {
  const u = await registerUser(s.baseUrl, 'filterer', PW);
  const other = await registerUser(s.baseUrl, 'filter-other', PW);
  const base = `/_matrix/client/v3/user/${enc(u.userId)}/filter`;
  const filter = { room: { timeline: { limit: 10, types: ['m.room.message'] }, state: { lazy_load_members: true } }, event_fields: ['type', 'content.body'] };
  const c1 = await call('POST', base, { token: u.accessToken, body: filter });
  assert.equal(c1.status, 200);
  assert.equal(typeof c1.body.filter_id, 'string');
  const c2 = await call('POST', base, { token: u.accessToken, body: {} });
  assert.notEqual(c2.body.filter_id, c1.body.filter_id);
  assert.deepEqual((await call('GET', `${base}/${c1.body.filter_id}`, { token: u.accessToken })).body, filter);
  assert.equal((await call('GET', `${base}/999`, { token: u.accessToken })).body.errcode, 'M_NOT_FOUND');
  assert.equal((await call('GET', `${base}/abc`, { token: u.accessToken })).status, 404);
  assert.equal((await call('GET', `${base}/${c1.body.filter_id}`, { token: other.accessToken })).status, 403);
  assert.equal((await call('POST', base, { token: other.accessToken, body: {} })).status, 403);
  for (const bad of [{ room: { timeline: { limit: -1 } } }, { event_format: 'xml' }, { presence: { types: 'm.presence' } }, { room: { include_leave: 'yes' } }, { event_fields: [1] }]) {
    const r = await call('POST', base, { token: u.accessToken, body: bad });
    assert.equal(r.status, 400, JSON.stringify(bad));
    assert.equal(r.body.errcode, 'M_BAD_JSON');
  }
  assert.deepEqual(await s.hs.services.accounts.accountData.getFilter(u.userId, c1.body.filter_id), filter);
});

test('capabilities: password change, room versions with stability and default, profile fields, 3pid changes off', async () => {
  const u = await registerUser(s.baseUrl, 'capable', PW);
  const r = await call('GET', '/_matrix/client/v3/capabilities', { token: u.accessToken });
  assert.equal(r.status, 200);
  const c = r.body.capabilities;
  assert.deepEqual(c['m.change_password'], { enabled: true });
  assert.deepEqual(c['m.set_displayname'], { enabled: true });
  assert.deepEqual(c['m.set_avatar_url'], { enabled: true });
  assert.deepEqual(c['m.3pid_changes'], { enabled: false });
  assert.deepEqual(c['m.get_login_token'], { enabled: true });
  assert.deepEqual(c['m.profile_fields'], { enabled: true });
  assert.equal(c['m.room_versions'].default, '12');
  assert.equal(c['m.room_versions'].available['1'], 'stable');
  assert.equal(c['m.room_versions'].available['12'], 'stable');
  assert.equal((await call('GET', '/_matrix/client/v3/capabilities')).status, 401);
});
