// Token-bucket rate limiting. One process keeps buckets in memory; several processes share them in
// Redis so a client cannot multiply its allowance by spreading requests over workers.
import type { Redis } from 'ioredis';
import type { RateLimitConfig } from '../config.ts';

export interface RateLimiter {
  /** Takes one token from the bucket `key`; returns 0 when allowed, else milliseconds to wait. */
  take(key: string, limit: RateLimitConfig, cost?: number): Promise<number>;
  /** Forgets a bucket (e.g. failed-login counter after a success). */
  reset(key: string): Promise<void>;
}

export class MemoryRateLimiter implements RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly now: () => number;
  constructor(now: () => number = Date.now) {
    this.now = now;
  }
  async take(key: string, limit: RateLimitConfig, cost = 1): Promise<number> {
    const now = this.now();
    const b = this.buckets.get(key) ?? { tokens: limit.burst, at: now };
    const refilled = Math.min(limit.burst, b.tokens + ((now - b.at) / 1000) * limit.per_second);
    if (refilled >= cost) {
      this.buckets.set(key, { tokens: refilled - cost, at: now });
      if (this.buckets.size > 100_000) this.sweep(now);
      return 0;
    }
    this.buckets.set(key, { tokens: refilled, at: now });
    if (limit.per_second <= 0) return 60_000;
    return Math.ceil(((cost - refilled) / limit.per_second) * 1000);
  }
  async reset(key: string): Promise<void> {
    this.buckets.delete(key);
  }
  private sweep(now: number): void {
    for (const [k, b] of this.buckets) if (now - b.at > 3_600_000) this.buckets.delete(k);
  }
}

// Atomic refill-and-take in Redis. KEYS[1] bucket; ARGV: per_second, burst, cost, now_ms.
const TAKE_SCRIPT = `
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local rate = tonumber(ARGV[1]); local burst = tonumber(ARGV[2]); local cost = tonumber(ARGV[3]); local now = tonumber(ARGV[4])
local tokens = tonumber(b[1]) or burst
local at = tonumber(b[2]) or now
tokens = math.min(burst, tokens + (now - at) / 1000 * rate)
local wait = 0
if tokens >= cost then tokens = tokens - cost
elseif rate <= 0 then wait = 60000
else wait = math.ceil((cost - tokens) / rate * 1000) end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('PEXPIRE', KEYS[1], 3600000)
return wait
`;

export class RedisRateLimiter implements RateLimiter {
  private readonly redis: Redis;
  private readonly prefix: string;
  constructor(redis: Redis, prefix: string) {
    this.redis = redis;
    this.prefix = prefix;
  }
  async take(key: string, limit: RateLimitConfig, cost = 1): Promise<number> {
    const wait = (await this.redis.eval(TAKE_SCRIPT, 1, `${this.prefix}rl:${key}`, limit.per_second, limit.burst, cost, Date.now())) as number;
    return Number(wait);
  }
  async reset(key: string): Promise<void> {
    await this.redis.del(`${this.prefix}rl:${key}`);
  }
}
