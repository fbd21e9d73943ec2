// PUT /rooms/{roomId}/typing/{userId} (typing.yaml, modules/typing_notifications.md).
import type { Homeserver } from '../../homeserver.ts';
import { clientPaths, type Api, type ApiContext } from '../../http/api.ts';
import { readJsonObject } from '../../http/body.ts';
import { requireAuth } from '../../auth/access-tokens.ts';
import { badJson, forbidden } from '../../errors.ts';
import { DEFAULT_TYPING_TIMEOUT_MS } from '../../services/typing.ts';

export function typingRoutes(api: Api, hs: Homeserver): void {
  const auth = requireAuth(hs.tokens);
  api.put('client', clientPaths('/rooms/:roomId/typing/:userId'), auth, async (ctx: ApiContext) => {
    const requester = ctx.state.requester!;
    const { roomId, userId } = ctx.params;
    if (userId !== requester.userId) throw forbidden('You may only set your own typing state');
    const body = await readJsonObject(ctx);
    if (typeof body['typing'] !== 'boolean') throw badJson('typing must be true or false');
    const timeout = body['timeout'];
    if (timeout !== undefined && (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout < 0)) throw badJson('timeout must be a non-negative number of milliseconds');
    const m = await hs.services.rooms.getMembership(roomId!, requester.userId);
    if (m?.membership !== 'join') throw forbidden('You are not joined to this room');
    await hs.services.typing.setTyping(roomId!, requester.userId, body['typing'], typeof timeout === 'number' ? timeout : DEFAULT_TYPING_TIMEOUT_MS);
    ctx.body = {};
  });
}
