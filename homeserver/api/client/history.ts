// History routes: /messages (message_pagination.yaml), /context (event_context.yaml),
// /timestamp_to_event (room_event_by_timestamp.yaml), /relations (relations.yaml) and /threads
// (threads_list.yaml). Parsing here; the work is in services/history.ts.
import type { Homeserver } from '../../homeserver.ts';
import { clientPaths, type Api, type ApiContext } from '../../http/api.ts';
import { requireAuth } from '../../auth/access-tokens.ts';
import { invalidParam, missingParam } from '../../errors.ts';
import { parseRoomEventFilter } from '../../services/event-filter.ts';
import { MAX_PAGE } from '../../services/history.ts';

export function queryString(ctx: ApiContext, name: string): string | undefined {
  const v = ctx.query[name];
  if (Array.isArray(v)) return v[0];
  return v;
}

/** An integer query parameter within [min, max] (values above max are clamped); M_INVALID_PARAM otherwise. */
export function intQuery(ctx: ApiContext, name: string, dflt: number, min: number, max: number): number {
  const raw = queryString(ctx, name);
  if (raw === undefined || raw === '') return dflt;
  if (!/^-?\d{1,16}$/.test(raw)) throw invalidParam(`${name} must be an integer`);
  const n = Number(raw);
  if (n < min) throw invalidParam(`${name} must be at least ${min}`);
  return Math.min(n, max);
}

export function boolQuery(ctx: ApiContext, name: string, dflt: boolean): boolean {
  const raw = queryString(ctx, name);
  if (raw === undefined) return dflt;
  if (raw === 'true') return true;
  if (raw === 'false') return false;
  throw invalidParam(`${name} must be true or false`);
}

function dirQuery(ctx: ApiContext, dflt?: 'b' | 'f'): 'b' | 'f' {
  const raw = queryString(ctx, 'dir');
  if (raw === undefined) {
    if (dflt) return dflt;
    throw missingParam('dir is required');
  }
  if (raw !== 'b' && raw !== 'f') throw invalidParam('dir must be "b" or "f"');
  return raw;
}

export function historyRoutes(api: Api, hs: Homeserver): void {
  const history = () => hs.services.history;
  const auth = requireAuth(hs.tokens);

  api.get('client', clientPaths('/rooms/:roomId/messages'), auth, async (ctx: ApiContext) => {
    const from = queryString(ctx, 'from');
    const to = queryString(ctx, 'to');
    ctx.body = await history().messages(ctx.state.requester!, ctx.params.roomId!, {
      ...(from !== undefined ? { from } : {}),
      ...(to !== undefined ? { to } : {}),
      dir: dirQuery(ctx),
      limit: intQuery(ctx, 'limit', 10, 0, MAX_PAGE),
      filter: parseRoomEventFilter(queryString(ctx, 'filter')),
    });
  });

  api.get('client', clientPaths('/rooms/:roomId/context/:eventId'), auth, async (ctx: ApiContext) => {
    ctx.body = await history().context(
      ctx.state.requester!,
      ctx.params.roomId!,
      ctx.params.eventId!,
      intQuery(ctx, 'limit', 10, 0, MAX_PAGE),
      parseRoomEventFilter(queryString(ctx, 'filter')),
    );
  });

  api.get('client', clientPaths('/rooms/:roomId/timestamp_to_event', ['v1']), auth, async (ctx: ApiContext) => {
    const tsRaw = queryString(ctx, 'ts');
    if (tsRaw === undefined) throw missingParam('ts is required');
    if (!/^\d{1,16}$/.test(tsRaw)) throw invalidParam('ts must be a timestamp in milliseconds');
    ctx.body = await history().timestampToEvent(ctx.state.requester!, ctx.params.roomId!, Number(tsRaw), dirQuery(ctx));
  });

  api.get('client', clientPaths('/rooms/:roomId/relations/:eventId{/:relType}{/:eventType}', ['v1']), auth, async (ctx: ApiContext) => {
    const from = queryString(ctx, 'from');
    const to = queryString(ctx, 'to');
    const { relType, eventType } = ctx.params;
    ctx.body = await history().relations(ctx.state.requester!, ctx.params.roomId!, ctx.params.eventId!, {
      ...(relType !== undefined ? { relType } : {}),
      ...(eventType !== undefined ? { eventType } : {}),
      ...(from !== undefined ? { from } : {}),
      ...(to !== undefined ? { to } : {}),
      dir: dirQuery(ctx, 'b'),
      limit: intQuery(ctx, 'limit', 50, 1, 100),
      recurse: boolQuery(ctx, 'recurse', false),
    });
  });

  api.get('client', clientPaths('/rooms/:roomId/threads', ['v1']), auth, async (ctx: ApiContext) => {
    const include = queryString(ctx, 'include') ?? 'all';
    if (include !== 'all' && include !== 'participated') throw invalidParam('include must be "all" or "participated"');
    const from = queryString(ctx, 'from');
    ctx.body = await history().threads(ctx.state.requester!, ctx.params.roomId!, {
      include,
      ...(from !== undefined ? { from } : {}),
      limit: intQuery(ctx, 'limit', 20, 1, 100),
    });
  });
}
