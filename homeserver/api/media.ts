// The media repository module: the store (directory or S3), the media and URL-preview services, and
// the client, federation and admin routes.
import type { Module } from '../homeserver.ts';
import { createStore, MediaService } from '../services/media/media.ts';
import { UrlPreviewService } from '../services/media/preview.ts';
import { mediaClientRoutes } from './client/media.ts';
import { mediaFederationRoutes } from './federation/media.ts';
import { mediaAdminRoutes } from './admin/media.ts';

declare module '../homeserver.ts' {
  interface Services {
    urlPreviews: UrlPreviewService;
  }
}

export const mediaModule: Module = {
  name: 'media',
  async init(hs) {
    const media = new MediaService(hs, createStore(hs));
    await media.start();
    hs.services.media = media;
    hs.services.urlPreviews = new UrlPreviewService(media);
    hs.onShutdown(() => media.stop());
  },
  routes(api, hs) {
    mediaClientRoutes(api, hs);
    mediaFederationRoutes(api, hs);
    mediaAdminRoutes(api, hs);
  },
};
