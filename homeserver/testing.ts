// Starting real servers for tests: port 0, a fresh database each (in-memory PGlite, or a fresh
// PostgreSQL schema when AXON_TEST_DATABASE_URL is set), Redis when AXON_TEST_REDIS_URL is set.
import { existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { openDatabase, type Database } from './storage/database.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import pino from 'pino';
import { loadConfig, type Config } from './config.ts';
import { startHomeserver, type RunningServer } from './server.ts';
import type { Module } from './homeserver.ts';
import { MODULES } from './modules.ts';

export interface TestServerOptions {
  serverName?: string;
  /** Config options applied over the test defaults. */
  config?: Record<string, unknown>;
  now?: () => number;
  /** Keep the data dir between runs (restart tests). */
  dataDir?: string;
  /** Test-only modules added after the standard ones. */
  extraModules?: Module[];
}

export interface TestServer extends RunningServer {
  baseUrl: string;
  serverName: string;
  config: Config;
  dataDir: string;
}

// PGlite's initdb costs seconds; loading a dump of an already migrated database costs about one.
// Each test process reuses a template keyed by the migrations' contents, shared through the temp dir.
let templateBlob: Promise<Blob> | null = null;
function migrationsHash(): string {
  const dir = join(import.meta.dirname, 'storage', 'migrations');
  const h = createHash('sha256');
  for (const f of readdirSync(dir).sort()) h.update(f).update(readFileSync(join(dir, f)));
  return h.digest('hex').slice(0, 16);
}
async function pgliteTemplate(): Promise<Blob> {
  templateBlob ??= (async () => {
    const file = join(tmpdir(), `axon-pglite-template-${migrationsHash()}.tar`);
    if (existsSync(file)) return new Blob([readFileSync(file)]);
    const db = await openDatabase({ logger: pino({ level: 'silent' }) });
    const blob = await db.dump!();
    await db.close();
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, Buffer.from(await blob.arrayBuffer()));
    renameSync(tmp, file);
    return blob;
  })();
  return templateBlob;
}

async function openTestDatabase(): Promise<Database> {
  return openDatabase({ logger: pino({ level: 'silent' }), pgliteTemplate: await pgliteTemplate() });
}

export async function startTestServer(opts: TestServerOptions = {}): Promise<TestServer> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'axon-test-'));
  const pgUrl = process.env.AXON_TEST_DATABASE_URL || null;
  const redisUrl = process.env.AXON_TEST_REDIS_URL || null;
  const id = randomBytes(5).toString('hex');
  const schema = pgUrl ? `t_${id}` : null;
  // `config.database` is merged into the test database settings (e.g. a bench's pool_size), never replacing the fresh schema.
  const { database: databaseOverride, ...configOverrides } = opts.config ?? {};
  const config = loadConfig({
    overrides: {
      server_name: opts.serverName ?? 'localhost',
      data_dir: dataDir,
      listeners: [{ bind_address: '127.0.0.1', port: 0 }],
      metrics: { enabled: false, bind_address: '127.0.0.1', port: 0 },
      database: { pool_size: 5, ...((databaseOverride as Record<string, unknown> | undefined) ?? {}), url: pgUrl, schema },
      redis: { url: redisUrl, prefix: `axontest:${id}:` },
      log: { level: process.env.AXON_TEST_LOG_LEVEL ?? 'silent' },
      http: { max_json_body_bytes: 1024 * 1024, shutdown_grace_ms: 2000 },
      rate_limits: { enabled: false },
      ...configOverrides,
    },
  });
  const server = await startHomeserver(config, {
    logger: pino({ level: config.log.level }),
    // PGlite in memory unless the test keeps a data dir (restart tests need the files).
    inMemoryDatabase: !opts.dataDir,
    ...(!pgUrl && !opts.dataDir ? { database: await openTestDatabase() } : {}),
    modules: [...MODULES, ...(opts.extraModules ?? [])],
    ...(opts.now ? { now: opts.now } : {}),
  });
  const stop = server.stop;
  return {
    ...server,
    baseUrl: server.urls[0]!,
    serverName: config.server_name,
    config,
    dataDir,
    async stop() {
      await stop();
      if (schema && pgUrl) {
        const c = new pg.Client({ connectionString: pgUrl });
        await c.connect();
        try {
          await c.query(`drop schema if exists ${schema} cascade`);
        } finally {
          await c.end();
        }
      }
      if (!opts.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
