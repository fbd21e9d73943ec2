// `npm run admin -- <command> [options]`: administration from the command line. Opens the database
// the server uses (config from --config FILE or AXON_CONFIG, plus AXON_* overrides), runs one command,
// exits. With the embedded PGlite database, stop the server first (PGlite allows one process at a time).
//
// Commands are a plain table: add one by adding an entry to COMMANDS.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { isValidLocalpartForRegistration } from '../spec/identifiers.ts';
import { ConfigError, loadConfig, type Config } from '../homeserver/config.ts';
import type { Homeserver } from '../homeserver/homeserver.ts';
import { LocalBus } from '../homeserver/runtime/bus.ts';
import { openDatabase, type Database } from '../homeserver/storage/database.ts';
import { AccountService } from '../homeserver/services/accounts.ts';
import { createRegistrationToken, listRegistrationTokens } from '../homeserver/services/registration-tokens.ts';
import { rotateSigningKey } from '../homeserver/keys/signing-key-store.ts';

interface CommandContext {
  config: Config;
  /** Opens the database (and runs migrations) on first use. */
  database(): Promise<Database>;
  out(line: string): void;
}

interface Command {
  usage: string;
  summary: string;
  options?: NonNullable<Parameters<typeof parseArgs>[0]>['options'];
  run(ctx: CommandContext, values: Record<string, string | boolean | undefined>, positionals: string[]): Promise<void>;
}

class UsageError extends Error {}

/** "7d", "12h", "30m", "45s" or milliseconds. */
export function parseDuration(s: string): number {
  const m = /^(\d+)(ms|s|m|h|d)?$/.exec(s.trim());
  if (!m) throw new UsageError(`not a duration: ${s} (use e.g. 7d, 12h, 30m, 45s)`);
  const n = Number(m[1]);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 'ms') as 'ms' | 's' | 'm' | 'h' | 'd'];
  return n * unit;
}

/** Just enough of a Homeserver for the account service outside the running server. */
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
  } as unknown as Homeserver;
}

export const COMMANDS: Record<string, Command> = {
  'create-user': {
    usage: 'create-user <localpart> [--password PW] [--admin] [--displayname NAME]',
    summary: 'Creates a user. Without --password a random one is generated and printed.',
    options: { password: { type: 'string' }, admin: { type: 'boolean' }, displayname: { type: 'string' } },
    async run(ctx, values, [localpart]) {
      if (!localpart) throw new UsageError('a localpart is required');
      const lp = localpart.replace(/^@/, '').replace(/:.*$/, '').toLowerCase();
      if (!isValidLocalpartForRegistration(lp, ctx.config.server_name)) throw new UsageError(`invalid localpart "${lp}": use a-z 0-9 . _ = - / +`);
      const generated = values.password === undefined;
      const password = (values.password as string | undefined) ?? randomBytes(12).toString('base64url');
      if (password.length < ctx.config.auth.password_min_length) throw new UsageError(`the password must be at least ${ctx.config.auth.password_min_length} characters`);
      const accounts = new AccountService(offlineHomeserver(ctx.config, await ctx.database()));
      const userId = await accounts.createUser({
        localpart: lp,
        password,
        isAdmin: values.admin === true,
        ...(typeof values.displayname === 'string' ? { displayname: values.displayname } : {}),
      });
      ctx.out(`created ${userId}${values.admin ? ' (admin)' : ''}`);
      if (generated) ctx.out(`password: ${password}`);
    },
  },
  'create-token': {
    usage: 'create-token [--token TOKEN] [--uses N] [--expires-in 7d]',
    summary: 'Creates a registration token (for registration.mode: token). Prints the token.',
    options: { token: { type: 'string' }, uses: { type: 'string' }, 'expires-in': { type: 'string' } },
    async run(ctx, values) {
      let uses: number | null = null;
      if (values.uses !== undefined) {
        uses = Number(values.uses);
        if (!Number.isSafeInteger(uses) || uses < 1) throw new UsageError('--uses must be a positive integer');
      }
      const expiry = values['expires-in'] !== undefined ? Date.now() + parseDuration(values['expires-in'] as string) : null;
      const db = (await ctx.database()).db;
      let row;
      try {
        row = await createRegistrationToken(db, Date.now(), {
          ...(typeof values.token === 'string' ? { token: values.token } : {}),
          usesAllowed: uses,
          expiryTime: expiry,
        });
      } catch (err) {
        throw new UsageError((err as Error).message);
      }
      ctx.out(row.token);
      const limits = [uses !== null ? `${uses} use${uses === 1 ? '' : 's'}` : 'unlimited uses', expiry !== null ? `expires ${new Date(expiry).toISOString()}` : 'never expires'];
      ctx.out(`(${limits.join(', ')})`);
    },
  },
  'list-tokens': {
    usage: 'list-tokens',
    summary: 'Lists registration tokens with their uses and expiry.',
    async run(ctx) {
      for (const t of await listRegistrationTokens((await ctx.database()).db)) {
        const uses = t.uses_allowed === null ? `${t.completed} used` : `${t.completed}/${t.uses_allowed} used`;
        const exp = t.expiry_time === null ? 'no expiry' : `expires ${new Date(t.expiry_time).toISOString()}`;
        ctx.out(`${t.token}\t${uses}${t.pending ? `, ${t.pending} pending` : ''}\t${exp}`);
      }
    },
  },
  'rotate-key': {
    usage: 'rotate-key',
    summary: 'Retires the signing key into old_verify_keys (<data_dir>/old_signing_keys.json) and generates a new one. Restart the server afterwards.',
    async run(ctx) {
      const keyPath = ctx.config.signing_key_path ?? join(ctx.config.data_dir, 'signing.key');
      const r = rotateSigningKey(keyPath);
      ctx.out(`retired ${r.retired}; new signing key ${r.current}`);
    },
  },
};

function usage(): string {
  const lines = ['usage: npm run admin -- [--config FILE] <command> [options]', '', 'commands:'];
  for (const c of Object.values(COMMANDS)) lines.push(`  ${c.usage}`, `      ${c.summary}`);
  return lines.join('\n');
}

/** Runs one command line; returns the exit code. Output goes through `out`/`err` (tests capture them). */
export async function runAdmin(argv: string[], io: { out(s: string): void; err(s: string): void; env?: NodeJS.ProcessEnv } = {
  out: (s) => process.stdout.write(s + '\n'),
  err: (s) => process.stderr.write(s + '\n'),
}): Promise<number> {
  // --config may come before or after the command.
  let configPath: string | null = io.env?.AXON_CONFIG ?? null;
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--config' || a === '-c') configPath = argv[++i] ?? null;
    else if (a.startsWith('--config=')) configPath = a.slice('--config='.length);
    else rest.push(a);
  }
  const [name, ...args] = rest;
  if (!name || name === 'help' || name === '--help' || name === '-h') {
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
    config = loadConfig({ path: configPath, env: io.env ?? {} });
  } catch (err) {
    if (err instanceof ConfigError) {
      io.err(`axon admin: bad configuration: ${err.message}`);
      return 2;
    }
    throw err;
  }
  let database: Database | null = null;
  const ctx: CommandContext = {
    config,
    out: io.out,
    async database() {
      database ??= await openDatabase({
        url: config.database.url,
        pgliteDir: config.database.url ? null : join(config.data_dir, 'db'),
        poolSize: 1,
        schema: config.database.schema,
        logger: pino({ level: 'silent' }),
      });
      return database;
    },
  };
  try {
    const { values, positionals } = parseArgs({ args, options: cmd.options ?? {}, allowPositionals: true, strict: true });
    await cmd.run(ctx, values as Record<string, string | boolean | undefined>, positionals);
    return 0;
  } catch (err) {
    const e = err as Error & { code?: string; errcode?: string };
    if (err instanceof UsageError || e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      io.err(`axon admin ${name}: ${e.message}\nusage: npm run admin -- ${cmd.usage}`);
      return 2;
    }
    if (e.errcode) {
      io.err(`axon admin ${name}: ${e.errcode}: ${e.message}`);
      return 1;
    }
    throw err;
  } finally {
    await (database as Database | null)?.close();
  }
}

if (import.meta.main) process.exit(await runAdmin(process.argv.slice(2), { out: (s) => process.stdout.write(s + '\n'), err: (s) => process.stderr.write(s + '\n'), env: process.env }));
