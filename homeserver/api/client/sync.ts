// GET /sync (sync.yaml): parses the query (filter inline or by id, since, timeout, full_state,
// set_presence, use_state_after) and hands it to the sync engine (sync/sync.ts).
import type { Homeserver } from '../../homeserver.ts';
import { clientPaths, type Api, type ApiContext } from '../../http/api.ts';
import { requireAuth } from '../../auth/access-tokens.ts';
import { invalidParam, notJson } from '../../errors.ts';
import type { PresenceState } from '../../services/presence.ts';
import { parseSyncFilter, type SyncFilter } from '../../sync/filter.ts';
import type { SyncParams } from '../../sync/sync.ts';

function one(ctx: ApiContext, key: string): string | undefined {
  const v = ctx.query[key];
  if (v === undefined) return undefined;
  if (Array.isArray(v)) throw invalidParam(`${key} must be given once`);
  return v;
}

function bool(ctx: ApiContext, key: string): boolean {
  const v = one(ctx, key);
  if (v === undefined) return false;
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw invalidParam(`${key} must be true or false`);
}

export async function parseSyncParams(hs: Homeserver, ctx: ApiContext): Promise<SyncParams> {
  const userId = ctx.state.requester!.userId;
  let filter: SyncFilter = {};
  const f = one(ctx, 'filter');
  if (f !== undefined && f !== '') {
    if (f.trimStart().startsWith('{')) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(f);
      } catch {
        throw notJson('filter is not valid JSON');
      }
      filter = parseSyncFilter(parsed);
    } else {
      const stored = await hs.services.accounts.accountData.getFilter(userId, f);
      if (!stored) throw invalidParam('Unknown filter id');
      filter = parseSyncFilter(stored);
    }
  }
  const t = one(ctx, 'timeout');
  let timeoutMs = 0;
  if (t !== undefined) {
    if (!/^\d{1,10}$/.test(t)) throw invalidParam('timeout must be a non-negative integer');
    timeoutMs = Number(t);
  }
  const sp = one(ctx, 'set_presence') ?? 'online';
  if (sp !== 'online' && sp !== 'offline' && sp !== 'unavailable') throw invalidParam('set_presence must be online, offline or unavailable');
  const since = one(ctx, 'since');
  return {
    since: since === undefined || since === '' ? null : since,
    timeoutMs,
    fullState: bool(ctx, 'full_state'),
    setPresence: sp as PresenceState,
    filter,
    useStateAfter: bool(ctx, 'use_state_after'),
  };
}

export function syncRoutes(api: Api, hs: Homeserver): void {
  const auth = requireAuth(hs.tokens);
  api.get('client', clientPaths('/sync'), auth, async (ctx: ApiContext) => {
    const params = await parseSyncParams(hs, ctx);
    ctx.body = await hs.services.sync.sync(ctx.state.requester!, params);
  });
}
