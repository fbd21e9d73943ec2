// Filtering (client-server-api "Filtering"): POST /user/{userId}/filter stores a validated filter and
// returns its id; GET /user/{userId}/filter/{filterId} reads it back. /sync reads them through the
// account data service's getFilter.
import { validateFilter } from '../../../spec/filters.ts';
import type { Homeserver } from '../../homeserver.ts';
import { clientPaths, type Api, type ApiContext } from '../../http/api.ts';
import { readJsonObject } from '../../http/body.ts';
import { requireAuth } from '../../auth/access-tokens.ts';
import { badJson, forbidden, notFound } from '../../errors.ts';

export function filterRoutes(api: Api, hs: Homeserver): void {
  const data = () => hs.services.accounts.accountData;
  // Guests sync too, and sync takes filters.
  const auth = requireAuth(hs.tokens);

  api.post('client', clientPaths('/user/:userId/filter'), auth, async (ctx: ApiContext) => {
    const userId = ctx.params.userId!;
    if (userId !== ctx.state.requester!.userId) throw forbidden('Cannot create filters for other users');
    const filter = await readJsonObject(ctx);
    const problem = validateFilter(filter);
    if (problem) throw badJson(`Invalid filter: ${problem}`);
    ctx.body = { filter_id: await data().createFilter(userId, filter) };
  });

  api.get('client', clientPaths('/user/:userId/filter/:filterId'), auth, async (ctx: ApiContext) => {
    const userId = ctx.params.userId!;
    if (userId !== ctx.state.requester!.userId) throw forbidden("Cannot read other users' filters");
    const f = await data().getFilter(userId, ctx.params.filterId!);
    if (!f) throw notFound('Unknown filter');
    ctx.body = f;
  });
}
