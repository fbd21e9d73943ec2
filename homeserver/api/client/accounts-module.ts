// The accounts feature module: creates the account, UIA and related services, registers the session
// store as a token resolver and the UIA stages, and mounts the client-server routes of registration,
// login, account management, devices, profiles, account data, filters and capabilities.
import type { Homeserver, Module } from '../../homeserver.ts';
import type { ApiContext } from '../../http/api.ts';
import { badJson } from '../../errors.ts';
import { checkPasswordLimited, identifiedUser } from './helpers.ts';
import { initAccounts } from '../../services/accounts.ts';
import { UiaService, type StageResult } from '../../services/uia.ts';
import { releaseRegistrationToken, reserveRegistrationToken } from '../../services/registration-tokens.ts';
import { registrationRoutes } from './registration.ts';
import { loginRoutes } from './login.ts';
import { deviceRoutes } from './devices.ts';
import { profileRoutes } from './profile.ts';
import { accountDataRoutes } from './account-data.ts';
import { filterRoutes } from './filter.ts';
import { capabilitiesRoutes } from './capabilities.ts';
import { sharedSecretRegistrationRoutes } from '../admin/shared-secret-registration.ts';
import { accountRoutes } from './account.ts';

async function passwordStage(hs: Homeserver, auth: Record<string, unknown>, userId: string | null): Promise<StageResult> {
  if (typeof auth.password !== 'string') throw badJson('auth.password must be a string');
  const who = identifiedUser(hs, auth);
  // On authenticated endpoints the password must be the requester's own.
  if (!userId || who !== userId) return { ok: false, errcode: 'M_FORBIDDEN', error: 'Invalid username or password' };
  const r = await checkPasswordLimited(hs, userId, auth.password);
  if (r !== 'ok') return { ok: false, errcode: 'M_FORBIDDEN', error: 'Invalid username or password' };
  return { ok: true };
}

export const accountsModule: Module = {
  name: 'accounts',
  init(hs) {
    initAccounts(hs);
    const uia = new UiaService(hs);
    hs.services.uia = uia;
    uia.register('m.login.password', (auth, sc) => passwordStage(hs, auth, sc.userId));
    uia.register('m.login.registration_token', async (auth) => {
      if (hs.config.registration.mode !== 'token') return { ok: false, errcode: 'M_FORBIDDEN', error: 'Registration tokens are not in use' };
      if (typeof auth.token !== 'string') throw badJson('auth.token must be a string');
      if (!(await reserveRegistrationToken(hs.db, auth.token, hs.now()))) return { ok: false, errcode: 'M_FORBIDDEN', error: 'Invalid registration token' };
      return { ok: true, data: { registration_token: auth.token } };
    });
    uia.abandonListeners.push(async (data) => {
      if (typeof data.registration_token === 'string') await releaseRegistrationToken(hs.db, data.registration_token);
    });
  },
  routes(api, hs) {
    registrationRoutes(api, hs);
    loginRoutes(api, hs);
    accountRoutes(api, hs);
    deviceRoutes(api, hs);
    profileRoutes(api, hs);
    accountDataRoutes(api, hs);
    filterRoutes(api, hs);
    capabilitiesRoutes(api, hs);
    sharedSecretRegistrationRoutes(api, hs);
  },
};
