// Power levels as the authorisation rules read them: parsing per room version, defaults when a property
// or the whole m.room.power_levels event is absent, room creators, and the "may this user do X" helpers
// the homeserver uses to answer M_FORBIDDEN before building an event.
//
// Sources: server-server-api.md "Definitions" (required power level, invite/kick/ban/redact level),
// data/event-schemas/schema/m.room.power_levels.yaml (defaults), rooms/fragments/v1-stringy-power-levels.md
// (v1–v9 accept strings), rooms/fragments/v1-floaty-power-levels.md (v1–v5 accept floats),
// rooms/v10.md (integers only), rooms/v12.md (room creators have infinite power).

import type { IdentifiedPdu, JsonObject, JsonValue, StateMap } from './events.ts';
import { stateKey } from './events.ts';
import type { RoomVersion } from './room-versions.ts';

export const CREATE_KEY = stateKey('m.room.create', '');
export const POWER_LEVELS_KEY = stateKey('m.room.power_levels', '');
export const JOIN_RULES_KEY = stateKey('m.room.join_rules', '');

/** The properties of m.room.power_levels content that hold one level each. */
export const SCALAR_POWER_LEVEL_KEYS = [
  'users_default',
  'events_default',
  'state_default',
  'ban',
  'redact',
  'kick',
  'invite',
] as const;
export type ScalarPowerLevelKey = (typeof SCALAR_POWER_LEVEL_KEYS)[number];

/**
 * Defaults when a property is missing or there is no m.room.power_levels event at all
 * (m.room.power_levels.yaml; server-server-api "Invite Level, Kick Level, Ban Level, Redact Level").
 */
export const POWER_LEVEL_DEFAULTS: Readonly<Record<ScalarPowerLevelKey, number>> = Object.freeze({
  users_default: 0,
  events_default: 0,
  state_default: 50,
  ban: 50,
  redact: 50,
  kick: 50,
  invite: 0,
});
/** `notifications.room` defaults to 50 (m.room.power_levels.yaml); other notification keys have no default. */
export const NOTIFICATION_DEFAULTS: Readonly<Record<string, number>> = Object.freeze({ room: 50 });
/** Rooms 1–11 without m.room.power_levels: "the room's creator has a power level of 100". */
export const CREATOR_DEFAULT_POWER_LEVEL = 100;

// v1-stringy-power-levels: "a single base 10 integer … optionally with any number of leading zeroes;
// optionally prefixed with a single - or +; optionally with any number of leading or trailing whitespace".
const STRINGY_INTEGER = /^\s*[+-]?[0-9]+\s*$/;

/**
 * One power-level value as the room version allows it, or undefined if it is not a valid level there.
 * - v10+ (`integerPowerLevels`): JSON integers only (rooms/v10.md "Values in m.room.power_levels events
 *   must be integers").
 * - v1–v9: integers, or strings holding an integer (v1-stringy-power-levels).
 * - v1–v5 (no strict canonical JSON): also floats, truncated at the decimal point; non-finite values
 *   reject (v1-floaty-power-levels). From v6 a float is not canonical JSON, so not a valid level.
 */
export function parsePowerLevelValue(rv: RoomVersion, value: unknown): number | undefined {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) return undefined;
    if (Number.isInteger(value)) {
      // v6+ canonical JSON: integers in [-(2**53)+1, (2**53)-1].
      if (rv.strictCanonicalJson && !Number.isSafeInteger(value)) return undefined;
      return value;
    }
    return rv.strictCanonicalJson ? undefined : Math.trunc(value);
  }
  if (typeof value === 'string' && !rv.integerPowerLevels) {
    if (!STRINGY_INTEGER.test(value)) return undefined;
    const n = Number(value.trim());
    // "-0" is a valid integer string; normalise it so comparisons and equality stay simple.
    return Number.isFinite(n) ? n + 0 : undefined;
  }
  return undefined;
}

export function isJsonObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ---------------------------------------------------------------------------------------------------
// User ids (a local helper: spec/identifiers.ts is written elsewhere; this one follows appendices.md
// "User Identifiers" including "Historical User IDs", which servers MUST accept in events).

const IPV6 = /^\[[0-9A-Fa-f:.]{2,45}\]$/;
const DNS_NAME = /^[0-9A-Za-z.-]{1,255}$/;

/** appendices.md "Server Name": hostname [ ":" port ], port = 1*5DIGIT. */
export function isValidServerName(name: string): boolean {
  let host = name;
  let port = '';
  if (name.startsWith('[')) {
    const end = name.indexOf(']');
    if (end < 0) return false;
    host = name.slice(0, end + 1);
    port = name.slice(end + 1);
  } else {
    const i = name.lastIndexOf(':');
    if (i >= 0) {
      host = name.slice(0, i);
      port = name.slice(i);
    }
  }
  if (port !== '' && !/^:[0-9]{1,5}$/.test(port)) return false;
  if (host.startsWith('[')) return IPV6.test(host);
  // IPv4address is a subset of dns-name (1*255 of DIGIT / ALPHA / "-" / ".") in the grammar.
  return DNS_NAME.test(host);
}

/**
 * A user id servers must accept in events: "@" localpart ":" server_name, where the localpart may use
 * the historical character set ("any legal non-surrogate Unicode code points except for : and NUL …
 * including … the empty string"), at most 255 bytes in all.
 */
export function isValidUserId(id: unknown): id is string {
  if (typeof id !== 'string' || !id.startsWith('@')) return false;
  if (Buffer.byteLength(id, 'utf8') > 255) return false;
  const colon = id.indexOf(':');
  if (colon < 0) return false;
  const localpart = id.slice(1, colon);
  if (localpart.includes('\u0000') || !localpart.isWellFormed()) return false;
  return isValidServerName(id.slice(colon + 1));
}

/** The server name part of a user id (everything after the first ':'), or undefined. */
export function serverNameOf(id: string): string | undefined {
  const colon = id.indexOf(':');
  return colon < 0 ? undefined : id.slice(colon + 1);
}

// ---------------------------------------------------------------------------------------------------
// Room creators.

/**
 * The room's creators as the room version defines them:
 * - v1–v10: `content.creator` of m.room.create (rule 1.4 requires it);
 * - v11: the `sender` of m.room.create (rooms/v11.md "Remove the creator property");
 * - v12: the `sender` plus every `content.additional_creators` entry (rooms/v12.md "room creators").
 */
export function getRoomCreators(rv: RoomVersion, create: IdentifiedPdu | undefined): string[] {
  if (create === undefined) return [];
  if (!rv.implicitRoomCreator) {
    const c = create.pdu.content['creator'];
    return typeof c === 'string' ? [c] : [];
  }
  const out = [create.pdu.sender];
  if (rv.privilegedCreators) {
    const extra = create.pdu.content['additional_creators'];
    if (Array.isArray(extra)) for (const u of extra) if (typeof u === 'string' && !out.includes(u)) out.push(u);
  }
  return out;
}

/** v12: is `userId` a room creator, and so of infinite power (rooms/v12.md)? Always false before v12. */
export function isPrivilegedCreator(rv: RoomVersion, state: StateMap<IdentifiedPdu>, userId: string): boolean {
  return rv.privilegedCreators && getRoomCreators(rv, state.get(CREATE_KEY)).includes(userId);
}

// ---------------------------------------------------------------------------------------------------
// Reading the power levels.

/** The power-levels content with every default filled in and every value parsed to a number. */
export interface PowerLevels {
  users_default: number;
  events_default: number;
  state_default: number;
  ban: number;
  redact: number;
  kick: number;
  invite: number;
  /** Explicit entries only; values that are not valid levels for the room version are left out. */
  events: Record<string, number>;
  notifications: Record<string, number>;
  users: Record<string, number>;
  /** Whether there was an m.room.power_levels event at all. */
  present: boolean;
}

function parseLevelMap(rv: RoomVersion, v: JsonValue | undefined): Record<string, number> {
  const out: Record<string, number> = Object.create(null) as Record<string, number>;
  if (!isJsonObject(v)) return out;
  for (const [k, raw] of Object.entries(v)) {
    const n = parsePowerLevelValue(rv, raw);
    if (n !== undefined) out[k] = n;
  }
  return out;
}

/**
 * The power levels of `content` (an m.room.power_levels content, or undefined when the room has none),
 * defaults filled in. A property whose value is not a valid level for the room version counts as absent.
 */
export function parsePowerLevelsContent(rv: RoomVersion, content: JsonObject | undefined): PowerLevels {
  const c = content ?? {};
  const scalar = (k: ScalarPowerLevelKey): number => parsePowerLevelValue(rv, c[k]) ?? POWER_LEVEL_DEFAULTS[k];
  const notifications = parseLevelMap(rv, c['notifications']);
  for (const [k, d] of Object.entries(NOTIFICATION_DEFAULTS)) if (!(k in notifications)) notifications[k] = d;
  return {
    users_default: scalar('users_default'),
    events_default: scalar('events_default'),
    state_default: scalar('state_default'),
    ban: scalar('ban'),
    redact: scalar('redact'),
    kick: scalar('kick'),
    invite: scalar('invite'),
    events: parseLevelMap(rv, c['events']),
    notifications,
    users: parseLevelMap(rv, c['users']),
    present: content !== undefined,
  };
}

/** The room's power levels from the state's m.room.power_levels event, with defaults. */
export function getPowerLevelsContent(rv: RoomVersion, state: StateMap<IdentifiedPdu>): PowerLevels {
  return parsePowerLevelsContent(rv, state.get(POWER_LEVELS_KEY)?.pdu.content);
}

/**
 * A user's power level (rooms/vN.md note "Power levels are inferred from defaults when not explicitly
 * supplied"):
 * - v12: room creators have infinite power whatever m.room.power_levels says;
 * - with m.room.power_levels: `users[userId]`, else `users_default` (default 0);
 * - without it: the creator has 100 in rooms 1–11, everyone else 0 (m.room.power_levels.yaml).
 */
export function getUserPowerLevel(rv: RoomVersion, state: StateMap<IdentifiedPdu>, userId: string): number {
  if (isPrivilegedCreator(rv, state, userId)) return Infinity;
  const pl = state.get(POWER_LEVELS_KEY);
  if (pl !== undefined) {
    const levels = parsePowerLevelsContent(rv, pl.pdu.content);
    return Object.hasOwn(levels.users, userId) ? levels.users[userId]! : levels.users_default;
  }
  if (!rv.privilegedCreators && getRoomCreators(rv, state.get(CREATE_KEY)).includes(userId)) {
    return CREATOR_DEFAULT_POWER_LEVEL;
  }
  return POWER_LEVEL_DEFAULTS.users_default;
}

/**
 * server-server-api "Required Power Level": `events[type]`, else `state_default` (50) for state events and
 * `events_default` (0) for the others.
 */
export function getRequiredPowerLevel(
  rv: RoomVersion,
  state: StateMap<IdentifiedPdu>,
  eventType: string,
  isState: boolean,
): number {
  const levels = getPowerLevelsContent(rv, state);
  if (Object.hasOwn(levels.events, eventType)) return levels.events[eventType]!;
  return isState ? levels.state_default : levels.events_default;
}

/** The level `notifications[key]` requires (`room` defaults to 50); undefined if the key has none. */
export function getNotificationPowerLevel(
  rv: RoomVersion,
  state: StateMap<IdentifiedPdu>,
  key: string,
): number | undefined {
  const n = getPowerLevelsContent(rv, state).notifications;
  return Object.hasOwn(n, key) ? n[key] : undefined;
}

// ---------------------------------------------------------------------------------------------------
// What a user may do (for building events; the auth rules remain the authority).

/** Auth rule "If the event type's required power level is greater than the sender's power level, reject". */
export function canSendEvent(
  rv: RoomVersion,
  state: StateMap<IdentifiedPdu>,
  userId: string,
  eventType: string,
  isState: boolean,
): boolean {
  return getUserPowerLevel(rv, state, userId) >= getRequiredPowerLevel(rv, state, eventType, isState);
}

/** Power to invite: the sender's level is at least the invite level (rule "membership is invite", 4). */
export function canInvite(rv: RoomVersion, state: StateMap<IdentifiedPdu>, userId: string): boolean {
  return getUserPowerLevel(rv, state, userId) >= getPowerLevelsContent(rv, state).invite;
}

/** Power to kick `target`: at least the kick level, and strictly above the target (rule "leave", 4). */
export function canKick(rv: RoomVersion, state: StateMap<IdentifiedPdu>, userId: string, target: string): boolean {
  const mine = getUserPowerLevel(rv, state, userId);
  return mine >= getPowerLevelsContent(rv, state).kick && getUserPowerLevel(rv, state, target) < mine;
}

/** Power to ban `target`: at least the ban level, and strictly above the target (rule "ban", 2). */
export function canBan(rv: RoomVersion, state: StateMap<IdentifiedPdu>, userId: string, target: string): boolean {
  const mine = getUserPowerLevel(rv, state, userId);
  return mine >= getPowerLevelsContent(rv, state).ban && getUserPowerLevel(rv, state, target) < mine;
}

/**
 * Power to unban `target` (a `leave` over a `ban`): the rule "leave" 3 and 4 together — at least the ban
 * and the kick levels, and strictly above the target ("Some consequences of these rules").
 */
export function canUnban(rv: RoomVersion, state: StateMap<IdentifiedPdu>, userId: string, target: string): boolean {
  return canBan(rv, state, userId, target) && canKick(rv, state, userId, target);
}

/**
 * Power to redact an event: sending m.room.redaction needs its required level; redacting another user's
 * event also needs the redact level (m.room.power_levels.yaml; rooms v3+ "Handling redactions" applies the
 * redaction when the sender has the redact level or the same server as the original's sender).
 */
export function canRedact(
  rv: RoomVersion,
  state: StateMap<IdentifiedPdu>,
  userId: string,
  originalSender: string,
): boolean {
  if (!canSendEvent(rv, state, userId, 'm.room.redaction', false)) return false;
  if (originalSender === userId) return true;
  return getUserPowerLevel(rv, state, userId) >= getPowerLevelsContent(rv, state).redact;
}

/** Power to trigger a notification of `key` (e.g. `room` for @room); keys without a level: no one. */
export function canNotify(rv: RoomVersion, state: StateMap<IdentifiedPdu>, userId: string, key: string): boolean {
  const need = getNotificationPowerLevel(rv, state, key);
  return need !== undefined && getUserPowerLevel(rv, state, userId) >= need;
}
