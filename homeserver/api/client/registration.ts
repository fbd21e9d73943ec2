// Account registration (client-server-api "Account registration"): POST /register through
// user-interactive auth (open: m.login.dummy; token: m.login.registration_token; closed: 403),
// guest accounts, /register/available and the registration token validity check.
import { randomBytes } from 'node:crypto';
import { isValidLocalpartForRegistration } from '../../../spec/identifiers.ts';
import { rateLimit, type Homeserver } from '../../homeserver.ts';
import { clientPaths, type Api, type ApiContext } from '../../http/api.ts';
import { readJsonObject } from '../../http/body.ts';
import { MatrixError, badJson, forbidden, invalidParam, missingParam } from '../../errors.ts';
import { optionalBool, optionalString, sessionResponse } from './helpers.ts';
import { completeRegistrationToken, isRegistrationTokenUsable, isValidRegistrationToken } from '../../services/registration-tokens.ts';
import type { UiaFlow } from '../../services/uia.ts';

const invalidUsername = (msg = 'User ID may only contain a-z, 0-9, and . _ = - / +') => new MatrixError(400, 'M_INVALID_USERNAME', msg);

/** Maps a requested username to a localpart (lower-cased) or throws the spec's error; checks reserved names and availability. */
export async function checkUsername(hs: Homeserver, username: string): Promise<string> {
  const localpart = username.toLowerCase();
  if (!isValidLocalpartForRegistration(localpart, hs.serverName)) throw invalidUsername();
  if (hs.config.registration.reserved_localparts.includes(localpart)) throw new MatrixError(400, 'M_EXCLUSIVE', 'This user ID is reserved');
  if (!(await hs.services.accounts.isLocalpartAvailable(localpart))) throw new MatrixError(400, 'M_USER_IN_USE', 'User ID already taken');
  return localpart;
}

export function checkNewPassword(hs: Homeserver, password: unknown): string {
  if (typeof password !== 'string') throw badJson('password must be a string');
  if (password.length < hs.config.auth.password_min_length) {
    throw new MatrixError(400, 'M_WEAK_PASSWORD', `Password must be at least ${hs.config.auth.password_min_length} characters`);
  }
  if (Buffer.byteLength(password) > 512) throw new MatrixError(400, 'M_WEAK_PASSWORD', 'Password too long');
  return password;
}

async function generateLocalpart(hs: Homeserver): Promise<string> {
  for (;;) {
    // 10 lower-case base32 characters (~50 bits); collisions are retried.
    const bytes = randomBytes(10);
    let s = '';
    for (const b of bytes) s += 'abcdefghijklmnopqrstuvwxyz234567'[b & 31];
    if (await hs.services.accounts.isLocalpartAvailable(s)) return s;
  }
}

export function registrationFlows(hs: Homeserver): UiaFlow[] {
  return hs.config.registration.mode === 'token' ? [{ stages: ['m.login.registration_token'] }] : [{ stages: ['m.login.dummy'] }];
}

export function registrationRoutes(api: Api, hs: Homeserver): void {
  const accounts = () => hs.services.accounts;

  api.post('client', clientPaths('/register'), rateLimit(hs, 'registration'), async (ctx: ApiContext) => {
    const body = await readJsonObject(ctx);
    const kind = ctx.query.kind ?? 'user';
    if (kind !== 'user' && kind !== 'guest') throw invalidParam('kind must be user or guest');
    const deviceName = optionalString(body, 'initial_device_display_name');

    if (kind === 'guest') {
      if (!hs.config.registration.allow_guests) throw forbidden('Guest access is disabled');
      // Everything but initial_device_display_name is ignored for guests.
      const localpart = await generateLocalpart(hs);
      const userId = await accounts().createUser({ localpart, isGuest: true, displayname: null });
      const s = await accounts().createSession(userId, { initialDisplayName: deviceName });
      ctx.body = sessionResponse(hs, s);
      return;
    }

    const mode = hs.config.registration.mode;
    if (mode === 'closed') throw forbidden('Registration is disabled');
    const inhibitLogin = optionalBool(body, 'inhibit_login');
    const wantsRefresh = optionalBool(body, 'refresh_token');
    const deviceId = optionalString(body, 'device_id', 255);
    // Username and password problems are reported before user-interactive auth (the spec requires it).
    let localpart: string | null = null;
    if (body.username !== undefined && body.username !== null) {
      if (typeof body.username !== 'string') throw badJson('username must be a string');
      localpart = await checkUsername(hs, body.username);
    }
    if (body.password !== undefined) checkNewPassword(hs, body.password);

    const uia = hs.services.uia;
    const auth = await uia.authenticate(ctx, body, { flows: registrationFlows(hs), userId: null });
    if (typeof body.password !== 'string') throw missingParam('password is required');
    localpart ??= await generateLocalpart(hs);

    const token = typeof auth.data.registration_token === 'string' ? auth.data.registration_token : null;
    // If the name was taken while auth was in progress this throws M_USER_IN_USE; the UIA session (and
    // any token use it reserved) stays, so the client may retry with another name.
    const userId = await accounts().createUser({ localpart, password: body.password });
    if (token) await completeRegistrationToken(hs.db, token);
    await uia.finish(auth);
    hs.logger.info({ user: userId, via: token ? 'registration_token' : 'open' }, 'user registered');

    if (inhibitLogin) {
      ctx.body = { user_id: userId, home_server: hs.serverName };
      return;
    }
    const s = await accounts().createSession(userId, { deviceId, initialDisplayName: deviceName, refreshToken: wantsRefresh });
    ctx.body = sessionResponse(hs, s);
  });

  api.get('client', clientPaths('/register/available'), rateLimit(hs, 'registration'), async (ctx: ApiContext) => {
    const username = ctx.query.username;
    if (typeof username !== 'string' || username === '') throw missingParam('username is required');
    await checkUsername(hs, username);
    ctx.body = { available: true };
  });

  api.get('client', '/_matrix/client/v1/register/m.login.registration_token/validity', rateLimit(hs, 'registration'), async (ctx: ApiContext) => {
    if (hs.config.registration.mode !== 'token') throw forbidden('Registration tokens are not in use on this server');
    const token = ctx.query.token;
    if (typeof token !== 'string' || token === '') throw missingParam('token is required');
    if (!isValidRegistrationToken(token)) throw invalidParam('token is not a valid registration token');
    ctx.body = { valid: await isRegistrationTokenUsable(hs.db, token, hs.now()) };
  });
}
