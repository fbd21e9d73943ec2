// Events in the client-server API's format (client-server-api "Room Event Format",
// definitions/client_event.yaml): the PDU's client-visible fields, redacted if it was redacted (with
// the redaction under unsigned.redacted_because), and unsigned data the server knows.
import type { JsonObject, Pdu } from '../../spec/events.ts';
import { redactEvent } from '../../spec/redaction.ts';
import type { RoomVersion } from '../../spec/room-versions.ts';

export interface ClientEvent {
  event_id: string;
  room_id?: string;
  type: string;
  sender: string;
  origin_server_ts: number;
  content: JsonObject;
  state_key?: string;
  redacts?: string;
  unsigned?: Record<string, unknown>;
}

export interface ClientEventOptions {
  rv: RoomVersion;
  /** The room (a v12 m.room.create PDU has no room_id; clients always get one). */
  roomId: string;
  now: number;
  /** The redaction event, when the event was redacted. */
  redactedBecause?: ClientEvent;
  /** The sending device's transaction id, when the event is shown to that device. */
  transactionId?: string;
  /** For state events: the event this one replaced in the state (unsigned.replaces_state / prev_content). */
  replaces?: { eventId: string; content: JsonObject };
  /** Leave out room_id (sync's timeline format). */
  withoutRoomId?: boolean;
}

export function toClientEvent(eventId: string, pdu: Pdu, o: ClientEventOptions): ClientEvent {
  const source = o.redactedBecause ? (redactEvent(pdu, o.rv) as Pdu) : pdu;
  const ev: ClientEvent = {
    event_id: eventId,
    type: source.type,
    sender: source.sender,
    origin_server_ts: source.origin_server_ts,
    content: (source.content ?? {}) as JsonObject,
  };
  if (!o.withoutRoomId) ev.room_id = o.roomId;
  if (typeof source.state_key === 'string') ev.state_key = source.state_key;
  if (source.type === 'm.room.redaction') {
    // v11 moved `redacts` into content; clients of every version read the top-level copy too.
    const r = typeof source.redacts === 'string' ? source.redacts : source.content?.['redacts'];
    if (typeof r === 'string') ev.redacts = r;
  }
  const unsigned: Record<string, unknown> = { age: Math.max(0, o.now - pdu.origin_server_ts) };
  if (o.redactedBecause) unsigned['redacted_because'] = o.redactedBecause;
  if (o.transactionId !== undefined) unsigned['transaction_id'] = o.transactionId;
  if (o.replaces) {
    unsigned['replaces_state'] = o.replaces.eventId;
    unsigned['prev_content'] = o.replaces.content;
  }
  ev.unsigned = unsigned;
  return ev;
}
