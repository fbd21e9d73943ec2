// Assembles a homeserver from its config, starts its listeners, and stops it gracefully:
// stop accepting, let in-flight requests finish (bounded), wake long-polls, close the database.
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { AccessTokens } from './auth/access-tokens.ts';
import type { Config } from './config.ts';
import type { Homeserver, Module, Services } from './homeserver.ts';
import { Api } from './http/api.ts';
import { buildApp } from './http/app.ts';
import { loadOrCreateKeyRing } from './keys/signing-key-store.ts';
import { createLogger } from './logger.ts';
import { HttpMetrics } from './metrics.ts';
import { MODULES } from './modules.ts';
import { LocalBus, RedisBus, type Bus } from './runtime/bus.ts';
import { MemoryRateLimiter, RedisRateLimiter, type RateLimiter } from './runtime/rate-limiter.ts';
import { openDatabase, type Database } from './storage/database.ts';
import { SyncStreams } from './sync/extensions.ts';

export interface StartOptions {
  logger?: Logger;
  modules?: Module[];
  /** For tests: a clock to use instead of Date.now. */
  now?: () => number;
  /** For tests: PGlite in memory instead of under data_dir (ignored with PostgreSQL). */
  inMemoryDatabase?: boolean;
  /** For tests: an already opened database (from a template) instead of opening one from config. */
  database?: Database;
}

export interface RunningServer {
  hs: Homeserver;
  /** Bound addresses of the listeners, in config order ("http://127.0.0.1:8008"). */
  urls: string[];
  metricsUrl: string | null;
  stop(): Promise<void>;
}

async function connectRedis(url: string, logger: Logger, name: string): Promise<Redis> {
  const r = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 3,
    retryStrategy: (times) => Math.min(times * 200, 5_000),
    connectionName: name,
  });
  r.on('error', (err) => logger.warn({ err: err.message, conn: name }, 'redis error'));
  await r.connect();
  return r;
}

export async function startHomeserver(config: Config, opts: StartOptions = {}): Promise<RunningServer> {
  const logger = opts.logger ?? createLogger(config.log.level);
  const database = opts.database ?? await openDatabase({
    url: config.database.url,
    pgliteDir: config.database.url || opts.inMemoryDatabase ? null : join(config.data_dir, 'db'),
    poolSize: config.database.pool_size,
    schema: config.database.schema,
    logger,
  });
  const keyPath = config.signing_key_path ?? join(config.data_dir, 'signing.key');
  const keys = loadOrCreateKeyRing(keyPath, config.old_signing_keys);

  let redis: Redis | null = null;
  let redisSub: Redis | null = null;
  let bus: Bus;
  let rateLimiter: RateLimiter;
  if (config.redis.url) {
    redis = await connectRedis(config.redis.url, logger, 'axon');
    redisSub = await connectRedis(config.redis.url, logger, 'axon-sub');
    bus = new RedisBus(redis, redisSub, config.redis.prefix);
    rateLimiter = new RedisRateLimiter(redis, config.redis.prefix);
  } else {
    bus = new LocalBus();
    rateLimiter = new MemoryRateLimiter();
  }

  const shutdownHooks: Array<() => void | Promise<void>> = [];
  const api = new Api();
  const metrics = new HttpMetrics();
  const hs: Homeserver & { stopping: boolean } = {
    config,
    serverName: config.server_name,
    logger,
    database,
    db: database.db,
    keys,
    bus,
    redis,
    rateLimiter,
    tokens: new AccessTokens(),
    api,
    metrics,
    services: { syncStreams: new SyncStreams() } as Services,
    now: opts.now ?? Date.now,
    onShutdown: (fn) => void shutdownHooks.push(fn),
    stopping: false,
  };
  const modules = opts.modules ?? MODULES;
  for (const m of modules) await m.init?.(hs);
  for (const m of modules) m.routes?.(api, hs);

  const servers: Server[] = [];
  const sockets = new Set<Socket>();
  const urls: string[] = [];
  try {
    for (const l of config.listeners) {
      const app = buildApp({ api, resources: l.resources, logger, maxJsonBodyBytes: config.http.max_json_body_bytes, dbHealth: database.health, metrics });
      const handler = app.callback();
      const server = l.tls
        ? createHttpsServer({ cert: readFileSync(l.tls.certificate), key: readFileSync(l.tls.key) }, handler)
        : createHttpServer(handler);
      server.keepAliveTimeout = 65_000;
      server.requestTimeout = 0; // long-polls manage their own time
      server.on('connection', (s: Socket) => {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(l.port, l.bind_address, () => resolve());
      });
      servers.push(server);
      const a = server.address() as AddressInfo;
      const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
      urls.push(`${l.tls ? 'https' : 'http'}://${host}:${a.port}`);
      logger.info({ url: urls.at(-1), resources: l.resources }, 'listening');
    }
  } catch (err) {
    for (const s of servers) s.close();
    await database.close();
    throw err;
  }
  let metricsServer: Server | null = null;
  let metricsUrl: string | null = null;
  if (config.metrics.enabled) {
    metricsServer = await metrics.listen(config.metrics.bind_address, config.metrics.port);
    const a = metricsServer.address() as AddressInfo;
    metricsUrl = `http://${a.address}:${a.port}/metrics`;
  }

  let stopped: Promise<void> | null = null;
  const stop = () =>
    (stopped ??= (async () => {
      hs.stopping = true;
      logger.info('shutting down');
      for (const fn of shutdownHooks) {
        try {
          await fn();
        } catch (err) {
          logger.warn({ err }, 'shutdown hook failed');
        }
      }
      const closing = servers.map((s) => new Promise<void>((r) => s.close(() => r())));
      for (const s of servers) s.closeIdleConnections();
      const grace = new Promise<void>((r) => setTimeout(r, config.http.shutdown_grace_ms).unref());
      await Promise.race([Promise.all(closing), grace]);
      for (const s of sockets) s.destroy();
      await Promise.all(closing);
      metricsServer?.close();
      await bus.close();
      redis?.disconnect();
      redisSub?.disconnect();
      await database.close();
      logger.info('stopped');
    })());
  return { hs, urls, metricsUrl, stop };
}
