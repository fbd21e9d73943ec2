import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { decodeBase64, decodeBase64Url, encodeBase64, encodeBase64Url } from './base64.ts';
import type { Pdu } from './events.ts';
import {
  checkContentHash,
  computeContentHash,
  computeEventId,
  computeReferenceHash,
  hashAndSignEvent,
  roomIdFromCreateEventId,
  verifyEventSignature,
} from './hashes.ts';
import { isValidEventId, isValidRoomId } from './identifiers.ts';
import { redactEvent } from './redaction.ts';
import { getRoomVersion, type RoomVersion } from './room-versions.ts';
import { signingKeyFromSeed } from './signing.ts';

const KEY = signingKeyFromSeed('ed25519:1', decodeBase64('YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1'));
const rv = (id: string): RoomVersion => getRoomVersion(id)!;
const V1 = rv('1');

// appendices.md "Cryptographic Test Vectors > Event Signing" (room version 1 redaction rules).
const MINIMAL_EVENT = {
  room_id: '!x:domain',
  sender: '@a:domain',
  origin: 'domain',
  origin_server_ts: 1000000,
  signatures: {},
  hashes: {},
  type: 'X',
  content: {},
  prev_events: [],
  auth_events: [],
  depth: 3,
  unsigned: { age_ts: 1000000 },
} as unknown as Pdu;

const REDACTABLE_EVENT = {
  content: { body: 'Here is the message content' },
  event_id: '$0:domain',
  origin: 'domain',
  origin_server_ts: 1000000,
  type: 'm.room.message',
  room_id: '!r:domain',
  sender: '@u:domain',
  signatures: {},
  unsigned: { age_ts: 1000000 },
} as unknown as Pdu;

test('event signing vector: minimally-sized event', () => {
  const signed = hashAndSignEvent(MINIMAL_EVENT, V1, 'domain', KEY);
  assert.deepEqual(signed, {
    auth_events: [],
    content: {},
    depth: 3,
    hashes: { sha256: '5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos' },
    origin: 'domain',
    origin_server_ts: 1000000,
    prev_events: [],
    room_id: '!x:domain',
    sender: '@a:domain',
    signatures: {
      domain: {
        'ed25519:1': 'KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg',
      },
    },
    type: 'X',
    unsigned: { age_ts: 1000000 },
  });
  assert.equal(computeContentHash(MINIMAL_EVENT), '5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos');
  assert.ok(checkContentHash(signed));
  assert.ok(verifyEventSignature(signed, V1, 'domain', 'ed25519:1', KEY.publicKey));
  // The input was not mutated.
  assert.deepEqual(MINIMAL_EVENT.hashes, {});
  assert.deepEqual(MINIMAL_EVENT.signatures, {});
});

test('event signing vector: event with redactable content', () => {
  const signed = hashAndSignEvent(REDACTABLE_EVENT, V1, 'domain', KEY);
  assert.deepEqual(signed, {
    content: { body: 'Here is the message content' },
    event_id: '$0:domain',
    hashes: { sha256: 'onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g' },
    origin: 'domain',
    origin_server_ts: 1000000,
    type: 'm.room.message',
    room_id: '!r:domain',
    sender: '@u:domain',
    signatures: {
      domain: {
        'ed25519:1': 'Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA',
      },
    },
    unsigned: { age_ts: 1000000 },
  });
  // The content hash covers event_id (v1 events carry it): without it the hash differs.
  const { event_id: _e, ...noId } = REDACTABLE_EVENT;
  assert.notEqual(computeContentHash(noId), 'onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g');
  // The signature covers only the redacted event, so it survives redaction; the content hash does not.
  const redacted = redactEvent(signed, V1);
  assert.deepEqual(redacted.content, {});
  assert.ok(verifyEventSignature(redacted, V1, 'domain', 'ed25519:1', KEY.publicKey));
  assert.ok(verifyEventSignature(signed, V1, 'domain', 'ed25519:1', KEY.publicKey));
  assert.equal(checkContentHash(redacted), false);
  assert.ok(checkContentHash(signed));
  // Tampering with kept fields breaks the signature; with redactable content only the hash.
  assert.equal(verifyEventSignature({ ...signed, sender: '@v:domain' }, V1, 'domain', 'ed25519:1', KEY.publicKey), false);
  const edited = { ...signed, content: { body: 'edited' } };
  assert.ok(verifyEventSignature(edited, V1, 'domain', 'ed25519:1', KEY.publicKey));
  assert.equal(checkContentHash(edited), false);
});

test('checkContentHash: padded hash accepted, junk rejected without throwing', () => {
  const signed = hashAndSignEvent(MINIMAL_EVENT, V1, 'domain', KEY);
  assert.ok(checkContentHash({ ...signed, hashes: { sha256: '5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos=' } }));
  for (const hashes of [undefined, null, {}, { sha256: 5 }, { sha256: 'not base64!' }, { sha256: 'AAAA' }, 'x']) {
    assert.equal(checkContentHash({ ...signed, hashes }), false, JSON.stringify(hashes));
  }
  assert.equal(checkContentHash({ ...signed, content: { f: 1.5 } }), false); // not canonical JSON
});

test('event ids: v1 carried in the event, v3 standard base64, v4+ URL-safe base64 of the same hash', () => {
  assert.equal(computeEventId(REDACTABLE_EVENT, V1), '$0:domain');
  assert.equal(computeEventId(REDACTABLE_EVENT, rv('2')), '$0:domain');
  assert.throws(() => computeEventId(MINIMAL_EVENT, V1), /event_id/);

  // An event whose reference hash contains both base64 characters 62 and 63 in some position is
  // the telling case; search for one deterministically by varying origin_server_ts.
  const base = { ...MINIMAL_EVENT, room_id: '!r:domain' } as Pdu;
  let ev: Pdu | undefined;
  for (let ts = 0; ts < 10000; ts++) {
    const candidate = hashAndSignEvent({ ...base, origin_server_ts: ts }, rv('4'), 'domain', KEY);
    const b64 = encodeBase64(computeReferenceHash(candidate, rv('4')));
    if (b64.includes('+') && b64.includes('/')) {
      ev = candidate;
      break;
    }
  }
  assert.ok(ev, 'found an event whose hash has + and /');
  const hash = computeReferenceHash(ev, rv('4'));
  assert.equal(hash.length, 32);
  const v3 = computeEventId(ev, rv('3'));
  const v4 = computeEventId(ev, rv('4'));
  assert.equal(v3, '$' + encodeBase64(hash));
  assert.equal(v4, '$' + encodeBase64Url(hash));
  assert.equal(v3.length, 44);
  assert.equal(v4, v3.replaceAll('+', '-').replaceAll('/', '_'));
  assert.notEqual(v3, v4);
  assert.ok(isValidEventId(v3, 'v3') && !isValidEventId(v3, 'v4'));
  assert.ok(isValidEventId(v4, 'v4') && !isValidEventId(v4, 'v3'));
  for (const id of ['5', '6', '7', '8', '9', '10']) assert.equal(computeEventId(ev, rv(id)), v4, `room v${id}`);
  // The id depends on the redacted form only: unsigned, signatures and redactable content do not count.
  const { signatures: _s, ...unsignedEv } = ev;
  assert.equal(computeEventId({ ...unsignedEv, unsigned: { age: 1 }, content: { x: 'y' } }, rv('4')), v4);
  // …but the hashes (which cover the full content) do.
  assert.notEqual(computeEventId({ ...ev, hashes: { sha256: 'AAAA' } }, rv('4')), v4);
});

test('reference hash is sha256 of the canonical redacted event (spec vector event, room v1)', () => {
  const signed = hashAndSignEvent(MINIMAL_EVENT, V1, 'domain', KEY);
  const { signatures: _s, unsigned: _u, ...rest } = signed;
  const expected = createHash('sha256')
    .update(
      '{"auth_events":[],"content":{},"depth":3,"hashes":{"sha256":"5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},' +
        '"origin":"domain","origin_server_ts":1000000,"prev_events":[],"room_id":"!x:domain","sender":"@a:domain","type":"X"}',
    )
    .digest();
  assert.deepEqual(Object.keys(rest).sort(), ['auth_events', 'content', 'depth', 'hashes', 'origin', 'origin_server_ts', 'prev_events', 'room_id', 'sender', 'type']);
  assert.deepEqual(Buffer.from(computeReferenceHash(signed, V1)), expected);
});

test('v12: room id is the create event id with ! instead of $', () => {
  const V12 = rv('12');
  const create = hashAndSignEvent(
    {
      type: 'm.room.create',
      state_key: '',
      sender: '@alice:example.org',
      origin_server_ts: 1700000000000,
      content: { room_version: '12' },
      prev_events: [],
      auth_events: [],
      depth: 1,
    },
    V12,
    'example.org',
    KEY,
  );
  const eventId = computeEventId(create, V12);
  const roomId = roomIdFromCreateEventId(eventId);
  assert.equal(roomId, '!' + eventId.slice(1));
  assert.equal(roomId.length, 44);
  assert.ok(isValidRoomId(roomId));
  assert.equal(decodeBase64Url(roomId.slice(1)).length, 32);
  assert.throws(() => roomIdFromCreateEventId('!abc'));
  assert.throws(() => roomIdFromCreateEventId('$'));
});

test('v1–v5 events with floats can be hashed and signed; v6+ cannot', () => {
  const pl = {
    type: 'm.room.power_levels',
    state_key: '',
    sender: '@example:example.org',
    room_id: '!jEsUZKDJdhlrceRyVU:example.org',
    origin_server_ts: 1432735824653,
    content: { users: { '@bob:localhost': 50.57 } },
    prev_events: [],
    auth_events: [],
    depth: 4,
  } as unknown as Pdu;
  const signed = hashAndSignEvent(pl, rv('5'), 'example.org', KEY);
  assert.ok(checkContentHash(signed, rv('5')));
  assert.ok(verifyEventSignature(signed, rv('5'), 'example.org', 'ed25519:1', KEY.publicKey));
  assert.match(computeEventId(signed, rv('5')), /^\$[A-Za-z0-9_-]{43}$/);
  assert.throws(() => hashAndSignEvent(pl, rv('6'), 'example.org', KEY), /float 50\.57 .* at \$\.content\.users\["@bob:localhost"\]/);
  assert.equal(verifyEventSignature(signed, rv('6'), 'example.org', 'ed25519:1', KEY.publicKey), false);
  assert.equal(checkContentHash(signed), false); // strict without a room version
});

test('verifyEventSignature never throws on garbage', () => {
  for (const junk of [{}, { signatures: 'x' }, { type: 5, content: 'x', signatures: { domain: {} } }]) {
    assert.equal(verifyEventSignature(junk, V1, 'domain', 'ed25519:1', KEY.publicKey), false);
  }
});
