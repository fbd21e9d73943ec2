// Configuration: a YAML file (path from --config / AXON_CONFIG), defaults for everything, and
// environment variables that override single options (AXON_ + the option path in upper case, nested
// keys joined by "__": AXON_SERVER_NAME, AXON_DATABASE__URL, AXON_REGISTRATION__MODE).
// A bad config stops start-up with one line naming the option (ConfigError), never a stack trace.
import { accessSync, constants, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { isValidServerNameLoose } from './util/server-name.ts';

export class ConfigError extends Error {}

export type Resource = 'client' | 'federation' | 'keys' | 'media';
export const RESOURCES: readonly Resource[] = ['client', 'federation', 'keys', 'media'];

export interface ListenerConfig {
  bind_address: string;
  port: number;
  resources: Resource[];
  tls: { certificate: string; key: string } | null;
}

export interface RateLimitConfig {
  per_second: number;
  burst: number;
}

export interface Config {
  server_name: string;
  public_baseurl: string | null;
  data_dir: string;
  signing_key_path: string | null;
  key_validity_ms: number;
  old_signing_keys: Record<string, { key: string; expired_ts: number }>;
  listeners: ListenerConfig[];
  metrics: { enabled: boolean; bind_address: string; port: number };
  database: { url: string | null; pool_size: number; schema: string | null };
  redis: { url: string | null; prefix: string };
  log: { level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent' };
  http: { max_json_body_bytes: number; shutdown_grace_ms: number };
  well_known: { client_base_url: string | null; identity_server_base_url: string | null; server: string | null };
  registration: {
    mode: 'open' | 'token' | 'closed';
    shared_secret: string | null;
    allow_guests: boolean;
    reserved_localparts: string[];
  };
  auth: {
    access_token_lifetime_ms: number | null;
    refresh_tokens: boolean;
    login_token_lifetime_ms: number;
    password_min_length: number;
  };
  rate_limits: {
    enabled: boolean;
    login: RateLimitConfig;
    login_failures_per_account: RateLimitConfig;
    registration: RateLimitConfig;
    message: RateLimitConfig;
    media_upload: RateLimitConfig;
  };
  presence: { enabled: boolean; idle_timeout_ms: number; offline_timeout_ms: number };
  user_directory: { search_all_users: boolean };
  search: { language: string };
  media: MediaConfig;
  federation: FederationConfig;
}

export interface FederationConfig {
  /** Server name → base URL ("http://127.0.0.1:8448"), bypassing server discovery. */
  server_overrides: Record<string, string>;
  denied_ip_ranges: string[];
  allowed_ip_ranges: string[];
  verify_tls_certificates: boolean;
}

export interface ThumbnailSize {
  width: number;
  height: number;
  method: 'crop' | 'scale';
}

export interface MediaConfig {
  max_upload_bytes: number;
  store_path: string | null;
  backend: 'local' | 's3';
  s3: {
    endpoint: string | null;
    region: string;
    bucket: string | null;
    access_key_id: string | null;
    secret_access_key: string | null;
    prefix: string;
    path_style: boolean;
  };
  user_quota_bytes: number | null;
  user_quota_files: number | null;
  max_pending_uploads: number;
  unused_id_lifetime_ms: number;
  max_image_pixels: number;
  thumbnail_sizes: ThumbnailSize[];
  dynamic_thumbnails: boolean;
  legacy_unauthenticated_downloads: boolean;
  legacy_freeze_ts: number | null;
  remote_max_bytes: number;
  remote_timeout_ms: number;
  url_previews: {
    enabled: boolean;
    timeout_ms: number;
    max_bytes: number;
    max_redirects: number;
    cache_ms: number;
    denied_ip_ranges: string[];
    allowed_ip_ranges: string[];
    user_agent: string;
  };
}

type Kind =
  | { t: 'string'; nullable?: boolean; enum?: readonly string[]; check?: (v: string) => string | null }
  | { t: 'int'; nullable?: boolean; min?: number; max?: number }
  | { t: 'bool' }
  | { t: 'strings' }
  | { t: 'object'; fields: Record<string, Kind> }
  | { t: 'listeners' }
  | { t: 'list'; fields: Record<string, Kind> }
  | { t: 'oldkeys' }
  | { t: 'stringmap'; check?: (k: string, v: string) => string | null };

const rl = (): Kind => ({
  t: 'object',
  fields: { per_second: { t: 'int', min: 0 }, burst: { t: 'int', min: 1 } },
});

const SCHEMA: Record<string, Kind> = {
  server_name: { t: 'string', check: (v) => (isValidServerNameLoose(v) ? null : 'is not a valid server name') },
  public_baseurl: { t: 'string', nullable: true, check: (v) => (/^https?:\/\/[^/]+/.test(v) ? null : 'must be an http(s) URL') },
  data_dir: { t: 'string' },
  signing_key_path: { t: 'string', nullable: true },
  key_validity_ms: { t: 'int', min: 60_000 },
  old_signing_keys: { t: 'oldkeys' },
  listeners: { t: 'listeners' },
  metrics: {
    t: 'object',
    fields: { enabled: { t: 'bool' }, bind_address: { t: 'string' }, port: { t: 'int', min: 0, max: 65535 } },
  },
  database: {
    t: 'object',
    fields: {
      url: { t: 'string', nullable: true, check: (v) => (/^postgres(ql)?:\/\//.test(v) ? null : 'must be a postgres:// URL') },
      pool_size: { t: 'int', min: 1, max: 1000 },
      schema: { t: 'string', nullable: true, check: (v) => (/^[a-z_][a-z0-9_]{0,62}$/.test(v) ? null : 'must be a lower-case SQL identifier') },
    },
  },
  redis: {
    t: 'object',
    fields: {
      url: { t: 'string', nullable: true, check: (v) => (/^rediss?:\/\//.test(v) ? null : 'must be a redis:// URL') },
      prefix: { t: 'string' },
    },
  },
  log: { t: 'object', fields: { level: { t: 'string', enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] } } },
  http: {
    t: 'object',
    fields: { max_json_body_bytes: { t: 'int', min: 1024 }, shutdown_grace_ms: { t: 'int', min: 0 } },
  },
  well_known: {
    t: 'object',
    fields: {
      client_base_url: { t: 'string', nullable: true },
      identity_server_base_url: { t: 'string', nullable: true },
      server: { t: 'string', nullable: true },
    },
  },
  registration: {
    t: 'object',
    fields: {
      mode: { t: 'string', enum: ['open', 'token', 'closed'] },
      shared_secret: { t: 'string', nullable: true },
      allow_guests: { t: 'bool' },
      reserved_localparts: { t: 'strings' },
    },
  },
  auth: {
    t: 'object',
    fields: {
      access_token_lifetime_ms: { t: 'int', nullable: true, min: 1000 },
      refresh_tokens: { t: 'bool' },
      login_token_lifetime_ms: { t: 'int', min: 1000 },
      password_min_length: { t: 'int', min: 0 },
    },
  },
  rate_limits: {
    t: 'object',
    fields: {
      enabled: { t: 'bool' },
      login: rl(),
      login_failures_per_account: rl(),
      registration: rl(),
      message: rl(),
      media_upload: rl(),
    },
  },
  presence: {
    t: 'object',
    fields: { enabled: { t: 'bool' }, idle_timeout_ms: { t: 'int', min: 1000 }, offline_timeout_ms: { t: 'int', min: 1000 } },
  },
  user_directory: { t: 'object', fields: { search_all_users: { t: 'bool' } } },
  search: { t: 'object', fields: { language: { t: 'string', check: (v) => (/^[a-z_]{1,63}$/.test(v) ? null : 'must be a text search configuration name such as english') } } },
  media: {
    t: 'object',
    fields: {
      max_upload_bytes: { t: 'int', min: 1 },
      store_path: { t: 'string', nullable: true },
      backend: { t: 'string', enum: ['local', 's3'] },
      s3: {
        t: 'object',
        fields: {
          endpoint: { t: 'string', nullable: true, check: (v) => (/^https?:\/\/[^/]+/.test(v) ? null : 'must be an http(s) URL') },
          region: { t: 'string' },
          bucket: { t: 'string', nullable: true },
          access_key_id: { t: 'string', nullable: true },
          secret_access_key: { t: 'string', nullable: true },
          prefix: { t: 'string' },
          path_style: { t: 'bool' },
        },
      },
      user_quota_bytes: { t: 'int', nullable: true, min: 0 },
      user_quota_files: { t: 'int', nullable: true, min: 0 },
      max_pending_uploads: { t: 'int', min: 1 },
      unused_id_lifetime_ms: { t: 'int', min: 1000 },
      max_image_pixels: { t: 'int', min: 1 },
      thumbnail_sizes: {
        t: 'list',
        fields: { width: { t: 'int', min: 1, max: 10000 }, height: { t: 'int', min: 1, max: 10000 }, method: { t: 'string', enum: ['crop', 'scale'] } },
      },
      dynamic_thumbnails: { t: 'bool' },
      legacy_unauthenticated_downloads: { t: 'bool' },
      legacy_freeze_ts: { t: 'int', nullable: true, min: 0 },
      remote_max_bytes: { t: 'int', min: 1 },
      remote_timeout_ms: { t: 'int', min: 100 },
      url_previews: {
        t: 'object',
        fields: {
          enabled: { t: 'bool' },
          timeout_ms: { t: 'int', min: 100 },
          max_bytes: { t: 'int', min: 1024 },
          max_redirects: { t: 'int', min: 0, max: 20 },
          cache_ms: { t: 'int', min: 0 },
          denied_ip_ranges: { t: 'strings' },
          allowed_ip_ranges: { t: 'strings' },
          user_agent: { t: 'string' },
        },
      },
    },
  },
  federation: {
    t: 'object',
    fields: {
      server_overrides: {
        t: 'stringmap',
        check: (k, v) => (!isValidServerNameLoose(k) ? 'is not a server name' : /^https?:\/\/[^/]+\/?$/.test(v) ? null : 'must be an http(s) base URL'),
      },
      denied_ip_ranges: { t: 'strings' },
      allowed_ip_ranges: { t: 'strings' },
      verify_tls_certificates: { t: 'bool' },
    },
  },
};

export function defaultConfig(): Config {
  return {
    server_name: 'localhost',
    public_baseurl: null,
    data_dir: './data',
    signing_key_path: null,
    key_validity_ms: 24 * 3600 * 1000,
    old_signing_keys: {},
    listeners: [{ bind_address: '127.0.0.1', port: 8008, resources: ['client', 'federation', 'keys', 'media'], tls: null }],
    metrics: { enabled: true, bind_address: '127.0.0.1', port: 9009 },
    database: { url: null, pool_size: 10, schema: null },
    redis: { url: null, prefix: 'axon:' },
    log: { level: 'info' },
    http: { max_json_body_bytes: 1024 * 1024, shutdown_grace_ms: 10_000 },
    well_known: { client_base_url: null, identity_server_base_url: null, server: null },
    registration: { mode: 'open', shared_secret: null, allow_guests: false, reserved_localparts: ['admin', 'root', 'postmaster', 'abuse', 'support', 'security'] },
    auth: { access_token_lifetime_ms: null, refresh_tokens: true, login_token_lifetime_ms: 120_000, password_min_length: 8 },
    rate_limits: {
      enabled: true,
      login: { per_second: 1, burst: 10 },
      login_failures_per_account: { per_second: 1, burst: 5 },
      registration: { per_second: 1, burst: 5 },
      message: { per_second: 10, burst: 50 },
      media_upload: { per_second: 2, burst: 20 },
    },
    presence: { enabled: true, idle_timeout_ms: 5 * 60_000, offline_timeout_ms: 30_000 },
    user_directory: { search_all_users: false },
    search: { language: 'english' },
    media: {
      max_upload_bytes: 50 * 1024 * 1024,
      store_path: null,
      backend: 'local',
      s3: { endpoint: null, region: 'us-east-1', bucket: null, access_key_id: null, secret_access_key: null, prefix: '', path_style: true },
      user_quota_bytes: null,
      user_quota_files: null,
      max_pending_uploads: 10,
      unused_id_lifetime_ms: 24 * 3600 * 1000,
      max_image_pixels: 32_000_000,
      thumbnail_sizes: [
        { width: 32, height: 32, method: 'crop' },
        { width: 96, height: 96, method: 'crop' },
        { width: 320, height: 240, method: 'scale' },
        { width: 640, height: 480, method: 'scale' },
        { width: 800, height: 600, method: 'scale' },
      ],
      dynamic_thumbnails: true,
      legacy_unauthenticated_downloads: false,
      legacy_freeze_ts: null,
      remote_max_bytes: 50 * 1024 * 1024,
      remote_timeout_ms: 30_000,
      url_previews: {
        enabled: true,
        timeout_ms: 10_000,
        max_bytes: 10 * 1024 * 1024,
        max_redirects: 5,
        cache_ms: 24 * 3600 * 1000,
        denied_ip_ranges: [],
        allowed_ip_ranges: [],
        user_agent: 'Axon URL preview (Matrix homeserver)',
      },
    },
    federation: { server_overrides: {}, denied_ip_ranges: [], allowed_ip_ranges: [], verify_tls_certificates: true },
  };
}

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'list' : typeof v;
}

function validate(kind: Kind, value: unknown, path: string): unknown {
  switch (kind.t) {
    case 'string': {
      if (value === null && kind.nullable) return null;
      if (typeof value !== 'string') throw new ConfigError(`${path}: expected a string${kind.nullable ? ' or null' : ''}, got ${typeName(value)}`);
      if (kind.enum && !kind.enum.includes(value)) throw new ConfigError(`${path}: must be one of ${kind.enum.join(', ')}, got "${value}"`);
      const problem = kind.check?.(value);
      if (problem) throw new ConfigError(`${path}: ${problem} ("${value}")`);
      return value;
    }
    case 'int': {
      if (value === null && kind.nullable) return null;
      if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw new ConfigError(`${path}: expected an integer, got ${typeName(value)}`);
      if (kind.min !== undefined && value < kind.min) throw new ConfigError(`${path}: must be at least ${kind.min}, got ${value}`);
      if (kind.max !== undefined && value > kind.max) throw new ConfigError(`${path}: must be at most ${kind.max}, got ${value}`);
      return value;
    }
    case 'bool':
      if (typeof value !== 'boolean') throw new ConfigError(`${path}: expected true or false, got ${typeName(value)}`);
      return value;
    case 'strings':
      if (!Array.isArray(value) || !value.every((x) => typeof x === 'string')) throw new ConfigError(`${path}: expected a list of strings`);
      return value;
    case 'object':
      return validateObject(kind.fields, value, path);
    case 'list':
      if (!Array.isArray(value)) throw new ConfigError(`${path}: expected a list, got ${typeName(value)}`);
      return value.map((v, i) => validateObject(kind.fields, v, `${path}[${i}]`));
    case 'oldkeys': {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new ConfigError(`${path}: expected a map of key id to {key, expired_ts}`);
      const out: Record<string, unknown> = {};
      for (const [id, v] of Object.entries(value)) {
        if (!/^ed25519:[a-zA-Z0-9_]+$/.test(id)) throw new ConfigError(`${path}.${id}: key id must look like ed25519:abc`);
        out[id] = validateObject({ key: { t: 'string' }, expired_ts: { t: 'int', min: 0 } }, v, `${path}.${id}`);
      }
      return out;
    }
    case 'stringmap': {
      if (!isPlainObject(value)) throw new ConfigError(`${path}: expected a mapping of strings`);
      const out: Record<string, string> = {};
      for (const [k, v] of Object.entries(value)) {
        if (typeof v !== 'string') throw new ConfigError(`${path}.${k}: expected a string, got ${typeName(v)}`);
        const problem = kind.check?.(k, v);
        if (problem) throw new ConfigError(`${path}.${k}: ${problem} ("${v}")`);
        out[k] = v;
      }
      return out;
    }
    case 'listeners': {
      if (!Array.isArray(value) || value.length === 0) throw new ConfigError(`${path}: expected a non-empty list of listeners`);
      return value.map((l, i) => {
        const p = `${path}[${i}]`;
        const o = validateObject(
          {
            bind_address: { t: 'string' },
            port: { t: 'int', min: 0, max: 65535 },
            resources: { t: 'strings' },
            tls: { t: 'object', fields: { certificate: { t: 'string' }, key: { t: 'string' } } },
          },
          { bind_address: '127.0.0.1', resources: [...RESOURCES], tls: null, ...(l as object) },
          p,
          ['tls'],
        ) as unknown as ListenerConfig;
        for (const r of o.resources) if (!RESOURCES.includes(r)) throw new ConfigError(`${p}.resources: unknown resource "${r}" (known: ${RESOURCES.join(', ')})`);
        return o;
      });
    }
  }
}

function validateObject(fields: Record<string, Kind>, value: unknown, path: string, nullableKeys: string[] = []): Record<string, unknown> {
  if (value === null && path && nullableKeys.length === 0) throw new ConfigError(`${path}: expected a mapping, got null`);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new ConfigError(`${path || 'config'}: expected a mapping, got ${typeName(value)}`);
  const obj = value as Record<string, unknown>;
  for (const k of Object.keys(obj)) if (!(k in fields)) throw new ConfigError(`${path ? path + '.' : ''}${k}: unknown option`);
  const out: Record<string, unknown> = {};
  for (const [k, kind] of Object.entries(fields)) {
    const p = path ? `${path}.${k}` : k;
    if (!(k in obj)) throw new ConfigError(`${p}: missing required value`);
    if (obj[k] === null && nullableKeys.includes(k)) {
      out[k] = null;
      continue;
    }
    out[k] = validate(kind, obj[k], p);
  }
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Deep-merges `over` onto `base`: mappings merge key by key, everything else replaces. */
function merge(base: unknown, over: unknown): unknown {
  if (isPlainObject(base) && isPlainObject(over)) {
    const out: Record<string, unknown> = { ...base };
    for (const [k, v] of Object.entries(over)) out[k] = k in base ? merge(base[k], v) : v;
    return out;
  }
  return over;
}

/** AXON_A__B=value → {a: {b: value}}; the value is read as a YAML scalar (so numbers and booleans type). */
export function envOverrides(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith('AXON_') || raw === undefined) continue;
    if (name === 'AXON_CONFIG' || name.startsWith('AXON_TEST_') || name === 'AXON_SPEC_DIR' || name === 'AXON_STATE_RES_FIXTURES') continue;
    const path = name.slice(5).toLowerCase().split('__');
    let value: unknown;
    try {
      value = parseYaml(raw);
    } catch {
      value = raw;
    }
    let cur = out;
    for (let i = 0; i < path.length - 1; i++) {
      const k = path[i]!;
      if (!isPlainObject(cur[k])) cur[k] = {};
      cur = cur[k] as Record<string, unknown>;
    }
    cur[path[path.length - 1]!] = value;
  }
  return out;
}

export interface LoadOptions {
  /** Path of the YAML file, or null for defaults only. */
  path?: string | null;
  /** Already-parsed options (tests), applied after the file. */
  overrides?: Record<string, unknown>;
  env?: NodeJS.ProcessEnv;
  /** Create and check the data directory (off in pure validation). */
  prepareDataDir?: boolean;
}

export function loadConfig(opts: LoadOptions = {}): Config {
  let fromFile: unknown = {};
  if (opts.path) {
    let text: string;
    try {
      text = readFileSync(opts.path, 'utf8');
    } catch (err) {
      throw new ConfigError(`config file ${opts.path}: cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    try {
      fromFile = parseYaml(text) ?? {};
    } catch (err) {
      const first = String((err as Error).message).split('\n')[0];
      throw new ConfigError(`config file ${opts.path}: not valid YAML: ${first}`);
    }
    if (!isPlainObject(fromFile)) throw new ConfigError(`config file ${opts.path}: expected a mapping of options at the top level`);
  }
  let merged = merge(defaultConfig(), fromFile);
  if (opts.overrides) merged = merge(merged, opts.overrides);
  merged = merge(merged, envOverrides(opts.env ?? {}));
  const config = validateObject(SCHEMA, merged, '') as unknown as Config;
  if (opts.prepareDataDir !== false) prepareDataDir(config, opts.path ? resolve(opts.path, '..') : process.cwd());
  return config;
}

function prepareDataDir(config: Config, base: string): void {
  // Relative paths in a config file are relative to the working directory, as users expect from a CLI.
  void base;
  config.data_dir = isAbsolute(config.data_dir) ? config.data_dir : resolve(process.cwd(), config.data_dir);
  try {
    if (!existsSync(config.data_dir)) mkdirSync(config.data_dir, { recursive: true, mode: 0o700 });
    accessSync(config.data_dir, constants.W_OK | constants.R_OK);
  } catch (err) {
    throw new ConfigError(`data_dir: ${config.data_dir} is not a writable directory (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  for (const l of config.listeners) {
    for (const f of [l.tls?.certificate, l.tls?.key]) {
      if (f && !existsSync(f)) throw new ConfigError(`listeners: TLS file ${f} does not exist`);
    }
  }
}

/** The schema's option paths, for the test that config.sample.yaml documents every option. */
export function optionPaths(): string[] {
  const out: string[] = [];
  const walk = (fields: Record<string, Kind>, prefix: string) => {
    for (const [k, kind] of Object.entries(fields)) {
      const p = prefix ? `${prefix}.${k}` : k;
      if (kind.t === 'object') walk(kind.fields, p);
      else out.push(p);
    }
  };
  walk(SCHEMA, '');
  return out;
}
