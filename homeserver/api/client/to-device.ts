// PUT /sendToDevice/{eventType}/{txnId} (to_device.yaml). Idempotent per sending device and txn id;
// see services/to-device.ts for delivery and the backlog policy. Message contents are never logged.
import type { Homeserver } from '../../homeserver.ts';
import { clientPaths, type Api, type ApiContext } from '../../http/api.ts';
import { readJsonObject } from '../../http/body.ts';
import { requireAuth } from '../../auth/access-tokens.ts';

export function toDeviceRoutes(api: Api, hs: Homeserver): void {
  api.put('client', clientPaths('/sendToDevice/:eventType/:txnId'), requireAuth(hs.tokens), async (ctx: ApiContext) => {
    const body = await readJsonObject(ctx);
    await hs.services.e2ee.toDevice.send(ctx.state.requester!, ctx.params.eventType!, ctx.params.txnId!, body);
    ctx.body = {};
  });
}
