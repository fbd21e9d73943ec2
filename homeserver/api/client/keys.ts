// End-to-end encryption key endpoints (keys.yaml, cross_signing.yaml): upload, query, claim, changes,
// cross-signing keys and signatures. Bodies are key material: never logged.
import type { Homeserver } from '../../homeserver.ts';
import { clientPaths, type Api, type ApiContext } from '../../http/api.ts';
import { readJsonObject } from '../../http/body.ts';
import { requireAuth } from '../../auth/access-tokens.ts';
import { MatrixError, invalidParam } from '../../errors.ts';
import { deviceListChangesFor } from '../../services/device-lists.ts';

const PASSWORD_FLOWS = [{ stages: ['m.login.password'] }];

// The sync engine's token decoder (homeserver/sync/token.ts), loaded at run time so this file does not
// depend on the sync engine at compile time; a bare decimal position is accepted as well.
type Decode = (token: string) => Map<string, number> | null;
let decoder: Promise<Decode | null> | null = null;
function syncTokenDecoder(): Promise<Decode | null> {
  decoder ??= import(new URL('../../sync/token.ts', import.meta.url).href).then(
    (m: { decodeToken?: Decode }) => m.decodeToken ?? null,
    () => null,
  );
  return decoder;
}

/** The device_lists position of a sync token (a token from before the stream existed counts as 0). */
async function positionFromToken(token: string): Promise<number> {
  if (/^[0-9]{1,15}$/.test(token)) return Number(token);
  const positions = (await syncTokenDecoder())?.(token);
  if (!positions) throw invalidParam(`Unrecognised token ${JSON.stringify(token.slice(0, 100))}`);
  return positions.get('device_lists') ?? 0;
}

export function keysRoutes(api: Api, hs: Homeserver): void {
  const keys = () => hs.services.e2ee.keys;
  const auth = requireAuth(hs.tokens);

  api.post('client', clientPaths('/keys/upload'), auth, async (ctx: ApiContext) => {
    ctx.body = await keys().upload(ctx.state.requester!, await readJsonObject(ctx));
  });

  // Deprecated r0 form with the device id in the path: only the requester's own device.
  api.post('client', clientPaths('/keys/upload/:deviceId', ['r0']), auth, async (ctx: ApiContext) => {
    if (ctx.params.deviceId !== ctx.state.requester!.deviceId) throw invalidParam('Keys can only be uploaded for the requesting device');
    ctx.body = await keys().upload(ctx.state.requester!, await readJsonObject(ctx));
  });

  api.post('client', clientPaths('/keys/query'), auth, async (ctx: ApiContext) => {
    ctx.body = await keys().query(ctx.state.requester!.userId, await readJsonObject(ctx));
  });

  api.post('client', clientPaths('/keys/claim'), auth, async (ctx: ApiContext) => {
    ctx.body = await keys().claim(await readJsonObject(ctx));
  });

  api.get('client', clientPaths('/keys/changes'), auth, async (ctx: ApiContext) => {
    const from = ctx.query.from;
    const to = ctx.query.to;
    if (typeof from !== 'string') throw new MatrixError(400, 'M_MISSING_PARAM', 'from is required');
    if (typeof to !== 'string') throw new MatrixError(400, 'M_MISSING_PARAM', 'to is required');
    ctx.body = await deviceListChangesFor(hs.db, ctx.state.requester!.userId, await positionFromToken(from), await positionFromToken(to), false);
  });

  api.post('client', clientPaths('/keys/device_signing/upload', ['v3', 'unstable']), auth, async (ctx: ApiContext) => {
    const body = await readJsonObject(ctx);
    const requester = ctx.state.requester!;
    const parsed = await keys().parseCrossSigningUpload(requester.userId, body);
    // cross_signing.yaml: no UIA for the first upload or an identical re-upload; replacing keys needs it.
    if (await keys().crossSigningUploadNeedsAuth(requester.userId, parsed)) {
      const uia = await hs.services.uia.authenticate(ctx, body, { flows: PASSWORD_FLOWS, userId: requester.userId });
      await keys().storeCrossSigningKeys(requester.userId, parsed);
      await hs.services.uia.finish(uia);
    } else {
      await keys().storeCrossSigningKeys(requester.userId, parsed);
    }
    ctx.body = {};
  });

  api.post('client', clientPaths('/keys/signatures/upload', ['v3', 'unstable']), auth, async (ctx: ApiContext) => {
    ctx.body = await keys().uploadSignatures(ctx.state.requester!, await readJsonObject(ctx));
  });
}
