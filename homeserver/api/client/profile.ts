// Profiles (client-server-api "Profiles"): GET /profile/{userId}, GET/PUT/DELETE
// /profile/{userId}/{keyName} for displayname, avatar_url, m.tz and custom namespaced fields.
// Profiles of local users are public (the spec allows more, requires at least users who share a room).
import { parseUserId } from '../../../spec/identifiers.ts';
import { rateLimit, type Homeserver } from '../../homeserver.ts';
import { clientPaths, type Api, type ApiContext } from '../../http/api.ts';
import { readJsonObject } from '../../http/body.ts';
import { requireAuth } from '../../auth/access-tokens.ts';
import { MatrixError, badJson, forbidden, invalidParam, missingParam, notFound } from '../../errors.ts';
import { PROFILE_KEY_MAX_BYTES, isValidProfileKey, validateProfileField } from '../../services/profiles.ts';

function targetUser(hs: Homeserver, ctx: ApiContext): string {
  const userId = ctx.params.userId!;
  if (!parseUserId(userId)) throw invalidParam('Invalid user id');
  return userId;
}

function keyName(ctx: ApiContext): string {
  const key = ctx.params.keyName!;
  if (Buffer.byteLength(key) > PROFILE_KEY_MAX_BYTES) throw new MatrixError(400, 'M_KEY_TOO_LARGE', 'Profile key exceeds 255 bytes');
  if (!isValidProfileKey(key)) throw invalidParam('Invalid profile key');
  return key;
}

/** Only the user may change their own profile; guests only their display name (modules/guest_access.md). */
function checkOwner(ctx: ApiContext, userId: string, key: string): void {
  const r = ctx.state.requester!;
  if (r.userId !== userId) throw forbidden("Cannot change another user's profile");
  if (r.isGuest && key !== 'displayname') throw new MatrixError(403, 'M_GUEST_ACCESS_FORBIDDEN', 'Guests may only change their display name');
}

export function profileRoutes(api: Api, hs: Homeserver): void {
  const profiles = () => hs.services.accounts.profiles;

  api.get('client', clientPaths('/profile/:userId'), async (ctx: ApiContext) => {
    const userId = targetUser(hs, ctx);
    const profile = hs.services.accounts.isLocalUser(userId) ? await profiles().getProfile(userId) : await profiles().remoteProfile(userId);
    if (!profile) throw notFound('Profile not found');
    ctx.body = profile;
  });

  api.get('client', clientPaths('/profile/:userId/:keyName'), async (ctx: ApiContext) => {
    const userId = targetUser(hs, ctx);
    const key = keyName(ctx);
    if (!hs.services.accounts.isLocalUser(userId)) {
      const remote = await profiles().remoteProfile(userId, key);
      if (!remote || !(key in remote)) throw notFound('Profile field not found');
      ctx.body = { [key]: remote[key] };
      return;
    }
    const f = await profiles().getField(userId, key);
    if (!f.found) throw notFound('Profile field not found');
    ctx.body = { [key]: f.value };
  });

  api.put('client', clientPaths('/profile/:userId/:keyName'), requireAuth(hs.tokens), rateLimit(hs, 'message'), async (ctx: ApiContext) => {
    const userId = targetUser(hs, ctx);
    const key = keyName(ctx);
    checkOwner(ctx, userId, key);
    const body = await readJsonObject(ctx);
    if (!(key in body)) throw missingParam(`The body must contain ${key}`);
    if (Object.keys(body).length !== 1) throw badJson(`The body must contain exactly one property, ${key}`);
    const value = body[key];
    validateProfileField(key, value);
    await profiles().setField(userId, key, value);
    ctx.body = {};
  });

  api.delete('client', clientPaths('/profile/:userId/:keyName'), requireAuth(hs.tokens), rateLimit(hs, 'message'), async (ctx: ApiContext) => {
    const userId = targetUser(hs, ctx);
    const key = keyName(ctx);
    checkOwner(ctx, userId, key);
    await profiles().deleteField(userId, key);
    ctx.body = {};
  });
}
