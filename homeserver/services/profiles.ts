// Profiles (client-server-api "Profiles"): displayname, avatar_url, m.tz and custom fields named with
// the common namespaced identifier grammar. Limits from the spec: key names ≤ 255 bytes
// (M_KEY_TOO_LARGE), the whole profile < 64 KiB as JSON (M_PROFILE_TOO_LARGE).
import { sql } from 'kysely';
import type { Homeserver } from '../homeserver.ts';
import { MatrixError, badJson, invalidParam } from '../errors.ts';

export interface ProfileFieldsTable {
  user_id: string;
  field: string;
  value: string;
}

declare module '../storage/schema.ts' {
  interface Tables {
    profile_fields: ProfileFieldsTable;
  }
}

export interface ProfileChange {
  userId: string;
  /** The field that changed. */
  field: string;
  /** The new value; undefined when the field was deleted. */
  value: unknown;
  /** The whole profile after the change. */
  profile: Record<string, unknown>;
}

export type ProfileListener = (change: ProfileChange) => void | Promise<void>;

export const PROFILE_MAX_BYTES = 64 * 1024;
const PROFILE_LOCK = 7_240_003;
export const PROFILE_KEY_MAX_BYTES = 255;

/** The keyName grammar of PUT/GET/DELETE /profile/{userId}/{keyName}. */
export function isValidProfileKey(key: string): boolean {
  return /^(avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$/.test(key);
}

/** Checks a key and value from a client; throws the spec's error. */
export function validateProfileField(key: string, value: unknown): void {
  if (Buffer.byteLength(key) > PROFILE_KEY_MAX_BYTES) throw new MatrixError(400, 'M_KEY_TOO_LARGE', 'Profile key exceeds 255 bytes');
  if (!isValidProfileKey(key)) throw invalidParam('Invalid profile key');
  if (key === 'displayname' && typeof value !== 'string') throw badJson('displayname must be a string');
  if (key === 'avatar_url' && (typeof value !== 'string' || !/^mxc:\/\/[^/]+\/[^/]+$/.test(value))) throw badJson('avatar_url must be an mxc:// URI');
  if (key === 'm.tz' && typeof value !== 'string') throw badJson('m.tz must be a string');
}

export class ProfileService {
  private readonly hs: Homeserver;
  readonly listeners: ProfileListener[] = [];
  /** Set by the federation side: fetches a remote user's profile (or just `field`); null when unknown. */
  remoteProvider: ((userId: string, field?: string) => Promise<Record<string, unknown> | null>) | null = null;
  constructor(hs: Homeserver) {
    this.hs = hs;
  }

  async remoteProfile(userId: string, field?: string): Promise<Record<string, unknown> | null> {
    return this.remoteProvider ? this.remoteProvider(userId, field) : null;
  }

  /** The profile of a local user, or null when the user does not exist. */
  async getProfile(userId: string): Promise<Record<string, unknown> | null> {
    const user = await this.hs.db.selectFrom('users').select('user_id').where('user_id', '=', userId).executeTakeFirst();
    if (!user) return null;
    const rows = await this.hs.db.selectFrom('profile_fields').select(['field', 'value']).where('user_id', '=', userId).execute();
    const out: Record<string, unknown> = {};
    for (const r of rows) out[r.field] = JSON.parse(r.value);
    return out;
  }

  async getField(userId: string, field: string): Promise<{ found: boolean; value?: unknown }> {
    const row = await this.hs.db.selectFrom('profile_fields').select('value').where('user_id', '=', userId).where('field', '=', field).executeTakeFirst();
    return row ? { found: true, value: JSON.parse(row.value) } : { found: false };
  }

  /** displayname and avatar_url of many users at once (member events, user directory). */
  async getBasicProfiles(userIds: string[]): Promise<Map<string, { displayname?: string; avatar_url?: string }>> {
    const out = new Map<string, { displayname?: string; avatar_url?: string }>();
    if (userIds.length === 0) return out;
    const rows = await this.hs.db
      .selectFrom('profile_fields')
      .select(['user_id', 'field', 'value'])
      .where('user_id', 'in', userIds)
      .where('field', 'in', ['displayname', 'avatar_url'])
      .execute();
    for (const r of rows) {
      const v = JSON.parse(r.value) as unknown;
      if (typeof v !== 'string') continue;
      const p = out.get(r.user_id) ?? {};
      if (r.field === 'displayname') p.displayname = v;
      else p.avatar_url = v;
      out.set(r.user_id, p);
    }
    return out;
  }

  /** Sets one field, keeping the whole profile under 64 KiB. `null` is stored as a value, not a deletion. */
  async setField(userId: string, field: string, value: unknown, opts: { notify?: boolean } = {}): Promise<void> {
    const json = JSON.stringify(value);
    const profile = await this.hs.db.transaction().execute(async (tx) => {
      // One writer per user at a time, so two new fields cannot both pass the size check.
      await sql`select pg_advisory_xact_lock(${PROFILE_LOCK}, hashtext(${userId}))`.execute(tx);
      const rows = await tx.selectFrom('profile_fields').select(['field', 'value']).where('user_id', '=', userId).execute();
      const next: Record<string, unknown> = {};
      for (const r of rows) next[r.field] = JSON.parse(r.value);
      next[field] = value;
      if (Buffer.byteLength(JSON.stringify(next)) >= PROFILE_MAX_BYTES) throw new MatrixError(400, 'M_PROFILE_TOO_LARGE', 'The profile would exceed 64 KiB');
      await tx
        .insertInto('profile_fields')
        .values({ user_id: userId, field, value: json })
        .onConflict((oc) => oc.columns(['user_id', 'field']).doUpdateSet({ value: json }))
        .execute();
      return next;
    });
    if (opts.notify !== false) await this.notify({ userId, field, value, profile });
  }

  async deleteField(userId: string, field: string): Promise<void> {
    const r = await this.hs.db.deleteFrom('profile_fields').where('user_id', '=', userId).where('field', '=', field).executeTakeFirst();
    if (Number(r.numDeletedRows) === 0) return;
    const profile = (await this.getProfile(userId)) ?? {};
    await this.notify({ userId, field, value: undefined, profile });
  }

  private async notify(change: ProfileChange): Promise<void> {
    for (const fn of this.listeners) {
      try {
        await fn(change);
      } catch (err) {
        this.hs.logger.warn({ err, user: change.userId }, 'profile listener failed');
      }
    }
  }
}
