// Runs the whole test suite with node's test runner: every *.test.ts under the project's source folders.
// Extra arguments are passed through (e.g. `npm test -- --test-name-pattern=sync`), and a path argument
// narrows the run to test files containing it (e.g. `npm test -- spec/`).
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = join(import.meta.dirname, '..');
const folders = ['spec', 'federation', 'homeserver', 'conformance', 'scripts'];

function walk(dir: string, out: string[]): void {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.test.ts')) out.push(relative(root, p));
  }
}

const files: string[] = [];
for (const f of folders) {
  try { walk(join(root, f), files); } catch { /* folder may be empty */ }
}
const args = process.argv.slice(2);
const filters = args.filter((a) => !a.startsWith('-'));
const flags = args.filter((a) => a.startsWith('-'));
const selected = filters.length ? files.filter((f) => filters.some((x) => f.includes(x))) : files;
files.sort();
if (selected.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
const concurrency = process.env.TEST_CONCURRENCY ?? '2';
// No --test-force-exit: it ends a file's process while a describe() block still has tests to run,
// silently dropping them (seen with spec/power-levels.test.ts).
const r = spawnSync(process.execPath, ['--test', `--test-concurrency=${concurrency}`, '--test-timeout=300000', ...flags, ...selected.sort()], {
  stdio: 'inherit',
  cwd: root,
  env: process.env,
});
process.exit(r.status ?? 1);
