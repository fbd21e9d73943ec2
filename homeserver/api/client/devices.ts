// Device management (client-server-api "Device Management"): list, get, rename, delete, bulk delete.
// Deleting devices needs user-interactive auth with the password and ends the devices' sessions.
import type { Homeserver } from '../../homeserver.ts';
import { clientPaths, type Api, type ApiContext } from '../../http/api.ts';
import { readJsonObject } from '../../http/body.ts';
import { requireAuth } from '../../auth/access-tokens.ts';
import { badJson, invalidParam, notFound } from '../../errors.ts';
import { requireUser } from './helpers.ts';

const PASSWORD_FLOWS = [{ stages: ['m.login.password'] }];

export function deviceRoutes(api: Api, hs: Homeserver): void {
  const accounts = () => hs.services.accounts;
  // Guests may list, read and rename their devices (modules/guest_access.md), not delete them.
  const anyUser = requireAuth(hs.tokens);

  api.get('client', clientPaths('/devices'), anyUser, async (ctx: ApiContext) => {
    ctx.body = { devices: await accounts().listDevices(ctx.state.requester!.userId) };
  });

  api.get('client', clientPaths('/devices/:deviceId'), anyUser, async (ctx: ApiContext) => {
    const d = await accounts().getDevice(ctx.state.requester!.userId, ctx.params.deviceId!);
    if (!d) throw notFound('Unknown device');
    ctx.body = d;
  });

  api.put('client', clientPaths('/devices/:deviceId'), anyUser, async (ctx: ApiContext) => {
    const body = await readJsonObject(ctx);
    const name = body.display_name;
    if (name !== undefined && typeof name !== 'string') throw badJson('display_name must be a string');
    if (typeof name === 'string' && Buffer.byteLength(name) > 512) throw invalidParam('display_name is too long');
    const userId = ctx.state.requester!.userId;
    const deviceId = ctx.params.deviceId!;
    // Creating devices this way is for application services only; regular clients update existing ones.
    if (!(await accounts().getDevice(userId, deviceId))) throw notFound('Unknown device');
    if (typeof name === 'string') await accounts().renameDevice(userId, deviceId, name);
    ctx.body = {};
  });

  api.delete('client', clientPaths('/devices/:deviceId'), requireUser(hs), async (ctx: ApiContext) => {
    const body = await readJsonObject(ctx);
    const userId = ctx.state.requester!.userId;
    const deviceId = ctx.params.deviceId!;
    if (!(await accounts().getDevice(userId, deviceId))) throw notFound('Unknown device');
    const auth = await hs.services.uia.authenticate(ctx, body, { flows: PASSWORD_FLOWS, userId });
    await accounts().deleteDevices(userId, [deviceId]);
    await hs.services.uia.finish(auth);
    ctx.body = {};
  });

  api.post('client', clientPaths('/delete_devices'), requireUser(hs), async (ctx: ApiContext) => {
    const body = await readJsonObject(ctx);
    const ids = body.devices;
    if (!Array.isArray(ids) || !ids.every((d) => typeof d === 'string')) throw badJson('devices must be a list of device ids');
    if (ids.length > 1000) throw invalidParam('Too many devices at once');
    const userId = ctx.state.requester!.userId;
    const auth = await hs.services.uia.authenticate(ctx, body, { flows: PASSWORD_FLOWS, userId });
    await accounts().deleteDevices(userId, ids as string[]);
    await hs.services.uia.finish(auth);
    ctx.body = {};
  });
}
