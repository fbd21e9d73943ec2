// PUT/GET /presence/{userId}/status (presence.yaml, modules/presence.md).
import type { Homeserver } from '../../homeserver.ts';
import { clientPaths, type Api, type ApiContext } from '../../http/api.ts';
import { readJsonObject } from '../../http/body.ts';
import { requireAuth } from '../../auth/access-tokens.ts';
import { forbidden } from '../../errors.ts';
import { parsePresenceBody } from '../../services/presence.ts';

export function presenceRoutes(api: Api, hs: Homeserver): void {
  const auth = requireAuth(hs.tokens);

  api.put('client', clientPaths('/presence/:userId/status'), auth, async (ctx: ApiContext) => {
    const requester = ctx.state.requester!;
    if (ctx.params.userId !== requester.userId) throw forbidden('You may only set your own presence');
    const { state, statusMsg } = parsePresenceBody(await readJsonObject(ctx));
    await hs.services.presence.setStatus(requester.userId, state, statusMsg);
    ctx.body = {};
  });

  api.get('client', clientPaths('/presence/:userId/status'), auth, async (ctx: ApiContext) => {
    ctx.body = await hs.services.presence.getStatus(ctx.state.requester!.userId, ctx.params.userId!);
  });
}
