// `npm run admin -- rotate-key`: the old key moves to old_verify_keys, a new key signs from then on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeBase64 } from '../spec/base64.ts';
import { verifyJsonSignature } from '../spec/signing.ts';
import { runAdmin } from './admin.ts';
import { startTestServer } from '../homeserver/testing.ts';

type KeyResponse = { verify_keys: Record<string, { key: string }>; old_verify_keys: Record<string, { key: string; expired_ts: number }> };

test('rotate-key retires the current key into old_verify_keys and the server signs with the new one', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'axon-rotate-'));
  // First start generates the key.
  let s = await startTestServer({ dataDir: dir });
  const before = (await (await fetch(`${s.baseUrl}/_matrix/key/v2/server`)).json()) as KeyResponse;
  await s.stop();
  const [oldId, oldKey] = Object.entries(before.verify_keys)[0]!;
  assert.deepEqual(before.old_verify_keys, {});

  const out: string[] = [];
  const code = await runAdmin(['rotate-key'], { out: (l) => out.push(l), err: (l) => out.push(l), env: { AXON_DATA_DIR: dir } });
  assert.equal(code, 0, out.join('\n'));
  assert.match(out.join('\n'), new RegExp(`retired ${oldId}; new signing key ed25519:`));

  s = await startTestServer({ dataDir: dir });
  try {
    const after = (await (await fetch(`${s.baseUrl}/_matrix/key/v2/server`)).json()) as KeyResponse;
    const [newId, newKey] = Object.entries(after.verify_keys)[0]!;
    assert.notEqual(newId, oldId);
    assert.equal(after.old_verify_keys[oldId]!.key, oldKey.key);
    assert.ok(after.old_verify_keys[oldId]!.expired_ts > 0);
    assert.equal(verifyJsonSignature(after, 'localhost', newId, decodeBase64(newKey.key)), true);
    assert.equal(verifyJsonSignature(after, 'localhost', oldId, decodeBase64(oldKey.key)), false, 'the retired key no longer signs');
  } finally {
    await s.stop();
  }
});
