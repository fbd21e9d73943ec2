// The sync feature module: push rules, typing, receipts and read markers, presence, push actions and
// unread counts, GET /notifications, and the /sync engine that delivers all of them (issue 5).
// Needs the accounts and rooms modules before it.
import type { Module } from '../homeserver.ts';
import { initPushRules } from '../services/push-rules.ts';
import { initTyping } from '../services/typing.ts';
import { initReceipts } from '../services/receipts.ts';
import { initPresence } from '../services/presence.ts';
import { initNotifications } from '../services/notifications.ts';
import { SyncService, accountDataStream } from './sync.ts';
import { pushRuleRoutes } from '../api/client/push-rules.ts';
import { typingRoutes } from '../api/client/typing.ts';
import { receiptRoutes } from '../api/client/receipts.ts';
import { presenceRoutes } from '../api/client/presence.ts';
import { notificationRoutes } from '../api/client/notifications.ts';
import { syncRoutes } from '../api/client/sync.ts';

export const syncModule: Module = {
  name: 'sync',
  init(hs) {
    initPushRules(hs);
    hs.services.syncStreams.register(accountDataStream(hs));
    initTyping(hs);
    initReceipts(hs);
    initPresence(hs).start();
    initNotifications(hs).start();
    hs.services.sync = new SyncService(hs);
  },
  routes(api, hs) {
    syncRoutes(api, hs);
    pushRuleRoutes(api, hs);
    typingRoutes(api, hs);
    receiptRoutes(api, hs);
    presenceRoutes(api, hs);
    notificationRoutes(api, hs);
  },
};
