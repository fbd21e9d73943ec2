import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeBase64, decodeBase64Url, encodeBase64, encodeBase64Url, tryDecodeBase64 } from './base64.ts';

const utf8 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'utf8'));
const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');

// appendices.md "Unpadded Base64" examples.
const SPEC_EXAMPLES: Array<[string, string]> = [
  ['', ''],
  ['f', 'Zg'],
  ['fo', 'Zm8'],
  ['foo', 'Zm9v'],
  ['foob', 'Zm9vYg'],
  ['fooba', 'Zm9vYmE'],
  ['foobar', 'Zm9vYmFy'],
];

test('unpadded base64: the spec examples, both ways', () => {
  for (const [plain, encoded] of SPEC_EXAMPLES) {
    assert.equal(encodeBase64(utf8(plain)), encoded);
    assert.equal(text(decodeBase64(encoded)), plain);
  }
});

test('decoding accepts padded input too', () => {
  assert.equal(text(decodeBase64('Zg==')), 'f');
  assert.equal(text(decodeBase64('Zm8=')), 'fo');
  assert.equal(text(decodeBase64Url('Zm8=')), 'fo');
});

test('decoding rejects what is not base64', () => {
  for (const bad of ['Z', 'Zm9vY', 'Zg=', 'Zg===', 'Zm9v=', '=Zg', 'Zm 9v', 'Zm9v!', 'Z-8', 'Z_8', 'Zg==Zg']) {
    assert.throws(() => decodeBase64(bad), Error, bad);
  }
  for (const bad of ['Z+8', 'Z/8', 'Z', 'a b']) {
    assert.throws(() => decodeBase64Url(bad), Error, bad);
  }
  assert.equal(tryDecodeBase64('Zm9v!'), null);
  assert.equal(tryDecodeBase64(42), null);
});

test('URL-safe alphabet uses - and _ for 62 and 63', () => {
  const bytes = new Uint8Array([0xfb, 0xff, 0xbf]); // 111110 111111 111110 111111
  assert.equal(encodeBase64(bytes), '+/+/');
  assert.equal(encodeBase64Url(bytes), '-_-_');
  assert.deepEqual(decodeBase64Url('-_-_'), bytes);
  assert.deepEqual(decodeBase64('+/+/'), bytes);
  assert.equal(encodeBase64Url(new Uint8Array([0xff])), '_w');
});

test('encodes views of larger buffers correctly', () => {
  const big = new Uint8Array([0, 1, 2, 0x66, 0x6f, 0x6f, 9]);
  assert.equal(encodeBase64(big.subarray(3, 6)), 'Zm9v');
});
