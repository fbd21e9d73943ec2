// The route registry. Modules declare routes with the resource (API family) they belong to; each
// listener serves the resources its config names. Handlers are thin: parse, call a service, shape.
import type { Context, Next } from 'koa';
import type { Resource } from '../config.ts';

export interface Requester {
  userId: string;
  /** Null only for appservice-style tokens without a device (not used yet). */
  deviceId: string | null;
  isGuest: boolean;
  /** Identifies the session (access token row) so logout can end exactly this one. */
  sessionId: string;
}

export interface RequestState {
  requestId: string;
  requester?: Requester;
  /** Federation requests: the server name whose X-Matrix signature verified. */
  origin?: string;
  maxJsonBodyBytes: number;
}

export type ApiContext = Context & { state: RequestState; params: Record<string, string> };
export type Handler = (ctx: ApiContext, next: Next) => unknown | Promise<unknown>;

export type Method = 'GET' | 'PUT' | 'POST' | 'DELETE' | 'HEAD' | 'OPTIONS' | 'PATCH';

export interface RouteDef {
  resource: Resource;
  method: Method;
  /** A path-to-regexp v8 pattern, e.g. `/_matrix/client/v3/rooms/:roomId/state/:eventType{/:stateKey}` */
  path: string;
  handlers: Handler[];
}

export class Api {
  readonly routes: RouteDef[] = [];
  add(resource: Resource, method: Method, path: string | string[], ...handlers: Handler[]): this {
    for (const p of Array.isArray(path) ? path : [path]) this.routes.push({ resource, method, path: p, handlers });
    return this;
  }
  get(resource: Resource, path: string | string[], ...h: Handler[]) {
    return this.add(resource, 'GET', path, ...h);
  }
  put(resource: Resource, path: string | string[], ...h: Handler[]) {
    return this.add(resource, 'PUT', path, ...h);
  }
  post(resource: Resource, path: string | string[], ...h: Handler[]) {
    return this.add(resource, 'POST', path, ...h);
  }
  delete(resource: Resource, path: string | string[], ...h: Handler[]) {
    return this.add(resource, 'DELETE', path, ...h);
  }
}

/** Client-server paths are served under r0/v3 (and v1 for newer endpoints) — list the spec's ones. */
export function clientPaths(suffix: string, versions: string[] = ['v3', 'r0']): string[] {
  return versions.map((v) => `/_matrix/client/${v}${suffix}`);
}
