// Secrets: random tokens, their storage hashes, password hashing (argon2id) and constant-time compares.
import { argon2, createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * argon2id cost: OWASP's recommended minimum, 19 MiB, 2 passes, 1 lane. Measured on the development
 * machine (2 × AMD EPYC vCPU, Node 24.21): 25 ms minimum, 31 ms median over 20 hashes, so one login
 * costs 20–60 ms; it climbs past 100 ms only while other processes saturate both cores.
 * `npm run bench accounts` re-measures it. Stored hashes carry their parameters, so raising them later
 * only affects new hashes.
 */
export const ARGON2_PARAMS = { memory: 19456, passes: 2, parallelism: 1, tagLength: 32 } as const;

function argon2Async(message: string, nonce: Buffer, p: { memory: number; passes: number; parallelism: number; tagLength: number }): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    argon2('argon2id', { message, nonce, ...p }, (err, key) => (err ? reject(err) : resolve(Buffer.from(key)))),
  );
}

const b64 = (b: Buffer) => b.toString('base64').replace(/=+$/, '');

/** A PHC string: $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash> (parameters travel with the hash). */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const tag = await argon2Async(password, salt, ARGON2_PARAMS);
  const { memory, passes, parallelism } = ARGON2_PARAMS;
  return `$argon2id$v=19$m=${memory},t=${passes},p=${parallelism}$${b64(salt)}$${b64(tag)}`;
}

export async function verifyPassword(password: string, phc: string): Promise<boolean> {
  const m = /^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/.exec(phc);
  if (!m) return false;
  const expected = Buffer.from(m[5]!, 'base64');
  const tag = await argon2Async(password, Buffer.from(m[4]!, 'base64'), {
    memory: Number(m[1]),
    passes: Number(m[2]),
    parallelism: Number(m[3]),
    tagLength: expected.length,
  });
  return tag.length === expected.length && timingSafeEqual(tag, expected);
}

/** A hash of a dummy password, so a login for an unknown user costs the same as a wrong password. */
let dummyHash: Promise<string> | null = null;
export function dummyPasswordHash(): Promise<string> {
  dummyHash ??= hashPassword(randomBytes(12).toString('hex'));
  return dummyHash;
}

/** 256 random bits, URL-safe, with a short prefix saying what the token is (helps secret scanners). */
export function randomToken(prefix: string): string {
  return `${prefix}_${randomBytes(32).toString('base64url')}`;
}

/** Tokens are stored and looked up only by this digest. */
export function tokenHash(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export function constantTimeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  // Compare against itself on length mismatch so the time does not depend on where they differ.
  if (x.length !== y.length) {
    timingSafeEqual(x, x);
    return false;
  }
  return timingSafeEqual(x, y);
}

const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
/** Device ids: 10 upper-case letters (~47 bits), like other servers' ids so clients display them well. */
export function randomDeviceId(): string {
  const bytes = randomBytes(10);
  let s = '';
  for (const b of bytes) s += ID_ALPHABET[b % 26];
  return s;
}

export function randomId(bytes = 16): string {
  return randomBytes(bytes).toString('base64url');
}
