// Every feature module, in start-up order. A module's routes are served by the listeners whose
// resources include the routes' resource.
import type { Module } from './homeserver.ts';
import { coreModule } from './api/core.ts';
import { accountsModule } from './api/client/accounts-module.ts';
import { roomsModule } from './api/client/rooms.ts';
import { mediaModule } from './api/media.ts';
import { federationModule } from './api/federation/federation-module.ts';
import { e2eeModule } from './api/client/e2ee-module.ts';
import { syncModule } from './sync/module.ts';
import { historyModule } from './api/client/history-module.ts';

export const MODULES: Module[] = [coreModule, accountsModule, roomsModule, federationModule, mediaModule, e2eeModule, syncModule, historyModule];
