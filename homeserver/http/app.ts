// Builds the koa application of one listener: request ids and logs, CORS, the error shape,
// database-availability guard, the routes of the listener's resources, and M_UNRECOGNIZED for the rest.
import { randomBytes } from 'node:crypto';
import Koa from 'koa';
import Router, { type RouterMiddleware } from '@koa/router';
import type { Logger } from 'pino';
import type { Resource } from '../config.ts';
import { MatrixError, unavailable, unknown, unrecognized } from '../errors.ts';
import { isConnectionError, type DatabaseHealth } from '../storage/database.ts';
import type { Api, ApiContext, Handler, RequestState } from './api.ts';
import type { HttpMetrics } from '../metrics.ts';

export interface AppOptions {
  api: Api;
  resources: readonly Resource[];
  logger: Logger;
  maxJsonBodyBytes: number;
  dbHealth: DatabaseHealth;
  metrics?: HttpMetrics;
}

// client-server-api/_index.md "Web Browser Clients": CORS headers on every response.
const CORS_HEADERS: Record<string, string> = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Methods': 'GET, POST, PUT, DELETE, OPTIONS',
  'Access-Control-Allow-Headers': 'X-Requested-With, Content-Type, Authorization',
};

function sendError(ctx: Koa.Context, err: MatrixError): void {
  ctx.status = err.status;
  for (const [k, v] of Object.entries(err.headers)) ctx.set(k, v);
  ctx.body = err.toJSON();
}

/** Request ids for the logs: a random per-process prefix and a counter (unique without a random draw per request). */
const REQUEST_ID_PREFIX = randomBytes(4).toString('hex');
let requestCounter = 0;
function nextRequestId(): string {
  requestCounter = (requestCounter + 1) % Number.MAX_SAFE_INTEGER;
  return `${REQUEST_ID_PREFIX}${requestCounter.toString(36)}`;
}

export function buildApp(opts: AppOptions): Koa {
  const app = new Koa();
  app.proxy = false;
  app.silent = true;
  const router = new Router();
  for (const r of opts.api.routes) {
    if (!opts.resources.includes(r.resource)) continue;
    router.register(r.path, [r.method], r.handlers as unknown as RouterMiddleware[]);
  }
  const routed = router.routes();
  // Routes without parameters, by method and exact path, skip the router: it tests every route's pattern
  // in turn, which a busy server (a thousand long-polls coming back each second to GET /sync) pays on
  // every request. Only paths no other route also matches go here, so what runs is what the router
  // would run; anything else (other spellings, trailing slashes, parameters) goes through the router.
  const exact = new Map<string, { pattern: string; run: (ctx: ApiContext, next: Koa.Next) => Promise<unknown> }>();
  for (const r of opts.api.routes) {
    if (!opts.resources.includes(r.resource) || /[:{}*()]/.test(r.path)) continue;
    for (const method of r.method === 'GET' ? ['GET', 'HEAD'] : [r.method]) {
      if (router.match(r.path, method).pathAndMethod.length === 1) exact.set(`${method} ${r.path}`, { pattern: r.path, run: chain(r.handlers) });
    }
  }
  const routes: Koa.Middleware = (ctx, next) => {
    const hit = exact.get(`${ctx.method} ${ctx.path}`);
    if (!hit) return routed(ctx as Parameters<typeof routed>[0], next);
    (ctx as ApiContext).params = {};
    ctx._matchedRoute = hit.pattern;
    return hit.run(ctx as ApiContext, next);
  };

  app.use(async (ctx, next) => {
    const started = process.hrtime.bigint();
    const state = ctx.state as RequestState;
    state.requestId = nextRequestId();
    state.maxJsonBodyBytes = opts.maxJsonBodyBytes;
    for (const [k, v] of Object.entries(CORS_HEADERS)) ctx.set(k, v);
    try {
      if (ctx.method === 'OPTIONS') {
        ctx.status = 204;
        return;
      }
      if (!opts.dbHealth.up && !ctx.path.startsWith('/_matrix/key/')) throw unavailable('Database unavailable, retry later');
      await next();
      if (ctx.body === undefined && ctx.status === 404) {
        // Nothing matched: 405 if the path exists with another method, otherwise 404 (both M_UNRECOGNIZED).
        const m = router.match(ctx.path, ctx.method);
        throw m.path.length > 0 ? unrecognized(405, 'Method not allowed for this endpoint') : unrecognized(404, 'Unrecognized request');
      }
    } catch (err) {
      if (err instanceof MatrixError) sendError(ctx, err);
      else if (isConnectionError(err)) {
        opts.dbHealth.reportError(err);
        sendError(ctx, unavailable('Database unavailable, retry later'));
      } else if (err && typeof err === 'object' && (err as { type?: string }).type === 'entity.too.large') {
        sendError(ctx, new MatrixError(413, 'M_TOO_LARGE', 'Request too large'));
      } else {
        opts.logger.error({ reqId: state.requestId, err }, 'unhandled error');
        sendError(ctx, unknown());
      }
    } finally {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const route = typeof ctx._matchedRoute === 'string' ? ctx._matchedRoute : 'unmatched';
      // One line per request. Never the query string (it may carry access_token) nor bodies.
      opts.logger.info(
        { reqId: state.requestId, method: ctx.method, route, status: ctx.status, ms: Math.round(ms * 100) / 100, user: state.requester?.userId },
        'request',
      );
      opts.metrics?.observe(ctx.method, route, ctx.status, ms / 1000);
    }
  });
  app.use(routes);
  return app;
}

/** The handlers of one route as one middleware: each handler's `next` is the following one, the last's is `next`. */
function chain(handlers: Handler[]): (ctx: ApiContext, next: Koa.Next) => Promise<unknown> {
  return (ctx, next) => {
    const run = async (i: number): Promise<unknown> => (i === handlers.length ? next() : handlers[i]!(ctx, () => run(i + 1) as Promise<void>));
    return run(0);
  };
}

export type { ApiContext };
