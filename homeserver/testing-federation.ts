// Test networks of several Axon servers in one process: each server's federation client is told
// where the others listen (server-name overrides), so they federate over 127.0.0.1 without DNS.
import type { TestServer } from './testing.ts';

/** Makes every server reachable from every other one by its server name. */
export function linkServers(...servers: TestServer[]): void {
  for (const a of servers) {
    for (const b of servers) if (a !== b) a.hs.services.federation.overrides.set(b.serverName, b.baseUrl);
  }
}
