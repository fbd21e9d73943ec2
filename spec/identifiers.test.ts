import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  isCompliantUserId,
  isIPv6,
  isValidEventId,
  isValidLocalpartForRegistration,
  isValidRoomAlias,
  isValidRoomId,
  isValidServerName,
  isValidUserId,
  parseRoomAlias,
  parseServerName,
  parseUserId,
  roomIdServerName,
} from './identifiers.ts';

test('server names: the examples from appendices.md "Server Name"', () => {
  assert.deepEqual(parseServerName('matrix.org'), { host: 'matrix.org', kind: 'dns' });
  assert.deepEqual(parseServerName('matrix.org:8888'), { host: 'matrix.org', port: 8888, kind: 'dns' });
  assert.deepEqual(parseServerName('1.2.3.4'), { host: '1.2.3.4', kind: 'ipv4' });
  assert.deepEqual(parseServerName('1.2.3.4:1234'), { host: '1.2.3.4', port: 1234, kind: 'ipv4' });
  assert.deepEqual(parseServerName('[1234:5678::abcd]'), { host: '[1234:5678::abcd]', kind: 'ipv6' });
  assert.deepEqual(parseServerName('[1234:5678::abcd]:5678'), { host: '[1234:5678::abcd]', port: 5678, kind: 'ipv6' });
});

test('server names: more good and bad cases', () => {
  for (const good of ['localhost', 'LOCALHOST', 'a-b.c', 'x:1', 'x:65535', '[::1]', '[::]', '[::ffff:1.2.3.4]:8448',
    '[1:2:3:4:5:6:7:8]', '[fe80::1:2]', '[1:2:3:4:5:6:1.2.3.4]', 'a'.repeat(255), '999.1.1']) {
    assert.ok(isValidServerName(good), good);
  }
  for (const bad of ['', ':80', 'host:', 'host:abc', 'host:123456', 'host:65536', 'host:-1', 'ho st', 'ho_st', 'höst',
    'host:80:80', '256.1.1.1', '1.2.3.999', '[::1', '::1', '[::1]80', '[::1]:', '[1:2:3:4:5:6:7:8:9]',
    '[1::2::3]', '[12345::1]', '[::1%eth0]', '[1.2.3.4]', '[1:2:3:4:5:6:7::8]', 'a'.repeat(256), '[g::1]']) {
    assert.equal(isValidServerName(bad), false, bad);
  }
  assert.ok(isIPv6('1234:5678::abcd'));
  assert.equal(isIPv6(':1::'), false);
});

test('user ids: current grammar, historical leniency, 255-byte limit', () => {
  assert.deepEqual(parseUserId('@alice:example.org'), { localpart: 'alice', serverName: 'example.org' });
  assert.deepEqual(parseUserId('@a.b_c=d-e/f+g:[::1]:8448'), { localpart: 'a.b_c=d-e/f+g', serverName: '[::1]:8448' });
  // Historical ids MUST be accepted: any non-surrogate code points except ':' and NUL, even empty.
  for (const historical of ['@Alice:example.org', '@:example.org', '@ünïcødé:example.org', '@a b\u0007:example.org', '@😀:x']) {
    assert.ok(isValidUserId(historical), historical);
    assert.equal(isCompliantUserId(historical), false, historical);
  }
  assert.ok(isCompliantUserId('@alice+bot:example.org'));
  for (const bad of ['alice:example.org', '@alice', '@alice:', '@alice:bad_server', '@a\u0000b:example.org', '@a\ud800:example.org', '#a:b', '']) {
    assert.equal(isValidUserId(bad), false, JSON.stringify(bad));
  }
  // A localpart stops at the first ':'; the rest must be a server name.
  assert.deepEqual(parseUserId('@a:b:1'), { localpart: 'a', serverName: 'b:1' });
  assert.equal(isValidUserId('@a:b:c'), false);
  // 255 bytes including sigil and domain.
  const domain = 'example.org';
  const fits = '@' + 'a'.repeat(255 - 2 - domain.length) + ':' + domain;
  assert.equal(Buffer.byteLength(fits), 255);
  assert.ok(isValidUserId(fits));
  assert.equal(isValidUserId('@a' + fits.slice(1)), false);
  // Multi-byte characters count as bytes, not characters: 'é' is 2 bytes.
  assert.equal(isValidUserId('@' + 'é'.repeat(122) + ':' + domain), false); // 1+244+1+11 = 257
  assert.ok(isValidUserId('@' + 'é'.repeat(121) + ':' + domain)); // 255
});

test('localparts for registration: a-z 0-9 . _ = - / + only', () => {
  for (const good of ['alice', 'a.b', 'a_b', 'a=b', 'a-b', 'a/b', 'a+b', '0', 'x'.repeat(200)]) {
    assert.ok(isValidLocalpartForRegistration(good), good);
  }
  for (const bad of ['', 'Alice', 'a b', 'a:b', 'a#b', 'é', 'a*b', 'a@b', 'x'.repeat(253)]) {
    assert.equal(isValidLocalpartForRegistration(bad), false, bad);
  }
  // '@' + 242 + ':' + 11 = 255 bytes.
  assert.ok(isValidLocalpartForRegistration('a'.repeat(242), 'example.org'));
  assert.equal(isValidLocalpartForRegistration('a'.repeat(243), 'example.org'), false);
  assert.equal(isValidLocalpartForRegistration('alice', 'not a server'), false);
});

test('room ids: !opaque:domain and v12 domainless hash form', () => {
  assert.ok(isValidRoomId('!jEsUZKDJdhlrceRyVU:example.org'));
  assert.ok(isValidRoomId('!x:domain'));
  assert.ok(isValidRoomId('!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ')); // pdu_v12 example
  assert.equal(roomIdServerName('!jEsUZKDJdhlrceRyVU:example.org'), 'example.org');
  assert.equal(roomIdServerName('!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ'), null);
  for (const bad of ['', '!', '!:example.org', 'room:example.org', '$x:example.org', '!abc', '!x:bad server',
    '!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpY', '!Nhcu5BS+UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ', '!a\u0000:x',
    '!' + 'a'.repeat(250) + ':example.org']) {
    assert.equal(isValidRoomId(bad), false, bad);
  }
});

test('event ids: v1 $opaque:domain, v3 standard base64, v4 URL-safe base64', () => {
  const v1 = '$a4ecee13e2accdadf56c1025:example.com';
  const v3 = '$acR1l0raoZnm60CBwAVgqbZqoO/mYU81xysh1u7XcJk'; // rooms/v3.md
  const v4 = '$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg'; // rooms/v4.md
  for (const id of [v1, v3, v4, '$CD66HAED5npg6074c6pDtLKalHjVfYb2q4Q3LZgrW6o']) assert.ok(isValidEventId(id), id);
  assert.ok(isValidEventId(v1, 'v1') && !isValidEventId(v1, 'v3') && !isValidEventId(v1, 'v4'));
  assert.ok(isValidEventId(v3, 'v3') && !isValidEventId(v3, 'v4') && !isValidEventId(v3, 'v1'));
  assert.ok(isValidEventId(v4, 'v4') && !isValidEventId(v4, 'v3') && !isValidEventId(v4, 'v1'));
  for (const bad of ['', '$', 'abc', '$abc', '$' + 'A'.repeat(42), '$' + 'A'.repeat(44), '!x:example.org', '$x:bad server',
    '$' + 'a'.repeat(250) + ':example.org']) {
    assert.equal(isValidEventId(bad), false, bad);
  }
});

test('room aliases', () => {
  assert.deepEqual(parseRoomAlias('#somewhere:example.org'), { localpart: 'somewhere', serverName: 'example.org' });
  assert.ok(isValidRoomAlias('#Ünïcode room:example.org:8448'));
  for (const bad of ['#:example.org', 'somewhere:example.org', '#somewhere', '#a:b:c', '#a\u0000:x', '#' + 'a'.repeat(243) + ':example.org']) {
    assert.equal(isValidRoomAlias(bad), false, bad);
  }
  assert.ok(isValidRoomAlias('#' + 'a'.repeat(242) + ':example.org'));
});
