// The running server's shared parts, handed to every module. Modules add their services to
// `Services` by augmentation:  declare module '../homeserver.ts' { interface Services { x: X } }
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Next } from 'koa';
import type { AccessTokens } from './auth/access-tokens.ts';
import type { Config, RateLimitConfig } from './config.ts';
import { limitExceeded } from './errors.ts';
import type { Api, ApiContext } from './http/api.ts';
import type { KeyRing } from './keys/signing-key-store.ts';
import type { HttpMetrics } from './metrics.ts';
import type { Bus } from './runtime/bus.ts';
import type { RateLimiter } from './runtime/rate-limiter.ts';
import type { Database } from './storage/database.ts';
import type { Db } from './storage/schema.ts';
import type { SyncStreams } from './sync/extensions.ts';

export interface Services {
  /** Streams that contribute to /sync (see sync/extensions.ts). Registered in modules' init. */
  syncStreams: SyncStreams;
}

export interface Homeserver {
  readonly config: Config;
  readonly serverName: string;
  readonly logger: Logger;
  readonly database: Database;
  readonly db: Db;
  readonly keys: KeyRing;
  readonly bus: Bus;
  readonly redis: Redis | null;
  readonly rateLimiter: RateLimiter;
  readonly tokens: AccessTokens;
  readonly api: Api;
  readonly metrics: HttpMetrics;
  readonly services: Services;
  /** The wall clock, in one place so tests can move it. */
  now(): number;
  /** Called first when shutting down (wake long-polls, stop timers). */
  onShutdown(fn: () => void | Promise<void>): void;
  /** True once shutdown has begun. */
  readonly stopping: boolean;
}

/** A feature module: creates its services, then registers its routes. */
export interface Module {
  name: string;
  init?(hs: Homeserver): void | Promise<void>;
  routes?(api: Api, hs: Homeserver): void;
}

export type RateLimitClass = 'login' | 'registration' | 'message' | 'media_upload';

/** Middleware that rate-limits by requester (or client IP when unauthenticated). */
export function rateLimit(hs: Homeserver, cls: RateLimitClass) {
  return async (ctx: ApiContext, next: Next) => {
    if (hs.config.rate_limits.enabled) {
      const limit: RateLimitConfig = hs.config.rate_limits[cls];
      const who = ctx.state.requester?.userId ?? `ip:${ctx.ip}`;
      const wait = await hs.rateLimiter.take(`${cls}:${who}`, limit);
      if (wait > 0) throw limitExceeded(wait);
    }
    await next();
  };
}
