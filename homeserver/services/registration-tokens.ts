// Registration tokens (client-server-api "Token-authenticated registration"): opaque strings of at
// most 64 characters, with an optional number of uses and an optional expiry. A use is "pending" while
// a registration that presented the token is in progress and "completed" once the account exists;
// pending + completed never exceeds uses_allowed.
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import type { Queryable } from '../storage/schema.ts';

export interface RegistrationTokensTable {
  token: string;
  uses_allowed: number | null;
  pending: number;
  completed: number;
  expiry_time: number | null;
  created_ts: number;
}

export interface RegistrationNoncesTable {
  nonce: string;
  created_ts: number;
}

declare module '../storage/schema.ts' {
  interface Tables {
    registration_tokens: RegistrationTokensTable;
    registration_nonces: RegistrationNoncesTable;
  }
}

/** Opaque identifier grammar (appendices "Opaque Identifiers"), at most 64 characters. */
export function isValidRegistrationToken(token: unknown): token is string {
  return typeof token === 'string' && /^[A-Za-z0-9._~-]{1,64}$/.test(token);
}

export async function createRegistrationToken(
  db: Queryable,
  now: number,
  opts: { token?: string; usesAllowed?: number | null; expiryTime?: number | null } = {},
): Promise<RegistrationTokensTable> {
  const token = opts.token ?? randomBytes(12).toString('base64url');
  if (!isValidRegistrationToken(token)) throw new Error('token must be 1-64 characters of A-Z a-z 0-9 . _ ~ -');
  const row: RegistrationTokensTable = {
    token,
    uses_allowed: opts.usesAllowed ?? null,
    pending: 0,
    completed: 0,
    expiry_time: opts.expiryTime ?? null,
    created_ts: now,
  };
  const inserted = await db.insertInto('registration_tokens').values(row).onConflict((oc) => oc.doNothing()).returning('token').executeTakeFirst();
  if (!inserted) throw new Error(`registration token ${token} already exists`);
  return row;
}

export async function listRegistrationTokens(db: Queryable): Promise<RegistrationTokensTable[]> {
  return db.selectFrom('registration_tokens').selectAll().orderBy('created_ts').execute();
}

/** Could the token be used right now (GET /register/m.login.registration_token/validity)? */
export async function isRegistrationTokenUsable(db: Queryable, token: string, now: number): Promise<boolean> {
  if (!isValidRegistrationToken(token)) return false;
  const row = await db.selectFrom('registration_tokens').selectAll().where('token', '=', token).executeTakeFirst();
  if (!row) return false;
  if (row.expiry_time !== null && row.expiry_time <= now) return false;
  if (row.uses_allowed !== null && row.pending + row.completed >= row.uses_allowed) return false;
  return true;
}

/** Reserves one use for a registration in progress; false when the token is unknown, expired or used up. */
export async function reserveRegistrationToken(db: Queryable, token: string, now: number): Promise<boolean> {
  if (!isValidRegistrationToken(token)) return false;
  const r = await db
    .updateTable('registration_tokens')
    .set({ pending: sql`pending + 1` })
    .where('token', '=', token)
    .where((eb) => eb.or([eb('expiry_time', 'is', null), eb('expiry_time', '>', now)]))
    .where((eb) => eb.or([eb('uses_allowed', 'is', null), eb(sql`pending + completed`, '<', eb.ref('uses_allowed'))]))
    .executeTakeFirst();
  return Number(r.numUpdatedRows) > 0;
}

/** The registration finished: the pending use becomes a completed one. */
export async function completeRegistrationToken(db: Queryable, token: string): Promise<void> {
  await db
    .updateTable('registration_tokens')
    .set({ pending: sql`greatest(pending - 1, 0)`, completed: sql`completed + 1` })
    .where('token', '=', token)
    .execute();
}

/** The registration was abandoned or failed: give the pending use back. */
export async function releaseRegistrationToken(db: Queryable, token: string): Promise<void> {
  await db.updateTable('registration_tokens').set({ pending: sql`greatest(pending - 1, 0)` }).where('token', '=', token).execute();
}
