// Shared-secret registration, compatible with Synapse's /_synapse/admin/v1/register so existing admin
// tools and test suites work: GET returns a single-use nonce (valid 60 s, kept in the database so any
// process can redeem it); POST registers a user when `mac` is the hex HMAC-SHA1, keyed with the shared
// secret, of nonce \0 username \0 password \0 ("admin" | "notadmin") [\0 user_type].
// Enabled only when registration.shared_secret is set. Reserved localparts are allowed here.
import { createHmac, randomBytes } from 'node:crypto';
import { isValidLocalpartForRegistration } from '../../../spec/identifiers.ts';
import { rateLimit, type Homeserver } from '../../homeserver.ts';
import type { Api, ApiContext } from '../../http/api.ts';
import { readJsonObject } from '../../http/body.ts';
import { MatrixError, badJson, forbidden, invalidParam, missingParam } from '../../errors.ts';
import { constantTimeEqual } from '../../auth/secrets.ts';
import { sessionResponse } from '../client/helpers.ts';

const PATH = '/_synapse/admin/v1/register';
export const NONCE_LIFETIME_MS = 60_000;

export function registrationMac(secret: string, nonce: string, username: string, password: string, admin: boolean, userType?: string): string {
  const h = createHmac('sha1', secret);
  h.update(nonce);
  h.update('\0');
  h.update(username);
  h.update('\0');
  h.update(password);
  h.update('\0');
  h.update(admin ? 'admin' : 'notadmin');
  if (userType) {
    h.update('\0');
    h.update(userType);
  }
  return h.digest('hex');
}

export function sharedSecretRegistrationRoutes(api: Api, hs: Homeserver): void {
  const enabled = () => {
    if (!hs.config.registration.shared_secret) throw new MatrixError(400, 'M_UNKNOWN', 'Shared secret registration is not enabled');
    return hs.config.registration.shared_secret;
  };

  api.get('client', PATH, rateLimit(hs, 'registration'), async (ctx: ApiContext) => {
    enabled();
    const nonce = randomBytes(16).toString('hex');
    const now = hs.now();
    await hs.db.deleteFrom('registration_nonces').where('created_ts', '<', now - NONCE_LIFETIME_MS).execute();
    await hs.db.insertInto('registration_nonces').values({ nonce, created_ts: now }).execute();
    ctx.body = { nonce };
  });

  api.post('client', PATH, rateLimit(hs, 'registration'), async (ctx: ApiContext) => {
    const secret = enabled();
    const body = await readJsonObject(ctx);
    const { nonce, username, password, mac } = body;
    if (typeof nonce !== 'string') throw missingParam('nonce is required');
    if (typeof username !== 'string' || username.length === 0 || username.length > 512 || username.includes('\0')) throw badJson('Invalid username');
    if (typeof password !== 'string' || password.length > 512 || password.includes('\0')) throw badJson('Invalid password');
    if (typeof mac !== 'string') throw missingParam('mac is required');
    if (body.admin !== undefined && typeof body.admin !== 'boolean') throw badJson('admin must be a boolean');
    if (body.user_type !== undefined && body.user_type !== null && typeof body.user_type !== 'string') throw badJson('user_type must be a string');
    if (body.displayname !== undefined && typeof body.displayname !== 'string') throw badJson('displayname must be a string');
    // Single use: the nonce is gone after this, whatever the outcome.
    const row = await hs.db.deleteFrom('registration_nonces').where('nonce', '=', nonce).returning('created_ts').executeTakeFirst();
    if (!row || hs.now() - row.created_ts > NONCE_LIFETIME_MS) throw invalidParam('Unrecognised nonce');
    const admin = body.admin === true;
    const expected = registrationMac(secret, nonce, username, password, admin, (body.user_type as string | undefined) ?? undefined);
    if (!constantTimeEqual(expected, mac.toLowerCase())) throw forbidden('HMAC incorrect');

    const localpart = username.toLowerCase();
    if (!isValidLocalpartForRegistration(localpart, hs.serverName)) throw new MatrixError(400, 'M_INVALID_USERNAME', 'User ID may only contain a-z, 0-9, and . _ = - / +');
    const accounts = hs.services.accounts;
    const userId = await accounts.createUser({
      localpart,
      password,
      isAdmin: admin,
      ...(typeof body.displayname === 'string' ? { displayname: body.displayname } : {}),
    });
    hs.logger.info({ user: userId, admin }, 'user registered with the shared secret');
    const s = await accounts.createSession(userId, {});
    ctx.body = sessionResponse(hs, s);
  });
}
