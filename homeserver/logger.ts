import pino, { type Logger } from 'pino';

export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { service: 'axon' },
    // Defence in depth: these fields never reach the logs even if a caller passes them.
    redact: { paths: ['access_token', 'password', 'token', 'refresh_token', '*.access_token', '*.password', 'req.headers.authorization'], censor: '[redacted]' },
  });
}
