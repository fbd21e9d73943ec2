// Shapes of events as the spec defines them. Values from the wire are untrusted: validate before use.

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** Signatures: server name → key id → unpadded base64 signature. */
export type Signatures = Record<string, Record<string, string>>;

/**
 * A persistent data unit (room event) in its federation form. Fields that only some room versions use
 * are optional: `event_id` (v1, v2 only), `room_id` (absent from the v12 create event), `prev_events`
 * and `auth_events` are `[eventId, hashes]` pairs in v1/v2 and plain ids from v3 on.
 */
export interface Pdu {
  event_id?: string;
  room_id?: string;
  sender: string;
  origin?: string;
  origin_server_ts: number;
  type: string;
  state_key?: string;
  content: JsonObject;
  prev_events: Array<string | [string, { sha256: string }]>;
  auth_events: Array<string | [string, { sha256: string }]>;
  depth: number;
  hashes?: { sha256: string };
  signatures?: Signatures;
  unsigned?: JsonObject;
  redacts?: string;
  [key: string]: unknown;
}

/** An event together with the id it is known by (computed for v3+). */
export interface IdentifiedPdu {
  eventId: string;
  pdu: Pdu;
}

export function isStateEvent(pdu: { state_key?: unknown }): boolean {
  return typeof pdu.state_key === 'string';
}

/** Event ids from `prev_events`/`auth_events`, whichever format the room version uses. */
export function refIds(refs: Pdu['prev_events']): string[] {
  return refs.map((r) => (typeof r === 'string' ? r : r[0]));
}

/** Key of a state map entry: `(type, state_key)` joined by NUL, which neither may contain usefully. */
export type StateKey = string;
export function stateKey(type: string, stateKeyValue: string): StateKey {
  return `${type}\u0000${stateKeyValue}`;
}
export function splitStateKey(key: StateKey): [type: string, stateKey: string] {
  const i = key.indexOf('\u0000');
  return [key.slice(0, i), key.slice(i + 1)];
}

/** A state map: `(type, state_key)` → value (an event id, or the event itself). */
export type StateMap<T> = Map<StateKey, T>;
