// Accounts: users, passwords, devices and login sessions (access + refresh tokens), login tokens.
// Tokens are stored only as sha256 digests. The session store is the TokenResolver for password logins.
// Profiles and account data live in their own services (profiles.ts, account-data.ts); the accounts
// service gives the other modules one place to reach them.
import type { Homeserver } from '../homeserver.ts';
import type { Requester } from '../http/api.ts';
import type { TokenLookup, TokenResolver } from '../auth/access-tokens.ts';
import { MatrixError } from '../errors.ts';
import { dummyPasswordHash, hashPassword, randomDeviceId, randomId, randomToken, tokenHash, verifyPassword } from '../auth/secrets.ts';
import type { Queryable } from '../storage/schema.ts';
import { AccountDataService } from './account-data.ts';
import { ProfileService, type ProfileListener } from './profiles.ts';

export interface UsersTable {
  user_id: string;
  localpart: string;
  password_hash: string | null;
  is_guest: boolean;
  is_admin: boolean;
  created_ts: number;
  deactivated_ts: number | null;
  erased: boolean;
}
export interface DevicesTable {
  user_id: string;
  device_id: string;
  display_name: string | null;
  created_ts: number;
  last_seen_ts: number | null;
  last_seen_ip: string | null;
}
export interface SessionsTable {
  session_id: string;
  user_id: string;
  device_id: string;
  access_token_hash: string;
  access_expires_ts: number | null;
  refresh_token_hash: string | null;
  prev_refresh_token_hash: string | null;
  created_ts: number;
}
export interface LoginTokensTable {
  token_hash: string;
  user_id: string;
  expires_ts: number;
}

declare module '../storage/schema.ts' {
  interface Tables {
    users: UsersTable;
    devices: DevicesTable;
    sessions: SessionsTable;
    login_tokens: LoginTokensTable;
  }
}

declare module '../homeserver.ts' {
  interface Services {
    accounts: AccountService;
  }
}

export interface Device {
  device_id: string;
  display_name?: string;
  last_seen_ts?: number;
  last_seen_ip?: string;
}

export interface NewSession {
  userId: string;
  deviceId: string;
  accessToken: string;
  refreshToken?: string;
  /** Lifetime of the access token; absent when it does not expire. */
  expiresInMs?: number;
}

export interface SessionOptions {
  /** Reuse this device (its earlier sessions end) or create it. Absent: a new device id. */
  deviceId?: string | null;
  initialDisplayName?: string | null;
  /** The client supports refresh tokens. */
  refreshToken?: boolean;
}

interface CachedSession {
  requester: Requester;
  expiresTs: number | null;
  cachedAt: number;
  lastSeenWritten: number;
}

/** How long a resolved token is trusted from memory. Ending a session also drops it from every process's cache via the bus. */
const TOKEN_CACHE_MS = 30_000;
const TOKEN_CACHE_MAX = 50_000;
/** Device last_seen_ts is written at most this often per session. */
const LAST_SEEN_INTERVAL_MS = 60_000;
const INVALIDATE_CHANNEL = 'accounts:sessions-ended';

export class AccountService implements TokenResolver {
  private readonly hs: Homeserver;
  readonly profiles: ProfileService;
  readonly accountData: AccountDataService;
  /** Called after a user's displayname/avatar_url/other profile field changes (the rooms service updates member events). */
  readonly profileListeners: ProfileListener[];
  private readonly cache = new Map<string, CachedSession>();
  private readonly cacheByUser = new Map<string, Set<string>>();

  constructor(hs: Homeserver) {
    this.hs = hs;
    this.profiles = new ProfileService(hs);
    this.profileListeners = this.profiles.listeners;
    this.accountData = new AccountDataService(hs);
    hs.bus.subscribe(INVALIDATE_CHANNEL, (msg) => {
      if (typeof msg.userId === 'string') this.dropCachedUser(msg.userId);
    });
  }

  userIdFor(localpart: string): string {
    return `@${localpart}:${this.hs.serverName}`;
  }

  /** The local user id for `@user:server`, or a bare localpart; null when it names another server or is malformed. */
  localUserIdFrom(user: string): string | null {
    if (user.startsWith('@')) {
      const i = user.indexOf(':');
      if (i < 0 || user.slice(i + 1) !== this.hs.serverName) return null;
      return `@${user.slice(1, i).toLowerCase()}:${this.hs.serverName}`;
    }
    if (!user || user.includes(':')) return null;
    return this.userIdFor(user.toLowerCase());
  }

  isLocalUser(userId: string): boolean {
    return userId.endsWith(`:${this.hs.serverName}`) && userId.startsWith('@');
  }

  // ---- users ------------------------------------------------------------------------------------

  async getUser(userId: string, db: Queryable = this.hs.db): Promise<UsersTable | undefined> {
    return db.selectFrom('users').selectAll().where('user_id', '=', userId).executeTakeFirst();
  }

  /** True while nobody — not even a deactivated account — holds the localpart. */
  async isLocalpartAvailable(localpart: string): Promise<boolean> {
    const row = await this.hs.db.selectFrom('users').select('user_id').where('localpart', '=', localpart).executeTakeFirst();
    return !row;
  }

  /** Creates the account (throws M_USER_IN_USE when taken). The password is hashed here. */
  async createUser(opts: { localpart: string; password?: string | null; isGuest?: boolean; isAdmin?: boolean; displayname?: string | null }): Promise<string> {
    const userId = this.userIdFor(opts.localpart);
    const passwordHash = opts.password ? await hashPassword(opts.password) : null;
    const inserted = await this.hs.db
      .insertInto('users')
      .values({
        user_id: userId,
        localpart: opts.localpart,
        password_hash: passwordHash,
        is_guest: opts.isGuest ?? false,
        is_admin: opts.isAdmin ?? false,
        created_ts: this.hs.now(),
        deactivated_ts: null,
        erased: false,
      })
      .onConflict((oc) => oc.doNothing())
      .returning('user_id')
      .executeTakeFirst();
    if (!inserted) throw new MatrixError(400, 'M_USER_IN_USE', 'User ID already taken');
    // The display name defaults to the localpart (as clients expect to see something).
    const displayname = opts.displayname === undefined ? opts.localpart : opts.displayname;
    if (displayname !== null) await this.profiles.setField(userId, 'displayname', displayname, { notify: false });
    return userId;
  }

  /**
   * Checks a password in constant-ish time: an unknown or deactivated user still costs one argon2id
   * hash so timing does not reveal which accounts exist.
   */
  async checkPassword(userId: string, password: string): Promise<'ok' | 'wrong' | 'deactivated'> {
    const user = await this.getUser(userId);
    const ok = await verifyPassword(password, user?.password_hash ?? (await dummyPasswordHash()));
    if (!user || !user.password_hash || !ok) return 'wrong';
    if (user.deactivated_ts !== null) return 'deactivated';
    return 'ok';
  }

  async setPassword(userId: string, password: string): Promise<void> {
    const hash = await hashPassword(password);
    await this.hs.db.updateTable('users').set({ password_hash: hash }).where('user_id', '=', userId).execute();
  }

  /** Deactivation: the account keeps its row (so the localpart is never reused) but loses its password, sessions and devices. */
  async deactivate(userId: string, erase: boolean): Promise<void> {
    await this.hs.db.transaction().execute(async (tx) => {
      await tx
        .updateTable('users')
        .set({ deactivated_ts: this.hs.now(), erased: erase, password_hash: null })
        .where('user_id', '=', userId)
        .execute();
      await tx.deleteFrom('login_tokens').where('user_id', '=', userId).execute();
    });
    await this.logoutAll(userId);
    for (const fn of this.deactivationListeners) {
      try {
        await fn(userId, erase);
      } catch (err) {
        this.hs.logger.warn({ err, user: userId }, 'deactivation listener failed');
      }
    }
  }

  /** Called after an account is deactivated (the rooms service makes the user leave their rooms). */
  readonly deactivationListeners: Array<(userId: string, erase: boolean) => void | Promise<void>> = [];

  // ---- sessions ---------------------------------------------------------------------------------

  /** Starts a session on a device (creating it, or ending the device's earlier sessions when it exists). */
  async createSession(userId: string, opts: SessionOptions = {}): Promise<NewSession> {
    const deviceId = opts.deviceId || randomDeviceId();
    const now = this.hs.now();
    const accessToken = randomToken('axa');
    const wantsRefresh = !!opts.refreshToken && this.hs.config.auth.refresh_tokens;
    const refreshToken = wantsRefresh ? randomToken('axr') : undefined;
    const lifetime = wantsRefresh ? this.hs.config.auth.access_token_lifetime_ms : null;
    let replaced = false;
    await this.hs.db.transaction().execute(async (tx) => {
      await tx
        .insertInto('devices')
        .values({ user_id: userId, device_id: deviceId, display_name: opts.initialDisplayName ?? null, created_ts: now, last_seen_ts: now, last_seen_ip: null })
        .onConflict((oc) => oc.columns(['user_id', 'device_id']).doUpdateSet({ last_seen_ts: now }))
        .execute();
      // client-server-api "Relationship between access tokens and devices": a client-chosen device id ends that device's earlier tokens.
      const del = await tx.deleteFrom('sessions').where('user_id', '=', userId).where('device_id', '=', deviceId).executeTakeFirst();
      replaced = Number(del.numDeletedRows) > 0;
      await tx
        .insertInto('sessions')
        .values({
          session_id: randomId(),
          user_id: userId,
          device_id: deviceId,
          access_token_hash: tokenHash(accessToken),
          access_expires_ts: lifetime !== null ? now + lifetime : null,
          refresh_token_hash: refreshToken ? tokenHash(refreshToken) : null,
          prev_refresh_token_hash: null,
          created_ts: now,
        })
        .execute();
    });
    if (replaced) await this.sessionsEnded(userId);
    return {
      userId,
      deviceId,
      accessToken,
      ...(refreshToken ? { refreshToken } : {}),
      ...(lifetime !== null ? { expiresInMs: lifetime } : {}),
    };
  }

  /** POST /refresh: rotates the session's tokens. The used refresh token stays valid until the new tokens are used. */
  async refresh(refreshToken: string): Promise<{ accessToken: string; refreshToken: string; expiresInMs?: number } | null> {
    const h = tokenHash(refreshToken);
    const now = this.hs.now();
    const accessToken = randomToken('axa');
    const newRefresh = randomToken('axr');
    const lifetime = this.hs.config.auth.access_token_lifetime_ms;
    const row = await this.hs.db.transaction().execute(async (tx) => {
      const s = await tx
        .selectFrom('sessions')
        .select(['session_id', 'user_id', 'refresh_token_hash', 'prev_refresh_token_hash'])
        .where((eb) => eb.or([eb('refresh_token_hash', '=', h), eb('prev_refresh_token_hash', '=', h)]))
        .forUpdate()
        .executeTakeFirst();
      if (!s) return null;
      await tx
        .updateTable('sessions')
        .set({
          access_token_hash: tokenHash(accessToken),
          access_expires_ts: lifetime !== null ? now + lifetime : null,
          refresh_token_hash: tokenHash(newRefresh),
          // Using the current refresh token makes it the "previous" one; re-using the previous one keeps it.
          prev_refresh_token_hash: h,
        })
        .where('session_id', '=', s.session_id)
        .execute();
      return s;
    });
    if (!row) return null;
    await this.sessionsEnded(row.user_id);
    return { accessToken, refreshToken: newRefresh, ...(lifetime !== null ? { expiresInMs: lifetime } : {}) };
  }

  /** TokenResolver: access token → requester. Memory-cached for a short time; ended sessions leave the cache at once. */
  async resolve(token: string): Promise<TokenLookup> {
    const h = tokenHash(token);
    const now = this.hs.now();
    const hit = this.cache.get(h);
    if (hit && now - hit.cachedAt < TOKEN_CACHE_MS) {
      if (hit.expiresTs !== null && now >= hit.expiresTs) return { expired: true };
      this.touch(hit, now);
      return hit.requester;
    }
    const row = await this.hs.db
      .selectFrom('sessions')
      .innerJoin('users', 'users.user_id', 'sessions.user_id')
      .select(['sessions.session_id', 'sessions.user_id', 'sessions.device_id', 'sessions.access_expires_ts', 'sessions.prev_refresh_token_hash', 'users.is_guest'])
      .where('sessions.access_token_hash', '=', h)
      .executeTakeFirst();
    if (!row) {
      this.uncache(h);
      return null;
    }
    if (row.prev_refresh_token_hash !== null) {
      // First use of a refreshed access token revokes the refresh token it came from.
      await this.hs.db.updateTable('sessions').set({ prev_refresh_token_hash: null }).where('session_id', '=', row.session_id).execute();
    }
    const entry: CachedSession = {
      requester: { userId: row.user_id, deviceId: row.device_id, isGuest: row.is_guest, sessionId: row.session_id },
      expiresTs: row.access_expires_ts,
      cachedAt: now,
      lastSeenWritten: hit?.lastSeenWritten ?? 0,
    };
    if (entry.expiresTs !== null && now >= entry.expiresTs) return { expired: true };
    this.remember(h, entry);
    this.touch(entry, now);
    return entry.requester;
  }

  private remember(h: string, entry: CachedSession): void {
    if (this.cache.size >= TOKEN_CACHE_MAX) {
      // Drop the oldest tenth (Map iterates in insertion order).
      let n = Math.ceil(TOKEN_CACHE_MAX / 10);
      for (const k of this.cache.keys()) {
        if (n-- <= 0) break;
        this.uncache(k);
      }
    }
    this.cache.set(h, entry);
    let set = this.cacheByUser.get(entry.requester.userId);
    if (!set) this.cacheByUser.set(entry.requester.userId, (set = new Set()));
    set.add(h);
  }

  private uncache(h: string): void {
    const e = this.cache.get(h);
    if (!e) return;
    this.cache.delete(h);
    const set = this.cacheByUser.get(e.requester.userId);
    set?.delete(h);
    if (set && set.size === 0) this.cacheByUser.delete(e.requester.userId);
  }

  private dropCachedUser(userId: string): void {
    for (const h of this.cacheByUser.get(userId) ?? []) this.cache.delete(h);
    this.cacheByUser.delete(userId);
  }

  /** Every process forgets the user's cached sessions (after logout, device deletion, refresh, deactivation). */
  private async sessionsEnded(userId: string): Promise<void> {
    this.dropCachedUser(userId);
    await this.hs.bus.publish(INVALIDATE_CHANNEL, { userId });
  }

  private touch(entry: CachedSession, now: number): void {
    if (now - entry.lastSeenWritten < LAST_SEEN_INTERVAL_MS) return;
    entry.lastSeenWritten = now;
    const { userId, deviceId } = entry.requester;
    if (!deviceId) return;
    this.hs.db
      .updateTable('devices')
      .set({ last_seen_ts: now })
      .where('user_id', '=', userId)
      .where('device_id', '=', deviceId)
      .execute()
      .catch((err: unknown) => this.hs.logger.warn({ err }, 'could not record device last_seen_ts'));
  }

  async logout(requester: Requester): Promise<void> {
    // Logging out ends the device too (client-server-api POST /logout: "invalidates ... the device").
    if (requester.deviceId) await this.deleteDevices(requester.userId, [requester.deviceId]);
    else {
      await this.hs.db.deleteFrom('sessions').where('session_id', '=', requester.sessionId).execute();
      await this.sessionsEnded(requester.userId);
    }
  }

  /** Ends every session and device of the user. */
  async logoutAll(userId: string): Promise<void> {
    const ids = (await this.hs.db.selectFrom('devices').select('device_id').where('user_id', '=', userId).execute()).map((r) => r.device_id);
    await this.hs.db.deleteFrom('sessions').where('user_id', '=', userId).execute();
    await this.deleteDevices(userId, ids, true);
  }

  /** Ends every session and device of the user except the device `keepDeviceId` (password change with logout_devices). */
  async logoutOtherDevices(userId: string, keepDeviceId: string | null): Promise<void> {
    const ids = (await this.hs.db.selectFrom('devices').select('device_id').where('user_id', '=', userId).execute())
      .map((r) => r.device_id)
      .filter((d) => d !== keepDeviceId);
    await this.deleteDevices(userId, ids, true);
  }

  // ---- devices ----------------------------------------------------------------------------------

  /** Called with (userId, deviceIds) after devices are deleted: the e2ee service drops their keys. */
  readonly deviceDeletedListeners: Array<(userId: string, deviceIds: string[]) => void | Promise<void>> = [];

  async listDevices(userId: string): Promise<Device[]> {
    const rows = await this.hs.db.selectFrom('devices').selectAll().where('user_id', '=', userId).orderBy('created_ts').execute();
    return rows.map(toDevice);
  }

  async getDevice(userId: string, deviceId: string): Promise<Device | null> {
    const row = await this.hs.db.selectFrom('devices').selectAll().where('user_id', '=', userId).where('device_id', '=', deviceId).executeTakeFirst();
    return row ? toDevice(row) : null;
  }

  async renameDevice(userId: string, deviceId: string, displayName: string | null): Promise<boolean> {
    const r = await this.hs.db
      .updateTable('devices')
      .set({ display_name: displayName })
      .where('user_id', '=', userId)
      .where('device_id', '=', deviceId)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }

  /** Deletes devices and ends their sessions. Unknown ids are ignored. */
  async deleteDevices(userId: string, deviceIds: string[], always = false): Promise<void> {
    if (deviceIds.length === 0) {
      if (always) await this.sessionsEnded(userId);
      return;
    }
    await this.hs.db.transaction().execute(async (tx) => {
      await tx.deleteFrom('sessions').where('user_id', '=', userId).where('device_id', 'in', deviceIds).execute();
      await tx.deleteFrom('devices').where('user_id', '=', userId).where('device_id', 'in', deviceIds).execute();
    });
    for (const fn of this.deviceDeletedListeners) {
      try {
        await fn(userId, deviceIds);
      } catch (err) {
        this.hs.logger.warn({ err }, 'device deletion listener failed');
      }
    }
    await this.sessionsEnded(userId);
  }

  // ---- login tokens (m.login.token) -------------------------------------------------------------

  async createLoginToken(userId: string): Promise<{ token: string; expiresInMs: number }> {
    const token = randomToken('axl');
    const ttl = this.hs.config.auth.login_token_lifetime_ms;
    await this.hs.db.insertInto('login_tokens').values({ token_hash: tokenHash(token), user_id: userId, expires_ts: this.hs.now() + ttl }).execute();
    return { token, expiresInMs: ttl };
  }

  /** Single use: the token is deleted whether or not it has expired. */
  async consumeLoginToken(token: string): Promise<string | null> {
    const row = await this.hs.db.deleteFrom('login_tokens').where('token_hash', '=', tokenHash(token)).returning(['user_id', 'expires_ts']).executeTakeFirst();
    // Expired tokens of others are swept now and then.
    if (Math.random() < 0.05) await this.hs.db.deleteFrom('login_tokens').where('expires_ts', '<', this.hs.now()).execute();
    if (!row || row.expires_ts <= this.hs.now()) return null;
    return row.user_id;
  }

  // ---- delegates other modules use --------------------------------------------------------------

  /** Does `userId` ignore `other` (m.ignored_user_list)? */
  isIgnoring(userId: string, other: string): Promise<boolean> {
    return this.accountData.isIgnoring(userId, other);
  }

  /** Account data changed after stream position `since` (global rows have roomId null). */
  getAccountDataSince(userId: string, since: number) {
    return this.accountData.getSince(userId, since);
  }

  /** A filter stored with POST /user/{userId}/filter, or null. */
  getFilter(userId: string, filterId: string): Promise<Record<string, unknown> | null> {
    return this.accountData.getFilter(userId, filterId);
  }

  /** The account_data stream's current position. */
  accountDataPosition(): Promise<number> {
    return this.accountData.currentPosition();
  }
}

function toDevice(r: DevicesTable): Device {
  const d: Device = { device_id: r.device_id };
  if (r.display_name !== null) d.display_name = r.display_name;
  if (r.last_seen_ts !== null) d.last_seen_ts = r.last_seen_ts;
  if (r.last_seen_ip !== null) d.last_seen_ip = r.last_seen_ip;
  return d;
}

/** The module's init: creates the service and registers its token resolver. */
export function initAccounts(hs: Homeserver): AccountService {
  const accounts = new AccountService(hs);
  hs.services.accounts = accounts;
  hs.tokens.addResolver(accounts);
  return accounts;
}
