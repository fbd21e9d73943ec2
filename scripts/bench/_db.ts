// Where the database benchmarks run: the issues' targets are for PostgreSQL on this machine.
export const LOCAL_PG_URL = 'postgres://postgres@127.0.0.1:5432/test';

/** Whether the local development PostgreSQL answers. */
export async function localPostgresAnswers(): Promise<boolean> {
  const { default: pg } = await import('pg');
  const c = new pg.Client({ connectionString: LOCAL_PG_URL, connectionTimeoutMillis: 2_000 });
  try {
    await c.connect();
    await c.query('select 1');
    return true;
  } catch {
    return false;
  } finally {
    await c.end().catch(() => undefined);
  }
}
