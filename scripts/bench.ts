// `npm run bench [name …]`: runs every benchmark in scripts/bench/ (or the named ones). Each prints its
// figures beside what they are compared with (a target from the issues, or a raw baseline measured on
// the same machine). Benchmarks never assert: they report.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { cpus } from 'node:os';
import { LOCAL_PG_URL, localPostgresAnswers } from './bench/_db.ts';

const dir = join(import.meta.dirname, 'bench');
const wanted = process.argv.slice(2);
const names = readdirSync(dir)
  .filter((f) => f.endsWith('.ts') && !f.startsWith('_'))
  .map((f) => f.replace(/\.ts$/, ''))
  .filter((n) => wanted.length === 0 || wanted.includes(n))
  .sort();
// AXON_BENCH_DATABASE_URL chooses the database; AXON_BENCH_DATABASE=pglite forces the embedded one.
let dbNote = 'PostgreSQL (AXON_BENCH_DATABASE_URL)';
if (process.env.AXON_BENCH_DATABASE === 'pglite') {
  delete process.env.AXON_BENCH_DATABASE_URL;
  dbNote = 'PGlite (AXON_BENCH_DATABASE=pglite)';
} else if (!process.env.AXON_BENCH_DATABASE_URL) {
  if (await localPostgresAnswers()) {
    process.env.AXON_BENCH_DATABASE_URL = LOCAL_PG_URL;
    dbNote = `PostgreSQL at ${LOCAL_PG_URL} (answered; AXON_BENCH_DATABASE=pglite for the embedded database)`;
  } else dbNote = 'PGlite (no PostgreSQL at 127.0.0.1:5432; set AXON_BENCH_DATABASE_URL)';
}
console.log(`Axon benchmarks — node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}`);
console.log(`database: ${dbNote}`);
let failed = 0;
for (const n of names) {
  console.log(`\n## ${n}`);
  try {
    const mod = (await import(pathToFileURL(join(dir, `${n}.ts`)).href)) as { default: () => Promise<void> };
    await mod.default();
  } catch (err) {
    failed++;
    console.log(`${n}: FAILED — ${(err as Error).stack ?? err}`);
  }
}
process.exit(failed ? 1 : 0);
