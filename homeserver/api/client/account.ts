// Account management (client-server-api "Account management", "whoami"): whoami, password change,
// deactivation, and the (empty) list of third-party identifiers.
import type { Homeserver } from '../../homeserver.ts';
import { clientPaths, type Api, type ApiContext } from '../../http/api.ts';
import { readJsonObject } from '../../http/body.ts';
import { requireAuth } from '../../auth/access-tokens.ts';
import { badJson } from '../../errors.ts';
import { requireUser } from './helpers.ts';
import { checkNewPassword } from './registration.ts';

const PASSWORD_FLOWS = [{ stages: ['m.login.password'] }];

export function accountRoutes(api: Api, hs: Homeserver): void {
  const accounts = () => hs.services.accounts;

  api.get('client', clientPaths('/account/whoami'), requireAuth(hs.tokens), (ctx: ApiContext) => {
    const r = ctx.state.requester!;
    ctx.body = { user_id: r.userId, is_guest: r.isGuest, ...(r.deviceId ? { device_id: r.deviceId } : {}) };
  });

  api.post('client', clientPaths('/account/password'), requireUser(hs), async (ctx: ApiContext) => {
    const body = await readJsonObject(ctx);
    const requester = ctx.state.requester!;
    const password = checkNewPassword(hs, body.new_password);
    if (body.logout_devices !== undefined && typeof body.logout_devices !== 'boolean') throw badJson('logout_devices must be a boolean');
    const auth = await hs.services.uia.authenticate(ctx, body, { flows: PASSWORD_FLOWS, userId: requester.userId });
    await accounts().setPassword(requester.userId, password);
    // Other sessions end unless the client asks otherwise; the requesting session stays.
    if (body.logout_devices !== false) await accounts().logoutOtherDevices(requester.userId, requester.deviceId);
    await hs.services.uia.finish(auth);
    ctx.body = {};
  });

  api.post('client', clientPaths('/account/deactivate'), requireUser(hs), async (ctx: ApiContext) => {
    const body = await readJsonObject(ctx);
    const requester = ctx.state.requester!;
    if (body.erase !== undefined && typeof body.erase !== 'boolean') throw badJson('erase must be a boolean');
    if (body.id_server !== undefined && typeof body.id_server !== 'string') throw badJson('id_server must be a string');
    const auth = await hs.services.uia.authenticate(ctx, body, { flows: PASSWORD_FLOWS, userId: requester.userId });
    await hs.services.uia.finish(auth);
    await accounts().deactivate(requester.userId, body.erase === true);
    hs.logger.info({ user: requester.userId, erase: body.erase === true }, 'account deactivated');
    // No third-party identifiers are ever bound, so there is nothing to unbind.
    ctx.body = { id_server_unbind_result: 'no-support' };
  });

  api.get('client', clientPaths('/account/3pid'), requireUser(hs), (ctx: ApiContext) => {
    ctx.body = { threepids: [] };
  });
}
