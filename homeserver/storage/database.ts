// Opens the database: real PostgreSQL through `pg` when a URL is configured, embedded PGlite otherwise.
// The same SQL and the same migrations run on both.
import { mkdirSync } from 'node:fs';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import type { Logger } from 'pino';
import { PGliteDialect } from './pglite-dialect.ts';
import { preparingPool } from './prepared-pool.ts';
import { runMigrations } from './migrate.ts';
import type { Db } from './schema.ts';

// int8 columns (stream positions, timestamps) fit in a double for any realistic deployment.
pg.types.setTypeParser(20, (v: string) => Number(v));

export interface DatabaseOptions {
  /** postgres://… ; when absent, PGlite stores its files in `pgliteDir` (or memory when that is absent too). */
  url?: string | null;
  pgliteDir?: string | null;
  poolSize?: number;
  /** PostgreSQL schema to use (created if missing). Tests use one schema each. */
  schema?: string | null;
  logger: Logger;
  /** PGlite only: start from this dump of a data directory (tests keep a migrated template). */
  pgliteTemplate?: Blob | null;
}

export interface Database {
  db: Db;
  kind: 'postgres' | 'pglite';
  health: DatabaseHealth;
  /** PGlite only: a dump of the data directory (File/Blob), for test templates. */
  dump?: () => Promise<Blob>;
  close(): Promise<void>;
}

/** Errors that mean the database is unreachable, as opposed to a bad query. */
export function isConnectionError(err: unknown): boolean {
  if (!err || typeof err !== 'object') return false;
  const e = err as { code?: string; message?: string };
  const code = e.code ?? '';
  if (['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH'].includes(code)) return true;
  // 08xxx connection exceptions, 57P01–57P03 admin shutdown / crash shutdown / cannot connect now
  if (/^08/.test(code) || /^57P0[123]$/.test(code)) return true;
  const msg = e.message ?? '';
  return /Connection terminated|connection is closed|Client has encountered a connection error|timeout exceeded when trying to connect/i.test(msg);
}

/**
 * Tracks whether the database answers. After a connection error it is marked down and probed with
 * exponential back-off (logged); requests meanwhile get 503 instead of waiting on a dead pool.
 */
export class DatabaseHealth {
  up = true;
  private probing = false;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly probe: () => Promise<void>;
  private readonly logger: Logger;
  constructor(probe: () => Promise<void>, logger: Logger) {
    this.probe = probe;
    this.logger = logger;
  }
  reportError(err: unknown): void {
    if (!isConnectionError(err) || this.closed) return;
    if (this.up) this.logger.error({ err: String((err as Error).message ?? err) }, 'database connection lost; retrying with back-off');
    this.up = false;
    if (!this.probing) this.startProbing(250);
  }
  private startProbing(delay: number): void {
    this.probing = true;
    this.timer = setTimeout(async () => {
      if (this.closed) return;
      try {
        await this.probe();
        this.up = true;
        this.probing = false;
        this.logger.info('database connection restored');
      } catch (err) {
        const next = Math.min(delay * 2, 30_000);
        this.logger.warn({ retryInMs: next, err: String((err as Error).message ?? err) }, 'database still unreachable');
        this.startProbing(next);
      }
    }, delay);
    this.timer.unref();
  }
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
  }
}

async function withRetry<T>(what: string, logger: Logger, fn: () => Promise<T>, attempts = 8): Promise<T> {
  let delay = 250;
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (err) {
      if (!isConnectionError(err) || i >= attempts) throw err;
      logger.warn({ attempt: i, retryInMs: delay, err: String((err as Error).message) }, `${what} failed; retrying`);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10_000);
    }
  }
}

export async function openDatabase(opts: DatabaseOptions): Promise<Database> {
  const { logger } = opts;
  if (opts.url) {
    const schema = opts.schema ?? null;
    if (schema !== null && !/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new Error(`invalid schema name ${schema}`);
    if (schema) {
      await withRetry('connecting to PostgreSQL', logger, async () => {
        const c = new pg.Client({ connectionString: opts.url! });
        await c.connect();
        try {
          await c.query(`create schema if not exists ${schema}`);
        } finally {
          await c.end();
        }
      });
    }
    const pool = preparingPool(new pg.Pool({
      connectionString: opts.url,
      max: opts.poolSize ?? 10,
      connectionTimeoutMillis: 5_000,
      ...(schema ? { options: `-c search_path=${schema}` } : {}),
    }));
    const db = new Kysely<any>({ dialect: new PostgresDialect({ pool }) }) as Db;
    const health = new DatabaseHealth(async () => void (await sql`select 1`.execute(db)), logger);
    // An idle client losing its connection must not crash the process.
    pool.on('error', (err) => health.reportError(err));
    await withRetry('connecting to PostgreSQL', logger, async () => void (await sql`select 1`.execute(db)));
    await runMigrations(db, logger, schema);
    return {
      db,
      kind: 'postgres',
      health,
      async close() {
        health.close();
        await db.destroy();
      },
    };
  }
  const { PGlite } = await import('@electric-sql/pglite');
  if (opts.pgliteDir) mkdirSync(opts.pgliteDir, { recursive: true });
  const pglite = await PGlite.create({
    ...(opts.pgliteDir ? { dataDir: opts.pgliteDir } : {}),
    ...(opts.pgliteTemplate ? { loadDataDir: opts.pgliteTemplate } : {}),
    parsers: { 20: (v: string) => Number(v) },
  });
  const db = new Kysely<any>({ dialect: new PGliteDialect(pglite) }) as Db;
  const health = new DatabaseHealth(async () => void (await sql`select 1`.execute(db)), logger);
  await runMigrations(db, logger);
  return {
    db,
    kind: 'pglite',
    health,
    dump: () => pglite.dumpDataDir('none'),
    async close() {
      health.close();
      await db.destroy();
    },
  };
}
