// Room membership endpoints (client-server-api "Room membership": joining.yaml, inviting.yaml,
// knocking.yaml, leaving.yaml, kicking.yaml, banning.yaml). Federation joins come later: joining or
// knocking on a room this server does not have answers M_NOT_FOUND saying so.
import type { Homeserver } from '../../homeserver.ts';
import { clientPaths, type Api, type ApiContext } from '../../http/api.ts';
import { readJsonObject } from '../../http/body.ts';
import { requireAuth } from '../../auth/access-tokens.ts';
import { MatrixError, badJson, missingParam } from '../../errors.ts';
import { rateLimit } from '../../homeserver.ts';

function reasonOf(body: Record<string, unknown>): string | undefined {
  const r = body['reason'];
  if (r === undefined || r === null) return undefined;
  if (typeof r !== 'string') throw badJson('reason must be a string');
  return r;
}

function userIdOf(body: Record<string, unknown>): string {
  const u = body['user_id'];
  if (u === undefined) throw missingParam('user_id is required');
  if (typeof u !== 'string') throw badJson('user_id must be a string');
  return u;
}

export function membershipRoutes(api: Api, hs: Homeserver): void {
  const rooms = () => hs.services.rooms;
  const auth = requireAuth(hs.tokens);
  const limited = rateLimit(hs, 'message');

  const join = async (ctx: ApiContext, idOrAlias: string) => {
    const body = await readJsonObject(ctx);
    if (body['third_party_signed'] !== undefined) throw new MatrixError(400, 'M_UNRECOGNIZED', 'Third-party invites are not supported yet');
    const roomId = await rooms().join(ctx.state.requester!, idOrAlias, { reason: reasonOf(body) });
    ctx.body = { room_id: roomId };
  };
  api.post('client', clientPaths('/rooms/:roomId/join'), auth, limited, (ctx: ApiContext) => join(ctx, ctx.params.roomId!));
  api.post('client', clientPaths('/join/:roomIdOrAlias'), auth, limited, (ctx: ApiContext) => join(ctx, ctx.params.roomIdOrAlias!));

  api.post('client', clientPaths('/knock/:roomIdOrAlias'), auth, limited, async (ctx: ApiContext) => {
    const body = await readJsonObject(ctx);
    const roomId = await rooms().knock(ctx.state.requester!, ctx.params.roomIdOrAlias!, { reason: reasonOf(body) });
    ctx.body = { room_id: roomId };
  });

  api.post('client', clientPaths('/rooms/:roomId/invite'), auth, limited, async (ctx: ApiContext) => {
    const body = await readJsonObject(ctx);
    if (body['id_server'] !== undefined || body['medium'] !== undefined) throw new MatrixError(400, 'M_UNRECOGNIZED', 'Third-party invites are not supported yet');
    await rooms().invite(ctx.state.requester!, ctx.params.roomId!, userIdOf(body), { reason: reasonOf(body) });
    ctx.body = {};
  });

  api.post('client', clientPaths('/rooms/:roomId/leave'), auth, limited, async (ctx: ApiContext) => {
    const body = await readJsonObject(ctx);
    await rooms().leave(ctx.state.requester!, ctx.params.roomId!, { reason: reasonOf(body) });
    ctx.body = {};
  });

  api.post('client', clientPaths('/rooms/:roomId/forget'), auth, async (ctx: ApiContext) => {
    await readJsonObject(ctx);
    await rooms().forget(ctx.state.requester!, ctx.params.roomId!);
    ctx.body = {};
  });

  for (const action of ['kick', 'ban', 'unban'] as const) {
    api.post('client', clientPaths(`/rooms/:roomId/${action}`), auth, limited, async (ctx: ApiContext) => {
      const body = await readJsonObject(ctx);
      await rooms().moderate(ctx.state.requester!, ctx.params.roomId!, action, userIdOf(body), reasonOf(body));
      ctx.body = {};
    });
  }
}
