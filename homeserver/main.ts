// `npm start`: loads the config (--config FILE, -c FILE or AXON_CONFIG), starts Axon, stops on SIGTERM/SIGINT.
import { ConfigError, loadConfig } from './config.ts';

function configPath(argv: string[]): string | null {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--config' || a === '-c') return argv[i + 1] ?? null;
    if (a.startsWith('--config=')) return a.slice('--config='.length);
  }
  return process.env.AXON_CONFIG ?? null;
}

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig({ path: configPath(process.argv.slice(2)), env: process.env });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`axon: bad configuration: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  // Imported only once the config is good, so a config error answers at once.
  const { startHomeserver } = await import('./server.ts');
  let server;
  try {
    server = await startHomeserver(config);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'EADDRINUSE' ? `address in use (${(e as { address?: string }).address}:${(e as { port?: number }).port})` : e.message;
    process.stderr.write(`axon: could not start: ${why}\n`);
    process.exit(1);
  }
  process.stdout.write(`Axon serving ${config.server_name} on ${server.urls.join(', ')}\n`);
  const shutdown = (sig: string) => {
    server.hs.logger.info({ signal: sig }, 'signal received');
    server.stop().then(
      () => process.exit(0),
      (err) => {
        server.hs.logger.error({ err }, 'error during shutdown');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

await main();
