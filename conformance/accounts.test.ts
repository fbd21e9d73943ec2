// Conformance journeys for accounts with matrix-js-sdk: registration in each mode, login, whoami,
// devices, password change, profiles, account data, deactivation. Every response the harness sees is
// validated against the spec's OpenAPI definitions (a mismatch fails the test with path and field).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { MatrixClient } from 'matrix-js-sdk';
import { withHarness, type Harness } from './harness.ts';
import type { Homeserver, Module } from '../homeserver/homeserver.ts';
import { createRegistrationToken } from '../homeserver/services/registration-tokens.ts';
import { registrationMac } from '../homeserver/api/admin/shared-secret-registration.ts';

const PW = 'correct horse battery staple';

interface MatrixErrorLike {
  httpStatus?: number;
  errcode?: string;
  data?: Record<string, unknown>;
}

async function rejectsWith(p: Promise<unknown>, status: number, errcode?: string): Promise<MatrixErrorLike> {
  try {
    await p;
  } catch (err) {
    const e = err as MatrixErrorLike;
    assert.equal(e.httpStatus, status, `expected HTTP ${status}, got ${e.httpStatus} ${JSON.stringify(e.data)}`);
    if (errcode) assert.equal(e.errcode ?? e.data?.errcode, errcode);
    return e;
  }
  assert.fail(`expected HTTP ${status}${errcode ? ` ${errcode}` : ''}, but the call succeeded`);
}

/** Registers through the UIA dance the way a client does: ask for flows, then complete the stage offered. */
async function registerWithSdk(h: Harness, username: string, stage: Record<string, unknown> = { type: 'm.login.dummy' }) {
  const c = h.newClient();
  const first = await rejectsWith(c.registerRequest({ username, password: PW }), 401);
  const session = first.data!.session as string;
  assert.ok(session);
  const res = await c.registerRequest({ username, password: PW, auth: { ...stage, session } as never, initial_device_display_name: 'first device' });
  assert.ok(res.access_token && res.device_id);
  return { flows: first.data!.flows as Array<{ stages: string[] }>, res, client: h.newClient(res.user_id, res.access_token, res.device_id) };
}

async function loginClient(h: Harness, user: string, password = PW, extra: Record<string, unknown> = {}): Promise<MatrixClient> {
  const anon = h.newClient();
  const r = await anon.loginRequest({ type: 'm.login.password', identifier: { type: 'm.id.user', user }, password, ...extra } as never);
  return h.newClient(r.user_id, r.access_token, r.device_id);
}

const passwordAuth = (userId: string, session: string, password = PW) => ({
  type: 'm.login.password',
  identifier: { type: 'm.id.user', user: userId },
  password,
  session,
});

test('open registration, login, whoami, devices list and rename, second device deleted ends its token', async () => {
  await withHarness(async (h) => {
    const anon = h.newClient();
    assert.equal(await anon.isUsernameAvailable('alice'), true);
    const { flows, res, client: alice } = await registerWithSdk(h, 'alice');
    assert.deepEqual(flows, [{ stages: ['m.login.dummy'] }]);
    assert.equal(res.user_id, `@alice:${h.serverName}`);
    assert.equal(await anon.isUsernameAvailable('alice'), false);

    const who = await alice.whoami();
    assert.equal(who.user_id, res.user_id);
    assert.equal(who.device_id, res.device_id);
    assert.equal(who.is_guest, false);

    const { devices } = await alice.getDevices();
    assert.deepEqual(devices.map((d) => [d.device_id, d.display_name]), [[res.device_id, 'first device']]);
    await alice.setDeviceDetails(res.device_id!, { display_name: 'Renamed laptop' });
    assert.equal((await alice.getDevice(res.device_id!)).display_name, 'Renamed laptop');

    // A second device logs in; the first deletes it through UIA with the password.
    const phone = await loginClient(h, 'alice', PW, { initial_device_display_name: 'Phone' });
    const phoneId = phone.getDeviceId()!;
    assert.equal((await alice.getDevices()).devices.length, 2);
    const uia = await rejectsWith(alice.deleteDevice(phoneId), 401);
    assert.deepEqual(uia.data!.flows, [{ stages: ['m.login.password'] }]);
    await alice.deleteDevice(phoneId, passwordAuth(res.user_id, uia.data!.session as string) as never);
    await rejectsWith(phone.whoami(), 401, 'M_UNKNOWN_TOKEN');
    assert.deepEqual((await alice.getDevices()).devices.map((d) => d.device_id), [res.device_id]);

    // Capabilities, 3PIDs, versions of the journey's endpoints.
    const caps = await alice.getCapabilities();
    assert.equal(caps['m.change_password']?.enabled, true);
    assert.equal(caps['m.room_versions']?.default, '12');
    assert.equal(caps['m.room_versions']?.available['12'], 'stable');
    assert.deepEqual((await alice.getThreePids()).threepids, []);
  });
});

/** The harness hides the server object; a test-only module captures it (to create registration tokens). */
function captureServer(): { module: Module; hs: Homeserver | null } {
  const cap: { module: Module; hs: Homeserver | null } = { hs: null, module: { name: 'capture', init: (hs) => void (cap.hs = hs) } };
  return cap;
}

test('registration closed: M_FORBIDDEN; registration with a token: flows, validity, uses and expiry', async () => {
  await withHarness(
    async (h) => {
      const c = h.newClient();
      await rejectsWith(c.registerRequest({ username: 'nobody', password: PW }), 403, 'M_FORBIDDEN');
    },
    { server: { config: { registration: { mode: 'closed' } } } },
  );

  const cap = captureServer();
  await withHarness(
    async (h) => {
      const validity = async (token: string) => {
        const r = await h.fetch(`${h.baseUrl}/_matrix/client/v1/register/m.login.registration_token/validity?token=${encodeURIComponent(token)}`);
        assert.equal(r.status, 200);
        return ((await r.json()) as { valid: boolean }).valid;
      };
      assert.equal(await validity('nope'), false);
      const db = cap.hs!.db;
      await createRegistrationToken(db, Date.now(), { token: 'once-only', usesAllowed: 1 });
      await createRegistrationToken(db, Date.now(), { token: 'stale', expiryTime: Date.now() - 1000 });
      assert.equal(await validity('once-only'), true);
      assert.equal(await validity('stale'), false);

      const { flows, res } = await registerWithSdk(h, 'bob', { type: 'm.login.registration_token', token: 'once-only' });
      assert.deepEqual(flows, [{ stages: ['m.login.registration_token'] }]);
      assert.equal(res.user_id, `@bob:${h.serverName}`);
      assert.equal(await validity('once-only'), false);

      // Used up, then expired: the stage fails with a 401 that keeps the session and flows.
      const c = h.newClient();
      for (const token of ['once-only', 'stale']) {
        const first = await rejectsWith(c.registerRequest({ username: 'carol', password: PW }), 401);
        const e = await rejectsWith(
          c.registerRequest({ username: 'carol', password: PW, auth: { type: 'm.login.registration_token', token, session: first.data!.session } as never }),
          401,
          'M_FORBIDDEN',
        );
        assert.deepEqual(e.data!.flows, [{ stages: ['m.login.registration_token'] }]);
      }
    },
    { server: { config: { registration: { mode: 'token' } }, extraModules: [cap.module] } },
  );
});


test('guest registration when allowed; Synapse shared-secret registration', async () => {
  await withHarness(
    async (h) => {
      const anon = h.newClient();
      const guest = await anon.registerGuest({ body: { initial_device_display_name: 'Guest tab' } });
      const g = h.newClient(guest.user_id, guest.access_token, guest.device_id);
      const who = await g.whoami();
      assert.equal(who.is_guest, true);
      // Guests may not change passwords or account data.
      await rejectsWith(g.setAccountDataRaw('m.direct' as never, {}), 403, 'M_GUEST_ACCESS_FORBIDDEN');

      const nonceRes = await h.fetch(`${h.baseUrl}/_synapse/admin/v1/register`);
      const { nonce } = (await nonceRes.json()) as { nonce: string };
      const mac = registrationMac('s3cret', nonce, 'admin', PW, true);
      const reg = await fetch(`${h.baseUrl}/_synapse/admin/v1/register`, {
        method: 'POST',
        body: JSON.stringify({ nonce, username: 'admin', password: PW, admin: true, mac }),
      });
      assert.equal(reg.status, 200);
      const body = (await reg.json()) as { user_id: string; access_token: string };
      assert.equal(body.user_id, `@admin:${h.serverName}`);
      const admin = h.newClient(body.user_id, body.access_token);
      assert.equal((await admin.whoami()).user_id, body.user_id);
    },
    { server: { config: { registration: { mode: 'closed', allow_guests: true, shared_secret: 's3cret' } } } },
  );
});

test('password change: the old password fails, other sessions end; profiles read from a second account; account data survives a new login', async () => {
  await withHarness(async (h) => {
    const { res, client: alice } = await registerWithSdk(h, 'alice');
    const other = await loginClient(h, 'alice');
    const first = await rejectsWith(alice.setPassword({} as never, 'a much better password'), 401);
    await alice.setPassword(passwordAuth(res.user_id, first.data!.session as string) as never, 'a much better password');
    await rejectsWith(loginClient(h, 'alice', PW), 403, 'M_FORBIDDEN');
    await rejectsWith(other.whoami(), 401, 'M_UNKNOWN_TOKEN');
    assert.equal((await alice.whoami()).user_id, res.user_id);
    const again = await loginClient(h, 'alice', 'a much better password');

    // Profile: set by alice, read by bob.
    await again.setDisplayName('Alice Liddell');
    await again.setAvatarUrl('mxc://localhost/abcdef');
    await again.setExtendedProfileProperty('m.tz', 'Europe/London');
    await again.setExtendedProfileProperty('org.example.pronouns', { en: 'she/her' });
    const { client: bob } = await registerWithSdk(h, 'bob');
    const info = await bob.getProfileInfo(res.user_id);
    assert.equal(info.displayname, 'Alice Liddell');
    assert.equal(info.avatar_url, 'mxc://localhost/abcdef');
    assert.equal((await bob.getProfileInfo(res.user_id, 'displayname')).displayname, 'Alice Liddell');
    const ext = await bob.getExtendedProfile(res.user_id);
    assert.equal(ext['m.tz'], 'Europe/London');
    assert.deepEqual(ext['org.example.pronouns'], { en: 'she/her' });
    await again.deleteExtendedProfileProperty('org.example.pronouns');
    assert.equal((await bob.getExtendedProfile(res.user_id))['org.example.pronouns'], undefined);
    await rejectsWith(bob.getProfileInfo(`@nobody:${h.serverName}`), 404, 'M_NOT_FOUND');

    // Account data, global and per room, then read again from a fresh login.
    await again.setAccountDataRaw('org.example.settings' as never, { theme: 'dark' } as never);
    await again.setAccountDataRaw('m.direct' as never, { [`@bob:${h.serverName}`]: ['!dm:localhost'] } as never);
    await again.setRoomAccountData('!room:localhost', 'org.example.room' as never, { pinned: true } as never);
    await again.setRoomTag('!room:localhost', 'm.favourite', { order: 0.25 });
    const later = await loginClient(h, 'alice', 'a much better password');
    assert.deepEqual(await later.getAccountDataFromServer('org.example.settings' as never), { theme: 'dark' });
    assert.deepEqual(await later.getAccountDataFromServer('m.direct' as never), { [`@bob:${h.serverName}`]: ['!dm:localhost'] });
    assert.deepEqual((await later.getRoomTags('!room:localhost')).tags, { 'm.favourite': { order: 0.25 } });
    const roomData = await h.fetch(`${h.baseUrl}/_matrix/client/v3/user/${encodeURIComponent(res.user_id)}/rooms/${encodeURIComponent('!room:localhost')}/account_data/org.example.room`, {
      headers: { authorization: `Bearer ${later.getAccessToken()}` },
    });
    assert.deepEqual(await roomData.json(), { pinned: true });
  });
});

test('deactivation: login then fails with M_FORBIDDEN and the localpart stays taken', async () => {
  await withHarness(async (h) => {
    const { res, client: dave } = await registerWithSdk(h, 'dave');
    const first = await rejectsWith(dave.deactivateAccount(), 401);
    const out = await dave.deactivateAccount(passwordAuth(res.user_id, first.data!.session as string) as never, true);
    assert.equal(out.id_server_unbind_result, 'no-support');
    await rejectsWith(dave.whoami(), 401, 'M_UNKNOWN_TOKEN');
    await rejectsWith(loginClient(h, 'dave'), 403, 'M_FORBIDDEN');
    const anon = h.newClient();
    assert.equal(await anon.isUsernameAvailable('dave'), false);
    const avail = await h.fetch(`${h.baseUrl}/_matrix/client/v3/register/available?username=dave`);
    assert.equal(avail.status, 400);
    assert.equal(((await avail.json()) as { errcode: string }).errcode, 'M_USER_IN_USE');
    await rejectsWith(anon.registerRequest({ username: 'dave', password: PW }), 400, 'M_USER_IN_USE');
  });
});
