// Event hashes, event ids and event signatures (server-server-api.md "Signing Events": "Adding hashes
// and signatures to outgoing events", "Validating hashes and signatures on received events",
// "Calculating the reference hash for an event", "Calculating the content hash for an event"; event id
// formats from rooms/v1.md, v3.md and fragments/v4-event-ids.md; v12 room ids from rooms/v12.md).
import { hash, type KeyObject } from 'node:crypto';
import { decodeBase64, encodeBase64, encodeBase64Url } from './base64.ts';
import { withCanonicalJsonBytes, type CanonicalJsonOptions } from './canonical-json.ts';
import type { Pdu } from './events.ts';
import { redactEvent } from './redaction.ts';
import type { RoomVersion } from './room-versions.ts';
import { signJson, verifyJsonSignature, type SigningKey } from './signing.ts';

/** Events of room versions 1–5 are not held to canonical JSON (rooms/fragments/v1-canonical-json.md). */
function jsonOptions(rv: RoomVersion | undefined): CanonicalJsonOptions | undefined {
  return rv !== undefined && !rv.strictCanonicalJson ? LENIENT : undefined;
}
const LENIENT: CanonicalJsonOptions = Object.freeze({ allowNonCanonicalNumbers: true });

/** SHA-256 of the canonical JSON of `value`. */
function sha256OfCanonical(value: unknown, rv: RoomVersion | undefined): Buffer {
  return withCanonicalJsonBytes(value, jsonOptions(rv), (bytes) => hash('sha256', bytes, 'buffer'));
}

/**
 * The content hash, unpadded base64 of SHA-256 over the canonical JSON of the whole event without
 * `unsigned`, `signatures` and `hashes`. Everything else stays, including `event_id` in v1/v2 events
 * (the spec's second "Event Signing" test vector depends on it). Pass `rv` for events of room
 * versions 1–5, whose JSON may hold floats.
 */
export function computeContentHash(pdu: object, rv?: RoomVersion): string {
  const { unsigned: _u, signatures: _s, hashes: _h, ...rest } = pdu as Record<string, unknown>;
  return encodeBase64(sha256OfCanonical(rest, rv));
}

/**
 * Whether `hashes.sha256` matches the content hash. The received value is base64-decoded and compared
 * as bytes (so padding in it is tolerated). False, never throws, when absent or malformed; a false
 * result for a validly signed event means it must be treated as redacted.
 */
export function checkContentHash(pdu: object, rv?: RoomVersion): boolean {
  try {
    const hashes = (pdu as { hashes?: unknown }).hashes;
    if (hashes === null || typeof hashes !== 'object' || !Object.hasOwn(hashes, 'sha256')) return false;
    const claimed = (hashes as { sha256?: unknown }).sha256;
    if (typeof claimed !== 'string') return false;
    const expected = decodeBase64(computeContentHash(pdu, rv));
    const got = decodeBase64(claimed);
    return got.length === expected.length && Buffer.compare(got, expected) === 0;
  } catch {
    return false;
  }
}

/**
 * The reference hash: SHA-256 over the canonical JSON of the redacted event without `signatures` and
 * `unsigned`. Event ids in v3+ are this hash; v1/v2 events reference each other with it.
 */
export function computeReferenceHash(pdu: object, rv: RoomVersion): Uint8Array {
  const redacted = redactEvent(pdu, rv);
  delete redacted['signatures'];
  delete redacted['unsigned']; // redaction already drops it; kept for the spec's step 2
  return new Uint8Array(sha256OfCanonical(redacted, rv));
}

/**
 * The event id of `pdu` in room version `rv`: v1/v2 carry it in the event (`$opaque:domain`) and it is
 * returned as is (throws if absent); v3 is `$` + unpadded standard base64 of the reference hash; v4+
 * is `$` + URL-safe unpadded base64.
 */
export function computeEventId(pdu: object, rv: RoomVersion): string {
  switch (rv.eventIdFormat) {
    case 'v1': {
      const id = (pdu as { event_id?: unknown }).event_id;
      if (typeof id !== 'string' || id.length === 0) {
        throw new Error(`room version ${rv.id} events carry their event_id, and this one has none`);
      }
      return id;
    }
    case 'v3':
      return '$' + encodeBase64(computeReferenceHash(pdu, rv));
    case 'v4':
      return '$' + encodeBase64Url(computeReferenceHash(pdu, rv));
  }
}

/**
 * Room version 12 room ids are "the event ID of the `m.room.create` event using `!` as the sigil
 * instead of `$`" (appendices.md "Room IDs", rooms/v12.md auth rule 1.2).
 */
export function roomIdFromCreateEventId(eventId: string): string {
  if (typeof eventId !== 'string' || eventId.length < 2 || eventId[0] !== '$') {
    throw new Error(`not an event id: ${JSON.stringify(eventId)}`);
  }
  return '!' + eventId.slice(1);
}

/**
 * Hashes and signs an outgoing event (server-server-api.md "Adding hashes and signatures to outgoing
 * events"): sets `hashes` to `{sha256: content hash}`, signs the *redacted* event, and copies the
 * resulting `signatures` (existing ones kept) onto the full event. Returns a new object.
 */
export function hashAndSignEvent(pdu: Pdu, rv: RoomVersion, serverName: string, key: SigningKey): Pdu {
  const hashed: Pdu = { ...pdu, hashes: { sha256: computeContentHash(pdu, rv) } };
  const signedRedacted = signJson(redactEvent(hashed, rv), serverName, key, jsonOptions(rv));
  return { ...hashed, signatures: signedRedacted.signatures };
}

/**
 * Checks the signature of `serverName` with `keyId` on the redacted form of `pdu` (server-server-api.md
 * "Validating hashes and signatures on received events": succeeds whether the event was sent whole or
 * redacted). Which servers must have signed, and which keys are valid when, is the caller's business.
 * Never throws.
 */
export function verifyEventSignature(
  pdu: object,
  rv: RoomVersion,
  serverName: string,
  keyId: string,
  publicKey: Uint8Array | KeyObject,
): boolean {
  try {
    return verifyJsonSignature(redactEvent(pdu, rv), serverName, keyId, publicKey, jsonOptions(rv));
  } catch {
    return false;
  }
}
