// Typing notifications (modules/typing_notifications.md). Who is typing in which room is short-lived
// state: in memory for one process, in Redis when several processes serve the deployment, so a client
// syncing on one worker sees typing sent to another.
//
// The `typing` stream: every change of a room's typing set takes the next position and records it as
// the room's serial. A sync since position P reports, for each of the user's rooms whose serial is
// above P, the room's current typing set (typing is a snapshot, so reporting a later state than the
// position is harmless: at worst the next sync reports it again).
//
// Expiry: the process that accepted a typing notification keeps a timer for its timeout and removes
// the entry when it fires (if it was not refreshed meanwhile). Readers also ignore expired entries, so
// an entry left behind by a crashed process stops showing at the next change of that room.
import type { Redis } from 'ioredis';
import type { Homeserver } from '../homeserver.ts';
import type { SyncRequestInfo, SyncStream, SyncContribution } from '../sync/extensions.ts';

declare module '../homeserver.ts' {
  interface Services {
    typing: TypingService;
  }
}

export const MAX_TYPING_TIMEOUT_MS = 120_000;
export const DEFAULT_TYPING_TIMEOUT_MS = 30_000;

// KEYS: zset of the room, position counter, serial hash. ARGV: user, expiry ('' to remove), room id, now.
// Returns the new position, or 0 when the room's typing set did not change.
const SET_SCRIPT = `
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
local live = cur and tonumber(cur) > tonumber(ARGV[4])
if ARGV[2] == '' then
  if not cur then return 0 end
  redis.call('ZREM', KEYS[1], ARGV[1])
  if not live then return 0 end
else
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ${MAX_TYPING_TIMEOUT_MS * 2})
  if live then return 0 end
end
local p = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[3], ARGV[3], p)
return p`;

// Removes the entry only if it still has the expiry the timer was set for.
const EXPIRE_SCRIPT = `
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not cur or cur ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
local p = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[3], ARGV[3], p)
return p`;

export class TypingService {
  private readonly hs: Homeserver;
  private readonly redis: Redis | null;
  private readonly prefix: string;
  // In-memory state (one process).
  private readonly rooms = new Map<string, Map<string, number>>();
  private readonly serials = new Map<string, number>();
  private counter = 0;
  /** Expiry timers of the entries this process accepted, by room and user. */
  private readonly timers = new Map<string, { timer: NodeJS.Timeout; expiry: number }>();

  constructor(hs: Homeserver) {
    this.hs = hs;
    this.redis = hs.redis;
    this.prefix = `${hs.config.redis.prefix}typing:`;
    hs.onShutdown(() => {
      for (const t of this.timers.values()) clearTimeout(t.timer);
      this.timers.clear();
    });
  }

  private keys(roomId: string): [string, string, string] {
    return [`${this.prefix}room:${roomId}`, `${this.prefix}pos`, `${this.prefix}serial`];
  }

  /** Starts (timeoutMs > 0) or stops typing. Membership is the caller's concern. */
  async setTyping(roomId: string, userId: string, typing: boolean, timeoutMs = DEFAULT_TYPING_TIMEOUT_MS): Promise<void> {
    const timerKey = `${roomId}\u0000${userId}`;
    const old = this.timers.get(timerKey);
    if (old) {
      clearTimeout(old.timer);
      this.timers.delete(timerKey);
    }
    const now = this.hs.now();
    const expiry = now + Math.min(Math.max(timeoutMs, 0), MAX_TYPING_TIMEOUT_MS);
    let position = 0;
    if (this.redis) {
      position = Number(await this.redis.eval(SET_SCRIPT, 3, ...this.keys(roomId), userId, typing ? String(expiry) : '', roomId, String(now)));
    } else {
      let users = this.rooms.get(roomId);
      const cur = users?.get(userId);
      const live = cur !== undefined && cur > now;
      if (typing) {
        if (!users) this.rooms.set(roomId, (users = new Map()));
        users.set(userId, expiry);
        if (!live) position = this.bump(roomId);
      } else if (cur !== undefined) {
        users!.delete(userId);
        if (users!.size === 0) this.rooms.delete(roomId);
        if (live) position = this.bump(roomId);
      }
    }
    if (typing) {
      const timer = setTimeout(() => void this.expire(roomId, userId, expiry), expiry - now);
      timer.unref();
      this.timers.set(timerKey, { timer, expiry });
    }
    if (position > 0) await this.hs.bus.publish(`room:${roomId}`, { stream: 'typing', position });
  }

  private bump(roomId: string): number {
    this.counter++;
    this.serials.set(roomId, this.counter);
    return this.counter;
  }

  private async expire(roomId: string, userId: string, expiry: number): Promise<void> {
    const timerKey = `${roomId}\u0000${userId}`;
    if (this.timers.get(timerKey)?.expiry === expiry) this.timers.delete(timerKey);
    let position = 0;
    try {
      if (this.redis) {
        position = Number(await this.redis.eval(EXPIRE_SCRIPT, 3, ...this.keys(roomId), userId, String(expiry), roomId));
      } else {
        const users = this.rooms.get(roomId);
        if (users?.get(userId) === expiry) {
          users.delete(userId);
          if (users.size === 0) this.rooms.delete(roomId);
          position = this.bump(roomId);
        }
      }
      if (position > 0) await this.hs.bus.publish(`room:${roomId}`, { stream: 'typing', position });
    } catch (err) {
      this.hs.logger.warn({ err, roomId }, 'expiring a typing notification failed');
    }
  }

  async currentPosition(): Promise<number> {
    if (this.redis) return Number((await this.redis.get(`${this.prefix}pos`)) ?? 0);
    return this.counter;
  }

  /** Typing users (still within their timeout) of the rooms whose typing set changed after `since` (null: every room with typers). */
  async changedRooms(roomIds: readonly string[], since: number | null): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    if (roomIds.length === 0) return out;
    const now = this.hs.now();
    if (this.redis) {
      const serials = await this.redis.hmget(`${this.prefix}serial`, ...roomIds);
      const changed = roomIds.filter((_, i) => serials[i] !== null && (since === null || Number(serials[i]) > since));
      if (changed.length === 0) return out;
      const pipe = this.redis.pipeline();
      for (const r of changed) pipe.zrangebyscore(this.keys(r)[0], `(${now}`, '+inf');
      const res = (await pipe.exec()) ?? [];
      changed.forEach((r, i) => {
        const users = (res[i]?.[1] as string[] | undefined) ?? [];
        if (since !== null || users.length > 0) out.set(r, users);
      });
      return out;
    }
    for (const r of roomIds) {
      const serial = this.serials.get(r);
      if (serial === undefined || (since !== null && serial <= since)) continue;
      const users = [...(this.rooms.get(r)?.entries() ?? [])].filter(([, exp]) => exp > now).map(([u]) => u);
      if (since !== null || users.length > 0) out.set(r, users);
    }
    return out;
  }

  /** The `typing` sync stream: m.typing in each joined room's ephemeral events. */
  syncStream(): SyncStream {
    return {
      name: 'typing',
      currentPosition: () => this.currentPosition(),
      quietWhenUnchanged: true,
      collect: async (info: SyncRequestInfo): Promise<SyncContribution> => {
        const changed = await this.changedRooms(info.joinedRoomIds, info.since);
        if (changed.size === 0) return {};
        const roomEphemeral: Record<string, unknown[]> = {};
        for (const [roomId, users] of changed) roomEphemeral[roomId] = [{ type: 'm.typing', content: { user_ids: users } }];
        return { roomEphemeral };
      },
    };
  }
}

export function initTyping(hs: Homeserver): TypingService {
  const s = new TypingService(hs);
  hs.services.typing = s;
  hs.services.syncStreams.register(s.syncStream());
  return s;
}
