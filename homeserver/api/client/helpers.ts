// Helpers shared by the account endpoints: guest restrictions, rate-limited password checks, login
// identifiers, optional body fields and the shape of a new session.
import type { Next } from 'koa';
import type { Homeserver } from '../../homeserver.ts';
import type { ApiContext } from '../../http/api.ts';
import { requireAuth } from '../../auth/access-tokens.ts';
import { MatrixError, badJson, invalidParam, limitExceeded } from '../../errors.ts';
import type { NewSession } from '../../services/accounts.ts';

/** requireAuth, then 403 M_GUEST_ACCESS_FORBIDDEN for guests (modules/guest_access.md lists what guests may call). */
export function requireUser(hs: Homeserver) {
  const auth = requireAuth(hs.tokens);
  return (ctx: ApiContext, next: Next) =>
    auth(ctx, async () => {
      if (ctx.state.requester?.isGuest) throw new MatrixError(403, 'M_GUEST_ACCESS_FORBIDDEN', 'Guest accounts may not use this endpoint');
      await next();
    });
}

/**
 * Checks a password for a login or an m.login.password stage. Failures for one account drain the
 * login_failures_per_account bucket, so guessing slows down; a success refills it.
 */
export async function checkPasswordLimited(hs: Homeserver, userId: string, password: string): Promise<'ok' | 'wrong' | 'deactivated'> {
  const rl = hs.config.rate_limits;
  const key = `login-failures:${userId}`;
  if (rl.enabled) {
    const wait = await hs.rateLimiter.take(key, rl.login_failures_per_account);
    if (wait > 0) throw limitExceeded(wait);
  }
  const result = await hs.services.accounts.checkPassword(userId, password);
  if (result === 'ok' && rl.enabled) await hs.rateLimiter.reset(key);
  return result;
}

/** The user named by an m.id.user identifier or the legacy `user` field; null when absent or not local. */
export function identifiedUser(hs: Homeserver, body: Record<string, unknown>): string | null | 'thirdparty' {
  const id = body.identifier;
  if (id !== undefined) {
    if (id === null || typeof id !== 'object' || Array.isArray(id)) throw badJson('identifier must be an object');
    const ident = id as Record<string, unknown>;
    if (ident.type === 'm.id.user') {
      if (typeof ident.user !== 'string') throw badJson('identifier.user must be a string');
      return hs.services.accounts.localUserIdFrom(ident.user);
    }
    if (ident.type === 'm.id.thirdparty' || ident.type === 'm.id.phone') return 'thirdparty';
    throw badJson('Unknown identifier type');
  }
  if (typeof body.user === 'string') return hs.services.accounts.localUserIdFrom(body.user);
  throw badJson('identifier is required');
}

export function optionalString(body: Record<string, unknown>, key: string, max = 512): string | null {
  const v = body[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string') throw badJson(`${key} must be a string`);
  if (Buffer.byteLength(v) > max) throw invalidParam(`${key} is too long`);
  return v;
}

export function optionalBool(body: Record<string, unknown>, key: string): boolean {
  const v = body[key];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw badJson(`${key} must be a boolean`);
  return v;
}

/** The body of a successful /register or /login. */
export function sessionResponse(hs: Homeserver, s: NewSession): Record<string, unknown> {
  return {
    user_id: s.userId,
    access_token: s.accessToken,
    device_id: s.deviceId,
    home_server: hs.serverName,
    ...(s.refreshToken ? { refresh_token: s.refreshToken } : {}),
    ...(s.expiresInMs !== undefined ? { expires_in_ms: s.expiresInMs } : {}),
  };
}
