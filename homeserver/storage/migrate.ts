// Versioned migrations, applied at start-up, the same on PostgreSQL and PGlite. Each migration is a
// module in ./migrations named NNNN_what.ts exporting `up(db)`; they run in name order, each once.
// Migrations are never edited after they land: a change is a new migration.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Migrator, type Migration, type MigrationProvider } from 'kysely';
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
  // With a schema, kysely must look for its migration tables there: otherwise it sees another schema's
  // kysely_migration table (its introspection lists every schema), skips creating ours, and fails.
  // Each module owns a range of migration numbers (accounts 0010–0019, rooms 0030–0039, federation
  // 0090–0099 …), so a new migration can sort below one a database already has: apply it anyway.
  const migrator = new Migrator({
    db,
    provider: new DirectoryMigrations(),
    allowUnorderedMigrations: true,
    ...(schema ? { migrationTableSchema: schema } : {}),
  });
  for (let attempt = 1; ; attempt++) {
    const { error, results } = await migrator.migrateToLatest();
    for (const r of results ?? []) {
      if (r.status === 'Success') logger.info({ migration: r.migrationName }, 'migration applied');
      else if (r.status === 'Error') logger.error({ migration: r.migrationName }, 'migration failed');
    }
    if (!error) return;
    // kysely's introspection reads every schema of the database; one dropped meanwhile (another test
    // server's, or an admin's) fails it with invalid_schema_name. Nothing was applied (the migrations
    // run in one transaction), so try again.
    if (attempt < 5 && isOtherSchemaGone(error, schema)) {
      logger.warn({ err: (error as Error).message, attempt }, 'a schema vanished during migration introspection; retrying');
      await new Promise((r) => setTimeout(r, 50 * attempt));
      continue;
    }
    throw error;
  }
}

function isOtherSchemaGone(error: unknown, ours: string | null): boolean {
  const e = error as { code?: unknown; message?: unknown };
  if (e?.code !== '3F000' || typeof e.message !== 'string') return false;
  return ours === null || !e.message.includes(`"${ours}"`);
}
