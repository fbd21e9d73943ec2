// Login and sessions (client-server-api "Login", "Refreshing access tokens", "Logout", whoami):
// GET/POST /login (m.login.password, m.login.token), /login/get_token, /refresh, /logout, /logout/all.
import { rateLimit, type Homeserver } from '../../homeserver.ts';
import { clientPaths, type Api, type ApiContext } from '../../http/api.ts';
import { readJsonObject } from '../../http/body.ts';
import { requireAuth } from '../../auth/access-tokens.ts';
import { MatrixError, badJson, forbidden, unknownToken } from '../../errors.ts';
import { checkPasswordLimited, identifiedUser, optionalString, requireUser, sessionResponse } from './helpers.ts';

const badLogin = () => forbidden('Invalid username or password');

export function loginRoutes(api: Api, hs: Homeserver): void {
  const accounts = () => hs.services.accounts;

  api.get('client', clientPaths('/login'), (ctx: ApiContext) => {
    ctx.body = { flows: [{ type: 'm.login.password' }, { type: 'm.login.token', get_login_token: true }] };
  });

  api.post('client', clientPaths('/login'), rateLimit(hs, 'login'), async (ctx: ApiContext) => {
    const body = await readJsonObject(ctx);
    const type = body.type;
    if (typeof type !== 'string') throw badJson('type must be a string');
    const deviceId = optionalString(body, 'device_id', 255);
    const deviceName = optionalString(body, 'initial_device_display_name');
    if (body.refresh_token !== undefined && typeof body.refresh_token !== 'boolean') throw badJson('refresh_token must be a boolean');

    let userId: string;
    if (type === 'm.login.password') {
      if (typeof body.password !== 'string') throw badJson('password must be a string');
      const who = identifiedUser(hs, body);
      // Unknown third-party ids are 403 (no 3PIDs are bound on this server); so are users of other servers.
      if (who === null || who === 'thirdparty') throw badLogin();
      const r = await checkPasswordLimited(hs, who, body.password);
      if (r !== 'ok') throw badLogin();
      userId = who;
    } else if (type === 'm.login.token') {
      if (typeof body.token !== 'string') throw badJson('token must be a string');
      const who = await accounts().consumeLoginToken(body.token);
      if (!who) throw forbidden('Invalid or expired login token');
      const user = await accounts().getUser(who);
      if (!user || user.deactivated_ts !== null) throw new MatrixError(403, 'M_USER_DEACTIVATED', 'This account has been deactivated');
      userId = who;
    } else {
      throw new MatrixError(400, 'M_UNKNOWN', `Unknown login type ${type}`);
    }
    const s = await accounts().createSession(userId, { deviceId, initialDisplayName: deviceName, refreshToken: body.refresh_token === true });
    ctx.body = sessionResponse(hs, s);
  });

  // UIA protected and re-prompted every time (the spec says servers MUST), rate limited like logins.
  api.post('client', '/_matrix/client/v1/login/get_token', requireUser(hs), rateLimit(hs, 'login'), async (ctx: ApiContext) => {
    const body = await readJsonObject(ctx);
    const userId = ctx.state.requester!.userId;
    const auth = await hs.services.uia.authenticate(ctx, body, { flows: [{ stages: ['m.login.password'] }], userId });
    await hs.services.uia.finish(auth);
    const t = await accounts().createLoginToken(userId);
    ctx.body = { login_token: t.token, expires_in_ms: t.expiresInMs };
  });

  api.post('client', clientPaths('/refresh', ['v3']), async (ctx: ApiContext) => {
    const body = await readJsonObject(ctx);
    if (typeof body.refresh_token !== 'string') throw badJson('refresh_token must be a string');
    const r = await accounts().refresh(body.refresh_token);
    if (!r) throw unknownToken(false, 'Unknown refresh token');
    ctx.body = { access_token: r.accessToken, refresh_token: r.refreshToken, ...(r.expiresInMs !== undefined ? { expires_in_ms: r.expiresInMs } : {}) };
  });

  api.post('client', clientPaths('/logout'), requireAuth(hs.tokens), async (ctx: ApiContext) => {
    await accounts().logout(ctx.state.requester!);
    ctx.body = {};
  });

  api.post('client', clientPaths('/logout/all'), requireAuth(hs.tokens), async (ctx: ApiContext) => {
    await accounts().logoutAll(ctx.state.requester!.userId);
    ctx.body = {};
  });
}
