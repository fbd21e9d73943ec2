// `npm run media-admin -- [--config FILE] <command> …` (node scripts/media-admin.ts): media administration from the command
// line — list a user's media, delete or quarantine one piece, purge the remote media cache, expire
// unused upload ids. Opens the server's database (config from --config FILE or AXON_CONFIG plus AXON_*
// overrides) and its media store. With the embedded PGlite database, stop the server first.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { ConfigError, loadConfig, type Config } from '../homeserver/config.ts';
import type { Homeserver } from '../homeserver/homeserver.ts';
import { LocalBus } from '../homeserver/runtime/bus.ts';
import { openDatabase, type Database } from '../homeserver/storage/database.ts';
import { createStore, MediaService } from '../homeserver/services/media/media.ts';
import { parseDuration } from './admin.ts';

class UsageError extends Error {}

interface Io {
  out(s: string): void;
  err(s: string): void;
  env?: NodeJS.ProcessEnv;
}

function parseMxc(s: string | undefined): { serverName: string; mediaId: string } {
  const m = /^mxc:\/\/([^/]+)\/([^/]+)$/.exec(s ?? '');
  if (!m) throw new UsageError('expected an mxc://server/media_id URI');
  return { serverName: m[1]!, mediaId: m[2]! };
}

function offlineHomeserver(config: Config, database: Database): Homeserver {
  return {
    config,
    serverName: config.server_name,
    logger: pino({ level: 'silent' }),
    database,
    db: database.db,
    bus: new LocalBus(),
    now: Date.now,
    services: {},
    onShutdown() {},
  } as unknown as Homeserver;
}

interface Command {
  usage: string;
  summary: string;
  options?: NonNullable<Parameters<typeof parseArgs>[0]>['options'];
  run(media: MediaService, values: Record<string, string | boolean | undefined>, positionals: string[], io: Io): Promise<void>;
}

const fmtBytes = (n: number | null) => (n === null ? '-' : n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);

export const COMMANDS: Record<string, Command> = {
  'list-user': {
    usage: 'list-user <@user:server> [--limit N]',
    summary: "Lists a user's uploads, newest first.",
    options: { limit: { type: 'string' } },
    async run(media, values, [userId], io) {
      if (!userId?.startsWith('@')) throw new UsageError('a user id (@user:server) is required');
      const limit = values.limit === undefined ? 1000 : Number(values.limit);
      if (!Number.isSafeInteger(limit) || limit < 1) throw new UsageError('--limit must be a positive integer');
      const { rows, total } = await media.listUserMedia(userId, 0, limit);
      for (const r of rows) {
        const flags = [r.uploaded_ts === null ? 'pending' : null, r.quarantined_ts !== null ? 'quarantined' : null].filter(Boolean).join(',');
        io.out(`mxc://${r.server_name}/${r.media_id}\t${fmtBytes(r.size)}\t${r.content_type ?? '-'}\t${new Date(r.created_ts).toISOString()}\t${r.upload_name ?? ''}${flags ? `\t[${flags}]` : ''}`);
      }
      io.out(`${rows.length} of ${total} shown`);
    },
  },
  delete: {
    usage: 'delete <mxc://server/id>',
    summary: 'Deletes one piece of media (local, or a cached remote copy) with its thumbnails.',
    async run(media, _v, [uri], io) {
      const { serverName, mediaId } = parseMxc(uri);
      if (!(await media.deleteMedia(serverName, mediaId))) throw new UsageError(`${uri}: no such media`);
      io.out(`deleted ${uri}`);
    },
  },
  quarantine: {
    usage: 'quarantine <mxc://server/id>',
    summary: 'Stops a piece of media from being served (404) without deleting it.',
    async run(media, _v, [uri], io) {
      const { serverName, mediaId } = parseMxc(uri);
      if (!(await media.setQuarantined(serverName, mediaId, 'media-admin', true))) throw new UsageError(`${uri}: no such media`);
      io.out(`quarantined ${uri}`);
    },
  },
  unquarantine: {
    usage: 'unquarantine <mxc://server/id>',
    summary: 'Serves a quarantined piece of media again.',
    async run(media, _v, [uri], io) {
      const { serverName, mediaId } = parseMxc(uri);
      if (!(await media.setQuarantined(serverName, mediaId, null, false))) throw new UsageError(`${uri}: no such media`);
      io.out(`unquarantined ${uri}`);
    },
  },
  'purge-remote': {
    usage: 'purge-remote --older-than 30d',
    summary: 'Deletes cached copies of remote media cached longer ago than the given age (re-fetched on demand).',
    options: { 'older-than': { type: 'string' } },
    async run(media, values, _p, io) {
      if (typeof values['older-than'] !== 'string') throw new UsageError('--older-than is required (e.g. 30d)');
      const before = Date.now() - parseDuration(values['older-than']);
      let lastPct = -1;
      const n = await media.purgeRemoteCache(before, (done, total) => {
        const pct = total ? Math.floor((done * 100) / total) : 100;
        if (pct !== lastPct) io.out(`purged ${done}/${total} (${pct}%)`);
        lastPct = pct;
      });
      io.out(`purged ${n} remote media cached before ${new Date(before).toISOString()}`);
    },
  },
  'expire-pending': {
    usage: 'expire-pending',
    summary: 'Forgets upload ids from /create whose time ran out (the server also does this every 10 minutes).',
    async run(media, _v, _p, io) {
      io.out(`expired ${await media.expirePending()} unused media ids`);
    },
  },
};

function usage(): string {
  const lines = ['usage: npm run media-admin -- [--config FILE] <command> [options]', '', 'commands:'];
  for (const c of Object.values(COMMANDS)) lines.push(`  ${c.usage}`, `      ${c.summary}`);
  return lines.join('\n');
}

/** Runs one command line; returns the exit code. `database` lets tests use an already open database. */
export async function runMediaAdmin(argv: string[], io: Io, opts: { database?: Database; config?: Config } = {}): Promise<number> {
  let configPath: string | null = io.env?.AXON_CONFIG ?? null;
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--config' || a === '-c') configPath = argv[++i] ?? null;
    else if (a.startsWith('--config=')) configPath = a.slice('--config='.length);
    else rest.push(a);
  }
  const [name, ...args] = rest;
  if (!name || name === 'help' || name === '--help') {
    io.out(usage());
    return name ? 0 : 2;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    io.err(`unknown command "${name}"\n${usage()}`);
    return 2;
  }
  let config: Config;
  try {
    config = opts.config ?? loadConfig({ path: configPath, env: io.env ?? {} });
  } catch (err) {
    if (err instanceof ConfigError) {
      io.err(`media-admin: bad configuration: ${err.message}`);
      return 2;
    }
    throw err;
  }
  let database = opts.database ?? null;
  try {
    const { values, positionals } = parseArgs({ args, options: cmd.options ?? {}, allowPositionals: true, strict: true });
    database ??= await openDatabase({
      url: config.database.url,
      pgliteDir: config.database.url ? null : join(config.data_dir, 'db'),
      poolSize: 1,
      schema: config.database.schema,
      logger: pino({ level: 'silent' }),
    });
    const hs = offlineHomeserver(config, database);
    const media = new MediaService(hs, createStore(hs));
    await cmd.run(media, values as Record<string, string | boolean | undefined>, positionals, io);
    await media.idle();
    return 0;
  } catch (err) {
    const e = err as Error & { code?: string; errcode?: string };
    if (err instanceof UsageError || e.code?.startsWith('ERR_PARSE_ARGS') || e.errcode === 'M_INVALID_PARAM') {
      io.err(`media-admin ${name}: ${e.message}\nusage: npm run media-admin -- ${cmd.usage}`);
      return 2;
    }
    if (e.message?.startsWith('not a duration')) {
      io.err(`media-admin ${name}: ${e.message}`);
      return 2;
    }
    throw err;
  } finally {
    if (database && !opts.database) await database.close();
  }
}

if (import.meta.main) {
  const code = await runMediaAdmin(process.argv.slice(2), {
    out: (s) => process.stdout.write(s + '\n'),
    err: (s) => process.stderr.write(s + '\n'),
    env: process.env,
  });
  process.exit(code);
}
