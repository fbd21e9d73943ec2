// The history, discovery and search feature module (issue 6): room history and relations, the room
// and user directories, server-side search, space hierarchies and content reports.
import type { Module } from '../../homeserver.ts';
import { initHistory } from '../../services/history.ts';
import { RoomDirectoryService } from '../../services/room-directory.ts';
import { UserDirectoryService } from '../../services/user-directory.ts';
import { initSearch } from '../../services/search.ts';
import { ReportService } from '../../services/reports.ts';
import { eventsPosition } from '../../sync/token.ts';
import { historyRoutes } from './history.ts';
import { discoveryRoutes } from './discovery.ts';

declare module '../../homeserver.ts' {
  interface Services {
    roomDirectory: RoomDirectoryService;
    userDirectory: UserDirectoryService;
  }
}

export const historyModule: Module = {
  name: 'history',
  async init(hs) {
    // /messages accepts /sync's next_batch and prev_batch tokens.
    initHistory(hs).tokenParsers.push(eventsPosition);
    hs.services.roomDirectory = new RoomDirectoryService(hs);
    hs.services.userDirectory = new UserDirectoryService(hs);
    hs.services.reports = new ReportService(hs);
    await initSearch(hs).init();
  },
  routes(api, hs) {
    historyRoutes(api, hs);
    discoveryRoutes(api, hs);
  },
};
