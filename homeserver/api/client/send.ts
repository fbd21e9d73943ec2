// Sending events: messages with transaction-id idempotency, state events, redactions
// (room_send.yaml, room_state.yaml, redaction.yaml).
import type { JsonObject } from '../../../spec/events.ts';
import type { Homeserver } from '../../homeserver.ts';
import { rateLimit } from '../../homeserver.ts';
import { clientPaths, type Api, type ApiContext } from '../../http/api.ts';
import { readJsonObject } from '../../http/body.ts';
import { requireAuth } from '../../auth/access-tokens.ts';
import { badJson } from '../../errors.ts';
import { checkNewRelation } from '../../services/relations.ts';

export function sendRoutes(api: Api, hs: Homeserver): void {
  const rooms = () => hs.services.rooms;
  const auth = requireAuth(hs.tokens);
  const limited = rateLimit(hs, 'message');

  api.put('client', clientPaths('/rooms/:roomId/send/:eventType/:txnId'), auth, limited, async (ctx: ApiContext) => {
    const content = (await readJsonObject(ctx)) as JsonObject;
    const { roomId, eventType, txnId } = ctx.params;
    await checkNewRelation(hs, ctx.state.requester!, roomId!, eventType!, content, txnId!);
    const eventId = await rooms().sendMessage(ctx.state.requester!, roomId!, eventType!, content, txnId!);
    ctx.body = { event_id: eventId };
  });

  api.put('client', clientPaths('/rooms/:roomId/state/:eventType{/:stateKey}'), auth, limited, async (ctx: ApiContext) => {
    const content = (await readJsonObject(ctx)) as JsonObject;
    const { roomId, eventType } = ctx.params;
    const eventId = await rooms().sendState(ctx.state.requester!, roomId!, eventType!, ctx.params.stateKey ?? '', content);
    ctx.body = { event_id: eventId };
  });

  api.put('client', clientPaths('/rooms/:roomId/redact/:eventId/:txnId'), auth, limited, async (ctx: ApiContext) => {
    const body = await readJsonObject(ctx);
    const content: JsonObject = {};
    if (body['reason'] !== undefined) {
      if (typeof body['reason'] !== 'string') throw badJson('reason must be a string');
      content['reason'] = body['reason'];
    }
    const { roomId, eventId, txnId } = ctx.params;
    const id = await rooms().redact(ctx.state.requester!, roomId!, eventId!, txnId!, content);
    ctx.body = { event_id: id };
  });
}
