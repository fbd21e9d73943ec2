// Receipts and read markers (receipts.yaml, read_markers.yaml, modules/receipts.md, read_markers.md).
import type { Homeserver } from '../../homeserver.ts';
import { clientPaths, type Api, type ApiContext } from '../../http/api.ts';
import { readJsonObject } from '../../http/body.ts';
import { requireAuth } from '../../auth/access-tokens.ts';
import { badJson, invalidParam } from '../../errors.ts';

function optEventId(body: Record<string, unknown>, key: string): string | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || !v.startsWith('$')) throw badJson(`${key} must be an event id`);
  return v;
}

export function receiptRoutes(api: Api, hs: Homeserver): void {
  const auth = requireAuth(hs.tokens);

  api.post('client', clientPaths('/rooms/:roomId/receipt/:receiptType/:eventId'), auth, async (ctx: ApiContext) => {
    const body = await readJsonObject(ctx);
    const t = body['thread_id'];
    if (t !== undefined && (typeof t !== 'string' || t === '')) throw invalidParam('thread_id must be a non-empty string');
    const { roomId, receiptType, eventId } = ctx.params;
    await hs.services.receipts.sendReceipt(ctx.state.requester!, roomId!, receiptType!, eventId!, t as string | undefined);
    ctx.body = {};
  });

  api.post('client', clientPaths('/rooms/:roomId/read_markers'), auth, async (ctx: ApiContext) => {
    const body = await readJsonObject(ctx);
    const fullyRead = optEventId(body, 'm.fully_read');
    const read = optEventId(body, 'm.read');
    const readPrivate = optEventId(body, 'm.read.private');
    await hs.services.receipts.setReadMarkers(ctx.state.requester!, ctx.params.roomId!, {
      ...(fullyRead !== undefined ? { fullyRead } : {}),
      ...(read !== undefined ? { read } : {}),
      ...(readPrivate !== undefined ? { readPrivate } : {}),
    });
    ctx.body = {};
  });
}
