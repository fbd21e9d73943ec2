// The end-to-end encryption module: keys, cross-signing, to-device messages and key backup. It
// registers the `to_device` and `device_lists` sync streams, drops a device's keys and inbox when the
// device is deleted, and records memberships of encrypted rooms for device-list tracking.
//
// Dehydrated devices (MSC3814) are not part of Matrix v1.19, so there is nothing for them here.
import type { Homeserver, Module } from '../../homeserver.ts';
import type { Requester } from '../../http/api.ts';
import type { SyncContribution, SyncRequestInfo, SyncStream } from '../../sync/extensions.ts';
import { E2eeKeysService } from '../../services/e2ee-keys.ts';
import { ToDeviceService } from '../../services/to-device.ts';
import { KeyBackupService } from '../../services/key-backup.ts';
import { deviceListChangesFor, deviceListPosition, onPersistedEvents } from '../../services/device-lists.ts';
import { keysRoutes } from './keys.ts';
import { toDeviceRoutes } from './to-device.ts';
import { keyBackupRoutes } from './key-backup.ts';

export interface E2eeServices {
  keys: E2eeKeysService;
  toDevice: ToDeviceService;
  backup: KeyBackupService;
}

declare module '../../homeserver.ts' {
  interface Services {
    e2ee: E2eeServices;
  }
}

function deviceListsStream(hs: Homeserver, keys: E2eeKeysService): SyncStream {
  return {
    name: 'device_lists',
    currentPosition: (_requester: Requester) => deviceListPosition(hs.db),
    // Read with the other table-backed positions in the sync engine's one query.
    positionOf: { table: 'e2e_device_list_changes', column: 'stream_id' },
    async collect(info: SyncRequestInfo): Promise<SyncContribution> {
      const { userId, deviceId } = info.requester;
      const top: Record<string, unknown> = {};
      // device_lists only on incremental syncs (e2e "Extensions to /sync").
      if (info.since !== null) {
        const lists = await deviceListChangesFor(hs.db, userId, info.since, info.upTo, true);
        if (lists.changed.length > 0 || lists.left.length > 0) top.device_lists = lists;
      }
      if (deviceId) {
        // Cached per device (invalidated on upload, claim and deletion): every sync carries them.
        const { counts, fallbacks } = await keys.syncKeyCounts(userId, deviceId);
        top.device_one_time_keys_count = counts;
        top.device_unused_fallback_key_types = fallbacks;
      }
      return { top };
    },
  };
}

export const e2eeModule: Module = {
  name: 'e2ee',
  init(hs) {
    const keys = new E2eeKeysService(hs);
    const toDevice = new ToDeviceService(hs);
    hs.services.e2ee = { keys, toDevice, backup: new KeyBackupService(hs) };
    hs.services.syncStreams.register(toDevice.syncStream());
    hs.services.syncStreams.register(deviceListsStream(hs, keys));
    hs.services.accounts.deviceDeletedListeners.push(async (userId, deviceIds) => {
      await keys.devicesDeleted(userId, deviceIds);
      await toDevice.devicesDeleted(userId, deviceIds);
    });
    const writer = hs.services.rooms?.writer;
    writer?.persistListeners.push((events) => onPersistedEvents(hs, events));
  },
  routes(api, hs) {
    keysRoutes(api, hs);
    toDeviceRoutes(api, hs);
    keyBackupRoutes(api, hs);
  },
};
