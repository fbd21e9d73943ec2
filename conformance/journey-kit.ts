// Small helpers the matrix-js-sdk journeys share: waiting on a condition, registering through the
// dummy stage of user-interactive auth, and starting a client up to its first sync.
import assert from 'node:assert/strict';
import { ClientEvent, type MatrixClient } from 'matrix-js-sdk';

/** The password every journey user registers with (long enough for the server's password rules). */
export const PASSWORD = 'correct horse battery staple';

export interface Credentials {
  userId: string;
  accessToken: string;
  deviceId: string;
}

type Maybe<T> = T | undefined | null | false;

/** Polls `fn` until it returns something truthy; fails the test with `what` after `ms`. */
export async function waitUntil<T>(what: string, fn: () => Maybe<T> | Promise<Maybe<T>>, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Registers `username` through `anon` (a client without a token): the first request learns the UIA
 * session (client-server-api "User-interactive authentication API"), the second completes m.login.dummy.
 */
export async function registerWithDummy(anon: MatrixClient, username: string, password = PASSWORD): Promise<Credentials> {
  let session: string | undefined;
  try {
    await anon.registerRequest({ username, password });
  } catch (err) {
    session = (err as { data?: { session?: string } }).data?.session;
  }
  const r = await anon.registerRequest({ username, password, auth: { type: 'm.login.dummy', session } as never });
  return { userId: r.user_id, accessToken: r.access_token!, deviceId: r.device_id! };
}

/** Starts `c` and resolves after its first sync has been processed. */
export async function startSyncing(c: MatrixClient, initialSyncLimit = 20): Promise<MatrixClient> {
  const ready = new Promise<void>((resolve) => {
    const on = (state: string) => {
      if (state === 'PREPARED' || state === 'SYNCING') {
        c.off(ClientEvent.Sync, on);
        resolve();
      }
    };
    c.on(ClientEvent.Sync, on);
  });
  await c.startClient({ initialSyncLimit });
  await ready;
  return c;
}
