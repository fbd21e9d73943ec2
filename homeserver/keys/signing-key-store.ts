// The server's signing key: generated on first start, kept in a file only the server's user can read,
// reused on later starts. Retired keys live in a JSON file beside it (and in config) and are published
// as `old_verify_keys` (server-server-api.md "Publishing Keys").
import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { decodeBase64, encodeBase64 } from '../../spec/base64.ts';
import { generateSigningKey, signingKeyFromSeed, type SigningKey } from '../../spec/signing.ts';

export interface OldVerifyKey {
  key: string;
  expired_ts: number;
}

export interface KeyRing {
  current: SigningKey;
  old: Record<string, OldVerifyKey>;
}

/** File format (one line, as other Matrix servers use): `ed25519 <version> <unpadded base64 seed>`. */
function parseKeyFile(path: string): SigningKey {
  const text = readFileSync(path, 'utf8').trim();
  const m = /^ed25519 ([a-zA-Z0-9_]+) ([A-Za-z0-9+/=]+)$/.exec(text.split('\n')[0] ?? '');
  if (!m) throw new Error(`signing key file ${path} is not in the form "ed25519 <version> <base64 seed>"`);
  const seed = decodeBase64(m[2]!);
  if (seed.length !== 32) throw new Error(`signing key file ${path} does not hold a 32-byte seed`);
  return signingKeyFromSeed(`ed25519:${m[1]}`, seed);
}

function writeKeyFile(path: string, key: SigningKey): void {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, `ed25519 ${key.keyId.slice('ed25519:'.length)} ${encodeBase64(key.seed)}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}

function oldKeysPath(keyPath: string): string {
  return join(dirname(keyPath), 'old_signing_keys.json');
}

export function loadOrCreateKeyRing(keyPath: string, fromConfig: Record<string, OldVerifyKey> = {}): KeyRing {
  let current: SigningKey;
  if (existsSync(keyPath)) current = parseKeyFile(keyPath);
  else {
    current = generateSigningKey();
    writeKeyFile(keyPath, current);
  }
  let old: Record<string, OldVerifyKey> = {};
  const op = oldKeysPath(keyPath);
  if (existsSync(op)) old = JSON.parse(readFileSync(op, 'utf8')) as Record<string, OldVerifyKey>;
  return { current, old: { ...old, ...fromConfig } };
}

/** Retires the current key into old_verify_keys and makes a new one (admin command `rotate-key`). */
export function rotateSigningKey(keyPath: string, now = Date.now()): { retired: string; current: string } {
  const ring = loadOrCreateKeyRing(keyPath);
  const op = oldKeysPath(keyPath);
  const old = existsSync(op) ? (JSON.parse(readFileSync(op, 'utf8')) as Record<string, OldVerifyKey>) : {};
  old[ring.current.keyId] = { key: encodeBase64(ring.current.publicKey), expired_ts: now };
  writeFileSync(op, JSON.stringify(old, null, 2), { mode: 0o600 });
  const next = generateSigningKey();
  writeKeyFile(keyPath, next);
  return { retired: ring.current.keyId, current: next.keyId };
}
