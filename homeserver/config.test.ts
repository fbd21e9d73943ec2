import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { ConfigError, defaultConfig, loadConfig, optionPaths } from './config.ts';

const tmp = () => mkdtempSync(join(tmpdir(), 'axon-cfg-'));
const root = join(import.meta.dirname, '..');

function writeCfg(text: string): string {
  const p = join(tmp(), 'c.yaml');
  writeFileSync(p, text);
  return p;
}

function expectConfigError(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    assert.match(err.message, re);
    assert.ok(!err.message.includes('\n'), 'one line');
    return true;
  });
}

test('defaults: server_name localhost, 127.0.0.1:8008 serving everything, data under ./data, open registration', () => {
  const c = loadConfig({ prepareDataDir: false });
  assert.equal(c.server_name, 'localhost');
  assert.deepEqual(c.listeners, [{ bind_address: '127.0.0.1', port: 8008, resources: ['client', 'federation', 'keys', 'media'], tls: null }]);
  assert.equal(c.data_dir, './data');
  assert.equal(c.registration.mode, 'open');
  assert.equal(c.http.max_json_body_bytes, 1048576);
});

test('config.sample.yaml documents every option with its default (registration closed in the sample)', () => {
  const text = readFileSync(join(root, 'config.sample.yaml'), 'utf8');
  const sample = parse(text) as Record<string, unknown>;
  const get = (path: string) => path.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], sample);
  const defaults = defaultConfig() as unknown as Record<string, unknown>;
  const getDefault = (path: string) => path.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], defaults);
  for (const p of optionPaths()) {
    assert.ok(get(p) !== undefined, `config.sample.yaml lacks ${p}`);
    if (p === 'registration.mode') assert.equal(get(p), 'closed');
    else assert.deepEqual(get(p), getDefault(p), `sample value of ${p} differs from the default`);
  }
  // And the sample loads as a valid config.
  const c = loadConfig({ path: join(root, 'config.sample.yaml'), prepareDataDir: false });
  assert.equal(c.registration.mode, 'closed');
});

test('a YAML file overrides defaults; env overrides the file', () => {
  const p = writeCfg('server_name: example.org\ndatabase:\n  pool_size: 3\n');
  const c = loadConfig({ path: p, env: { AXON_DATABASE__POOL_SIZE: '7', AXON_REGISTRATION__MODE: 'token' }, prepareDataDir: false });
  assert.equal(c.server_name, 'example.org');
  assert.equal(c.database.pool_size, 7);
  assert.equal(c.registration.mode, 'token');
});

test('unknown key names the option', () => {
  expectConfigError(() => loadConfig({ path: writeCfg('server_nmae: x\n'), prepareDataDir: false }), /^server_nmae: unknown option$/);
  expectConfigError(() => loadConfig({ path: writeCfg('database:\n  uri: x\n'), prepareDataDir: false }), /^database\.uri: unknown option$/);
});

test('wrong types name the option', () => {
  expectConfigError(() => loadConfig({ path: writeCfg('database:\n  pool_size: "ten"\n'), prepareDataDir: false }), /^database\.pool_size: expected an integer/);
  expectConfigError(() => loadConfig({ path: writeCfg('registration:\n  mode: sometimes\n'), prepareDataDir: false }), /^registration\.mode: must be one of open, token, closed/);
  expectConfigError(() => loadConfig({ path: writeCfg('listeners:\n  - port: 99999\n'), prepareDataDir: false }), /^listeners\[0\]\.port: must be at most 65535/);
  expectConfigError(() => loadConfig({ path: writeCfg('listeners:\n  - port: 1\n    resources: [chat]\n'), prepareDataDir: false }), /listeners\[0\]\.resources: unknown resource "chat"/);
  expectConfigError(() => loadConfig({ path: writeCfg('server_name: "bad name!"\n'), prepareDataDir: false }), /^server_name: is not a valid server name/);
  expectConfigError(() => loadConfig({ env: { AXON_METRICS__ENABLED: 'maybe' }, prepareDataDir: false }), /^metrics\.enabled: expected true or false/);
});

test('missing required value names the option', () => {
  expectConfigError(() => loadConfig({ path: writeCfg('listeners:\n  - bind_address: 127.0.0.1\n'), prepareDataDir: false }), /^listeners\[0\]\.port: missing required value$/);
});

test('not YAML, or not a mapping, is one clear line', () => {
  expectConfigError(() => loadConfig({ path: writeCfg('a: [\n'), prepareDataDir: false }), /not valid YAML/);
  expectConfigError(() => loadConfig({ path: writeCfg('- 1\n- 2\n'), prepareDataDir: false }), /expected a mapping/);
  expectConfigError(() => loadConfig({ path: '/nonexistent/axon.yaml', prepareDataDir: false }), /cannot be read \(ENOENT\)/);
});

test('unwritable data dir stops start-up naming data_dir', () => {
  const d = tmp();
  const file = join(d, 'a-file');
  writeFileSync(file, 'x');
  // A path under a regular file can never be created, whoever runs the test (root included).
  expectConfigError(() => loadConfig({ overrides: { data_dir: join(file, 'data') } }), /^data_dir: .* is not a writable directory/);
});
