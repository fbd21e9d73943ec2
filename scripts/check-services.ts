// Fails (exit 1, one line each) unless PostgreSQL and Redis answer at the given URLs.
import pg from 'pg';
import { Redis } from 'ioredis';

const [pgUrl, redisUrl] = process.argv.slice(2);
let failed = false;
try {
  const c = new pg.Client({ connectionString: pgUrl, connectionTimeoutMillis: 5000 });
  await c.connect();
  const r = await c.query('select version() as v');
  console.log(`postgres: ${String(r.rows[0].v).split(',')[0]}`);
  await c.end();
} catch (err) {
  console.error(`FAIL: PostgreSQL unreachable at ${pgUrl}: ${(err as Error).message}`);
  failed = true;
}
try {
  const r = new Redis(redisUrl!, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null, connectTimeout: 5000 });
  r.on('error', () => {});
  await r.connect();
  console.log(`redis: ${await r.ping()}`);
  r.disconnect();
} catch (err) {
  console.error(`FAIL: Redis unreachable at ${redisUrl}: ${(err as Error).message}`);
  failed = true;
}
process.exit(failed ? 1 : 0);
