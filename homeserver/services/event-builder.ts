// Building events as this server sends them: complete PDUs, hashed and signed exactly as federation
// needs them (server-server-api.md "PDUs", "Signing Events"; event formats in rooms/v1.md, v3.md,
// v4.md, v11.md, v12.md).
import { randomBytes } from 'node:crypto';
import { encodeBase64, encodeBase64Url } from '../../spec/base64.ts';
import type { IdentifiedPdu, JsonObject, Pdu } from '../../spec/events.ts';
import { computeEventId, computeReferenceHash, hashAndSignEvent, roomIdFromCreateEventId } from '../../spec/hashes.ts';
import type { RoomVersion } from '../../spec/room-versions.ts';
import type { SigningKey } from '../../spec/signing.ts';

/** What a caller decides about a new event; the builder fills in the graph fields. */
export interface EventDraft {
  type: string;
  sender: string;
  content: JsonObject;
  state_key?: string;
  /** m.room.redaction: the redacted event (top level before v11, in content from v11). */
  redacts?: string;
}

/** Depth limit: 2^63-1 in rooms 1–5, 2^53-1 from room version 6 (server-server pdu_v*.yaml, depth_v6.yaml); JS numbers cap both at 2^53-1. */
export const MAX_DEPTH = Number.MAX_SAFE_INTEGER;

/** At most this many prev_events (Synapse and others cap at 10; the spec asks for "a small number"). */
export const MAX_PREV_EVENTS = 10;

export interface BuildInput {
  rv: RoomVersion;
  /** Absent for a v12 m.room.create event (its room id is derived from its event id). */
  roomId: string | null;
  draft: EventDraft;
  /** The events named in prev_events (full events: v1/v2 reference them by hash), with depths. */
  prevEvents: IdentifiedPdu[];
  authEvents: IdentifiedPdu[];
  serverName: string;
  key: SigningKey;
  now: number;
}

function reference(rv: RoomVersion, e: IdentifiedPdu): string | [string, { sha256: string }] {
  // v1/v2 reference events as [event_id, {sha256: reference hash}] (rooms/v1.md event format).
  if (rv.eventIdFormat === 'v1') return [e.eventId, { sha256: encodeBase64(computeReferenceHash(e.pdu, rv)) }];
  return e.eventId;
}

/** Builds, hashes and signs an event; returns it with its id and (for a v12 create) its room id. */
export function buildEvent(input: BuildInput): { event: IdentifiedPdu; roomId: string } {
  const { rv, draft } = input;
  let depth = 1;
  for (const p of input.prevEvents) depth = Math.max(depth, Math.min(p.pdu.depth + 1, MAX_DEPTH));
  const pdu: Pdu = {
    type: draft.type,
    sender: draft.sender,
    content: draft.content,
    origin_server_ts: input.now,
    depth,
    prev_events: input.prevEvents.map((e) => reference(rv, e)),
    auth_events: input.authEvents.map((e) => reference(rv, e)),
  };
  if (typeof draft.state_key === 'string') pdu.state_key = draft.state_key;
  if (input.roomId !== null) pdu.room_id = input.roomId;
  // `origin` left the event format in v11 (rooms/v11.md: no longer kept by redaction); rooms 1–10 carry it.
  if (!rv.implicitRoomCreator) pdu.origin = input.serverName;
  if (draft.redacts !== undefined) {
    if (rv.redactsInContent) pdu.content = { ...pdu.content, redacts: draft.redacts };
    else pdu.redacts = draft.redacts;
  }
  if (rv.eventIdInEvent) {
    // v1/v2: `$opaque:domain`, chosen by the sending server (rooms/v1.md "Event IDs").
    pdu.event_id = `$${encodeBase64Url(randomBytes(18))}:${input.serverName}`;
  }
  const signed = hashAndSignEvent(pdu, rv, input.serverName, input.key);
  const eventId = computeEventId(signed, rv);
  let roomId = input.roomId;
  if (roomId === null) {
    if (!rv.roomIdFromCreateEvent || draft.type !== 'm.room.create') throw new Error('only a v12 create event may be built without a room id');
    roomId = roomIdFromCreateEventId(eventId);
  }
  return { event: { eventId, pdu: signed }, roomId };
}

/** A room id for rooms 1–11: `!opaque:server` (appendices.md "Room IDs"). */
export function generateRoomId(serverName: string): string {
  return `!${encodeBase64Url(randomBytes(12))}:${serverName}`;
}
