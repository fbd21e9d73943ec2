import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateSigningKey, signingKeyFromSeed } from '../spec/signing.ts';
import { authorizationHeader, parseXMatrix, verifyXMatrix, XMatrixParseError } from './x-matrix.ts';

const key = signingKeyFromSeed('ed25519:1', new Uint8Array(32).fill(7));

test('a signed header round-trips: origin, destination, key and a signature over method, uri and content', () => {
  const req = { method: 'PUT', uri: '/_matrix/federation/v1/send/1?x=1', origin: 'a.example', destination: 'b.example:8448', content: { pdus: [] } };
  const h = authorizationHeader(req, key);
  assert.match(h, /^X-Matrix origin="a\.example",destination="b\.example:8448",key="ed25519:1",sig="[A-Za-z0-9+/]+"$/);
  const p = parseXMatrix(h);
  assert.deepEqual([p.origin, p.destination, p.key], ['a.example', 'b.example:8448', 'ed25519:1']);
  const rest = { method: req.method, uri: req.uri, destination: req.destination, content: req.content };
  assert.ok(verifyXMatrix(p, rest, key.publicKey));
  // Any change to what was signed breaks it.
  assert.ok(!verifyXMatrix(p, { ...rest, method: 'POST' }, key.publicKey));
  assert.ok(!verifyXMatrix(p, { ...rest, uri: '/_matrix/federation/v1/send/2?x=1' }, key.publicKey));
  assert.ok(!verifyXMatrix(p, { ...rest, destination: 'c.example' }, key.publicKey));
  assert.ok(!verifyXMatrix(p, { ...rest, content: { pdus: [1] } }, key.publicKey));
  assert.ok(!verifyXMatrix(p, { method: req.method, uri: req.uri, destination: req.destination }, key.publicKey));
  assert.ok(!verifyXMatrix(p, rest, generateSigningKey().publicKey));
});

test('GET without a body is signed without content', () => {
  const h = authorizationHeader({ method: 'GET', uri: '/_matrix/federation/v1/media/download/abc', origin: 'a', destination: 'b' }, key);
  assert.ok(verifyXMatrix(parseXMatrix(h), { method: 'GET', uri: '/_matrix/federation/v1/media/download/abc', destination: 'b' }, key.publicKey));
  assert.ok(!verifyXMatrix(parseXMatrix(h), { method: 'GET', uri: '/_matrix/federation/v1/media/download/abc', destination: 'b', content: {} }, key.publicKey));
});

test('parsing follows RFC 9110 credentials with the compatibility rules of the spec', () => {
  // Case-insensitive scheme and names, spaces and tabs around commas, any order, unknown params ignored.
  const p = parseXMatrix('x-matrix   Key="ed25519:1" ,\tORIGIN=origin.example:8448 , extra=foo,  sig="ABC/+=",destination=dest');
  assert.deepEqual(p, { origin: 'origin.example:8448', destination: 'dest', key: 'ed25519:1', sig: 'ABC/+=' });
  // Backslash escapes in quoted values; `signature` as the parameter name; no destination (pre-1.3).
  assert.deepEqual(parseXMatrix('X-Matrix origin="a\\"b",key="k",signature="s"'), { origin: 'a"b', key: 'k', sig: 's' });
  for (const bad of [
    'Bearer abc',
    'X-Matrix',
    'X-Matrixorigin="a",key="k",sig="s"',
    'X-Matrix origin="a",key="k"',
    'X-Matrix key="k",sig="s"',
    'X-Matrix origin="a",key="k",sig="s",origin="b"',
    'X-Matrix origin="a,key="k",sig="s"',
    'X-Matrix origin="a" key="k",sig="s"',
    'X-Matrix origin=a b,key="k",sig="s"',
    'X-Matrix origin="a",key="k",sig=',
  ]) {
    assert.throws(() => parseXMatrix(bad), XMatrixParseError, bad);
  }
});
