// POST /rooms/{roomId}/upgrade (room_upgrades.yaml, modules/room_upgrades.md).
import type { Homeserver } from '../../homeserver.ts';
import { clientPaths, type Api, type ApiContext } from '../../http/api.ts';
import { readJsonObject } from '../../http/body.ts';
import { requireAuth } from '../../auth/access-tokens.ts';
import { badJson, missingParam } from '../../errors.ts';

export function upgradeRoutes(api: Api, hs: Homeserver): void {
  api.post('client', clientPaths('/rooms/:roomId/upgrade'), requireAuth(hs.tokens), async (ctx: ApiContext) => {
    const body = await readJsonObject(ctx);
    const v = body['new_version'];
    if (v === undefined) throw missingParam('new_version is required');
    if (typeof v !== 'string') throw badJson('new_version must be a string');
    const extra = body['additional_creators'] ?? [];
    if (!Array.isArray(extra) || extra.some((u) => typeof u !== 'string')) throw badJson('additional_creators must be an array of user ids');
    const replacement = await hs.services.rooms.upgrade(ctx.state.requester!, ctx.params.roomId!, v, extra as string[]);
    ctx.body = { replacement_room: replacement };
  });
}
