// The one place where an access token becomes a requester. Password sessions register their resolver
// here today; OAuth 2.0 tokens join later as another resolver, and nothing else in the server changes.
import type { Next } from 'koa';
import { missingToken, unknownToken } from '../errors.ts';
import type { ApiContext, Requester } from '../http/api.ts';

export type TokenLookup = Requester | { expired: true } | null;

export interface TokenResolver {
  /** Returns the requester, `{expired: true}` for a known token past its lifetime, or null. */
  resolve(token: string): Promise<TokenLookup>;
}

export class AccessTokens {
  private readonly resolvers: TokenResolver[] = [];
  addResolver(r: TokenResolver): void {
    this.resolvers.push(r);
  }
  async resolve(token: string): Promise<TokenLookup> {
    let expired = false;
    for (const r of this.resolvers) {
      const found = await r.resolve(token);
      if (found && 'expired' in found) expired = true;
      else if (found) return found;
    }
    return expired ? { expired: true } : null;
  }
}

/** client-server-api/_index.md "Using access tokens": Authorization: Bearer, or the deprecated query parameter. */
export function extractAccessToken(ctx: ApiContext): string | null {
  const h = ctx.get('authorization');
  if (h) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
    return m ? m[1]! : null;
  }
  const q = ctx.query.access_token;
  return typeof q === 'string' && q.length > 0 ? q : null;
}

export function requireAuth(tokens: AccessTokens) {
  return async (ctx: ApiContext, next: Next) => {
    const token = extractAccessToken(ctx);
    if (!token) {
      if (ctx.get('authorization')) throw unknownToken(false, 'Malformed Authorization header');
      throw missingToken();
    }
    const r = await tokens.resolve(token);
    if (!r) throw unknownToken(false);
    if ('expired' in r) throw unknownToken(true, 'Access token has expired');
    ctx.state.requester = r;
    await next();
  };
}

/** For endpoints where authentication is optional (e.g. public room directory): sets requester if a good token is given. */
export function optionalAuth(tokens: AccessTokens) {
  return async (ctx: ApiContext, next: Next) => {
    const token = extractAccessToken(ctx);
    if (token) {
      const r = await tokens.resolve(token);
      if (!r) throw unknownToken(false);
      if ('expired' in r) throw unknownToken(true, 'Access token has expired');
      ctx.state.requester = r;
    }
    await next();
  };
}
