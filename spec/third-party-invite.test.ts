// The default third-party-invite verifier: a real Ed25519 signature over `signed` (appendices
// "Signing JSON") must verify against a public key of the m.room.third_party_invite event.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { verifyThirdPartySigned } from './auth-rules.ts';
import { encodeBase64, encodeBase64Url } from './base64.ts';
import { generateSigningKey, signJson } from './signing.ts';
import type { JsonObject } from './events.ts';

test('verifyThirdPartySigned accepts a real signature and refuses wrong keys, tampering and junk', () => {
  const idServer = generateSigningKey('0');
  const other = generateSigningKey('1');
  const signed = signJson({ mxid: '@bob:example.org', token: 'abc123' }, 'id.example', idServer) as unknown as JsonObject;
  assert.equal(verifyThirdPartySigned(signed, encodeBase64(idServer.publicKey)), true);
  assert.equal(verifyThirdPartySigned(signed, encodeBase64Url(idServer.publicKey)), true, 'URL-safe key form');
  assert.equal(verifyThirdPartySigned(signed, encodeBase64(other.publicKey)), false, 'another key');
  assert.equal(verifyThirdPartySigned({ ...signed, mxid: '@mallory:example.org' }, encodeBase64(idServer.publicKey)), false, 'tampered');
  assert.equal(verifyThirdPartySigned(signed, 'not base64!'), false);
  assert.equal(verifyThirdPartySigned({ mxid: 'x', token: 't' }, encodeBase64(idServer.publicKey)), false, 'unsigned');
});
