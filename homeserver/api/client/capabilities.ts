// Capabilities negotiation (client-server-api "Capabilities negotiation"): what this user may do here.
import { DEFAULT_ROOM_VERSION, ROOM_VERSIONS } from '../../../spec/room-versions.ts';
import type { Homeserver } from '../../homeserver.ts';
import { clientPaths, type Api, type ApiContext } from '../../http/api.ts';
import { requireAuth } from '../../auth/access-tokens.ts';

export function roomVersionsCapability(): { default: string; available: Record<string, 'stable' | 'unstable'> } {
  const available: Record<string, 'stable' | 'unstable'> = {};
  for (const [id, v] of ROOM_VERSIONS) available[id] = v.stable ? 'stable' : 'unstable';
  return { default: DEFAULT_ROOM_VERSION, available };
}

export function capabilitiesRoutes(api: Api, hs: Homeserver): void {
  api.get('client', clientPaths('/capabilities'), requireAuth(hs.tokens), (ctx: ApiContext) => {
    const guest = ctx.state.requester!.isGuest;
    ctx.body = {
      capabilities: {
        'm.change_password': { enabled: !guest },
        'm.room_versions': roomVersionsCapability(),
        'm.set_displayname': { enabled: true },
        'm.set_avatar_url': { enabled: !guest },
        'm.3pid_changes': { enabled: false },
        'm.get_login_token': { enabled: !guest },
        // Guests may change only their display name (modules/guest_access.md).
        'm.profile_fields': guest ? { enabled: true, allowed: ['displayname'] } : { enabled: true },
      },
    };
  });
}
