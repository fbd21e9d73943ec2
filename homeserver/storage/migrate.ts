// Versioned migrations, applied at start-up, the same on PostgreSQL and PGlite. Each migration is a
// module in ./migrations named NNNN_what.ts exporting `up(db)`; they run in name order, each once.
// Migrations are never edited after they land: a change is a new migration.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Migrator, sql, type Migration, type MigrationProvider } from 'kysely';
import type { Logger } from 'pino';
import type { Db } from './schema.ts';

const dir = join(import.meta.dirname, 'migrations');

class DirectoryMigrations implements MigrationProvider {
  async getMigrations(): Promise<Record<string, Migration>> {
    const out: Record<string, Migration> = {};
    for (const name of readdirSync(dir).sort()) {
      if (!/^\d{4}_[a-z0-9_]+\.ts$/.test(name)) continue;
      const mod = (await import(pathToFileURL(join(dir, name)).href)) as Migration;
      out[name.replace(/\.ts$/, '')] = mod;
    }
    return out;
  }
}

export async function runMigrations(db: Db, logger: Logger, schema: string | null = null): Promise<void> {
  // Each module owns a range of migration numbers (accounts 0010–0019, rooms 0030–0039, federation
  // 0090–0099 …), so a new migration can sort below one a database already has: apply it anyway.
  const migrator = new Migrator({
    db: withOwnSchemaIntrospection(db),
    provider: new DirectoryMigrations(),
    allowUnorderedMigrations: true,
    ...(schema ? { migrationTableSchema: schema } : {}),
  });
  const { error, results } = await migrator.migrateToLatest();
  for (const r of results ?? []) {
    if (r.status === 'Success') logger.info({ migration: r.migrationName }, 'migration applied');
    else if (r.status === 'Error') logger.error({ migration: r.migrationName }, 'migration failed');
  }
  if (error) throw error;
}

/**
 * kysely's Migrator asks its introspector whether its tables exist, and the PostgreSQL introspector
 * reads every table of every schema (with per-table function calls). That both finds another schema's
 * kysely_migration table and fails when another schema is dropped meanwhile (several test servers, or
 * several deployments, sharing one database). The Migrator only needs schema and table names, so it
 * gets a view of `db` whose introspection lists the tables of the current schema (search_path) only.
 */
function withOwnSchemaIntrospection(db: Db): Db {
  const introspection = {
    async getSchemas() {
      const r = await sql<{ name: string }>`select nspname as name from pg_namespace`.execute(db);
      return r.rows;
    },
    async getTables() {
      const r = await sql<{ name: string; schema: string }>`
        select tablename as name, schemaname as schema from pg_tables where schemaname = current_schema()`.execute(db);
      return r.rows.map((t) => ({ ...t, isView: false, columns: [] }));
    },
    async getMetadata() {
      return { tables: await this.getTables() };
    },
  };
  return new Proxy(db, {
    get(target, prop) {
      if (prop === 'introspection') return introspection;
      const v = Reflect.get(target, prop, target) as unknown;
      // kysely's classes keep their state in private fields: call methods on the real instance.
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
