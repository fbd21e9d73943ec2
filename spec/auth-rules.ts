// The authorisation rules of room versions 1–12 (rooms/v1.md … v12.md, rooms/fragments/v1-auth-rules.md,
// v3-auth-rules.md, v8-auth-rules.md), as pure functions.
//
// Two entry points, because the spec's rules read two different things:
// - `checkAuthEventsSelection` checks the event's own `auth_events` list (rule "Considering the event's
//   auth_events": duplicates, entries the auth events selection does not name, rejected entries, the
//   create event, room ids). Only the list can show duplicates, so this needs the list itself.
// - `checkEventAuth` checks every other rule against a state map: the auth events (the "based on the
//   event's auth events" check on receipt of a PDU), or the room state before the event / the current
//   state (the later checks and state resolution's iterative auth checks). The state must contain the
//   m.room.create event (in v12 too, although it is never among the auth events there).
//
// A rejection names the first rule that fails: `rule` is a stable dotted name ('member.join.banned') and
// `reason` cites the rule number of that room version ("v10 rule 4.3.3: …").

import type { IdentifiedPdu, JsonObject, JsonValue, Pdu, StateMap } from './events.ts';
import { refIds, stateKey } from './events.ts';
import { authEventTypesFor } from './auth-events.ts';
import {
  CREATE_KEY,
  JOIN_RULES_KEY,
  POWER_LEVELS_KEY,
  SCALAR_POWER_LEVEL_KEYS,
  getPowerLevelsContent,
  getRequiredPowerLevel,
  getRoomCreators,
  getUserPowerLevel,
  isJsonObject,
  isValidUserId,
  parsePowerLevelValue,
  serverNameOf,
} from './power-levels.ts';
import type { RoomVersion } from './room-versions.ts';
import { decodeBase64 } from './base64.ts';
import { verifyJsonSignature } from './signing.ts';
import { getRoomVersion } from './room-versions.ts';

export type AuthResult = { allowed: true } | { allowed: false; rule: string; reason: string };

export interface AuthOptions {
  /**
   * Third-party invites (rule "membership is invite" 1.7): does any signature in `signed` (its
   * `signatures` object, over `signed` without `signatures`) verify with `publicKey` (an Ed25519 key in
   * unpadded standard or URL-safe base64, from the m.room.third_party_invite event)? Crypto lives
   * outside this module. Without this callback a third-party invite that reaches the signature step is
   * rejected ('member.invite.third_party.no_verifier').
   */
  verifySignature?: (signed: JsonObject, publicKey: string) => boolean;
  /**
   * v8+ rule "If content has a join_authorised_via_users_server property: if the event is not validly
   * signed by the homeserver of the user ID denoted by the key, reject". Is `event` validly signed by
   * `serverName`? Without this callback the signature is not checked here: it does not depend on the
   * state, so the caller that first authorises a received event (against its auth events) must pass it,
   * and later checks of the same event (state before it, current state, state resolution) may omit it.
   */
  isSignedBy?: (event: IdentifiedPdu, serverName: string) => boolean;
}

export interface AuthEventsSelectionOptions {
  /** Was this auth event itself rejected (rule "Considering the event's auth_events" 3)? */
  isRejected?: (eventId: string) => boolean;
}

const ALLOW: AuthResult = Object.freeze({ allowed: true });

// ---------------------------------------------------------------------------------------------------
// Rule numbers per room version, so reasons cite the text of that version.
//
// v1–v5:  1 create, 2 auth_events, 3 m.federate, 4 aliases, 5 member, 6 sender joined,
//         7 third_party_invite, 8 required level, 9 state_key '@', 10 power_levels, 11 redaction (v1, v2)
// v6–v11: 1 create, 2 auth_events, 3 m.federate, 4 member, 5 sender joined, 6 third_party_invite,
//         7 required level, 8 state_key '@', 9 power_levels
// v12:    1 create, 2 room id, 3 auth_events, 4 m.federate, 5 member, 6 sender joined,
//         7 third_party_invite, 8 required level, 9 state_key '@', 10 power_levels

type Section =
  | 'create'
  | 'roomId'
  | 'authEvents'
  | 'federate'
  | 'aliases'
  | 'member'
  | 'joined'
  | 'thirdPartyInvite'
  | 'required'
  | 'stateKey'
  | 'powerLevels'
  | 'redaction'
  | 'otherwise';

function sectionNumber(rv: RoomVersion, s: Section): number {
  const order: Section[] = rv.roomIdFromCreateEvent
    ? ['create', 'roomId', 'authEvents', 'federate', 'member', 'joined', 'thirdPartyInvite', 'required', 'stateKey', 'powerLevels', 'otherwise']
    : rv.specialCaseAliasesAuth
      ? ['create', 'authEvents', 'federate', 'aliases', 'member', 'joined', 'thirdPartyInvite', 'required', 'stateKey', 'powerLevels', 'redaction', 'otherwise']
      : ['create', 'authEvents', 'federate', 'member', 'joined', 'thirdPartyInvite', 'required', 'stateKey', 'powerLevels', 'otherwise'];
  return order.indexOf(s) + 1;
}

/** Sub-section of the member rule for a membership (v8 inserted 4.2 for join_authorised_via_users_server). */
function memberSub(rv: RoomVersion, m: 'join' | 'invite' | 'leave' | 'ban' | 'knock' | 'unknown'): number {
  const shift = rv.restrictedJoin ? 1 : 0;
  const base = { join: 2, invite: 3, leave: 4, ban: 5, knock: 6, unknown: rv.knock ? 7 : 6 }[m];
  return base + shift;
}

/** Sub-rule of the power_levels rule: v10 added two integer checks first, v12 one more after users. */
function plSub(rv: RoomVersion, n: number): number {
  if (n === 1) return rv.integerPowerLevels ? 3 : 1; // the `users` check
  return n + (rv.integerPowerLevels ? 2 : 0) + (rv.privilegedCreators ? 1 : 0);
}

function cite(rv: RoomVersion, s: Section, ...sub: number[]): string {
  return `v${rv.id} rule ${[sectionNumber(rv, s), ...sub].join('.')}`;
}

function reject(rule: string, reason: string): AuthResult {
  return { allowed: false, rule, reason };
}

// ---------------------------------------------------------------------------------------------------
// Small readers.

function domainOf(id: unknown): string | undefined {
  return typeof id === 'string' ? serverNameOf(id) : undefined;
}

function contentOf(pdu: Pdu): JsonObject {
  return isJsonObject(pdu.content) ? pdu.content : {};
}

function membershipOf(state: StateMap<IdentifiedPdu>, userId: string): string | undefined {
  const m = state.get(stateKey('m.room.member', userId))?.pdu.content?.['membership'];
  return typeof m === 'string' ? m : undefined;
}

function joinRuleOf(state: StateMap<IdentifiedPdu>): string | undefined {
  const r = state.get(JOIN_RULES_KEY)?.pdu.content?.['join_rule'];
  return typeof r === 'string' ? r : undefined;
}

/** The room id v12 derives from a create event id: the event id with sigil `!` instead of `$`. */
export function roomIdFromCreateEventId(createEventId: string): string {
  return `!${createEventId.startsWith('$') ? createEventId.slice(1) : createEventId}`;
}

/** A state map of auth events keyed by (type, state_key); non-state entries are left out. */
export function authEventsToStateMap(authEvents: Iterable<IdentifiedPdu>): StateMap<IdentifiedPdu> {
  const m: StateMap<IdentifiedPdu> = new Map();
  for (const e of authEvents) {
    if (typeof e.pdu.state_key !== 'string') continue;
    const k = stateKey(e.pdu.type, e.pdu.state_key);
    if (!m.has(k)) m.set(k, e);
  }
  return m;
}

// ---------------------------------------------------------------------------------------------------
// Rule "Considering the event's auth_events".

/**
 * Rule "Considering the event's auth_events" (v1–v11 rule 2, v12 rule 3), checked on the event's own
 * `auth_events` list (the events it references, in any order):
 * 1. duplicate (type, state_key) entries → reject;
 * 2. entries the auth events selection (server-server-api) would not pick for this event → reject; this
 *    includes m.room.create in v12 ("In this room version, m.room.create MUST NOT be selected");
 * 3. entries that were themselves rejected → reject (when `isRejected` is given);
 * 4. no m.room.create among them → reject (v1–v11; removed in v12);
 * 5. entries with a `room_id` other than the event's → reject.
 * The m.room.create event itself has no auth events and is not checked here (rule 1 covers it).
 * Callers should also make sure every id in the event's `auth_events` was found: missing events mean
 * the check cannot run yet.
 */
export function checkAuthEventsSelection(
  rv: RoomVersion,
  event: IdentifiedPdu,
  authEvents: readonly IdentifiedPdu[],
  options: AuthEventsSelectionOptions = {},
): AuthResult {
  const pdu = event.pdu;
  if (pdu.type === 'm.room.create') {
    return authEvents.length === 0
      ? ALLOW
      : reject('auth_events.unexpected', `server-server-api auth events selection: m.room.create has no auth events`);
  }
  const s = 'authEvents' as const;
  const seen = new Set<string>();
  for (const a of authEvents) {
    const sk = a.pdu.state_key;
    if (typeof sk !== 'string') {
      return reject('auth_events.unexpected', `${cite(rv, s, 2)}: auth event ${a.eventId} is not a state event`);
    }
    const k = stateKey(a.pdu.type, sk);
    if (seen.has(k)) {
      return reject('auth_events.duplicate', `${cite(rv, s, 1)}: duplicate auth events for (${a.pdu.type}, ${sk})`);
    }
    seen.add(k);
  }
  const allowed = new Set(authEventTypesFor(rv, { ...pdu, content: contentOf(pdu) }).map(([t, k]) => stateKey(t, k)));
  for (const a of authEvents) {
    if (!allowed.has(stateKey(a.pdu.type, a.pdu.state_key!))) {
      return reject(
        'auth_events.unexpected',
        `${cite(rv, s, 2)}: auth event ${a.eventId} (${a.pdu.type}, ${a.pdu.state_key}) is not one the auth events selection picks`,
      );
    }
  }
  if (options.isRejected !== undefined) {
    for (const a of authEvents) {
      if (options.isRejected(a.eventId)) {
        return reject('auth_events.rejected', `${cite(rv, s, 3)}: auth event ${a.eventId} was rejected`);
      }
    }
  }
  if (!rv.roomIdFromCreateEvent && !seen.has(CREATE_KEY)) {
    return reject('auth_events.no_create', `${cite(rv, s, 4)}: no m.room.create event among the auth events`);
  }
  for (const a of authEvents) {
    // v12's create event has no room_id; rule 2 (the room id names the create event) covers it.
    if (a.pdu.type === 'm.room.create' && rv.roomIdFromCreateEvent) continue;
    if (a.pdu.room_id !== pdu.room_id) {
      return reject('auth_events.room_id', `${cite(rv, s, 5)}: auth event ${a.eventId} is in room ${String(a.pdu.room_id)}`);
    }
  }
  return ALLOW;
}

// ---------------------------------------------------------------------------------------------------
// The rules.

/**
 * Checks every authorisation rule of the room version except those that need the `auth_events` list
 * itself (see `checkAuthEventsSelection`). `authState` is the state the event is checked against: its
 * auth events (for the "based on auth events" check) or the room state at that point (for the "based on
 * current/prior state" checks). It must contain the create event.
 */
export function checkEventAuth(
  rv: RoomVersion,
  event: IdentifiedPdu,
  authState: StateMap<IdentifiedPdu>,
  options: AuthOptions = {},
): AuthResult {
  const pdu = event.pdu;
  const content = contentOf(pdu);

  // Rule 1: m.room.create.
  if (pdu.type === 'm.room.create') return checkCreate(rv, pdu, content);

  const create = authState.get(CREATE_KEY);
  if (rv.roomIdFromCreateEvent) {
    const roomId = checkRoomIdNamesCreate(rv, pdu, create);
    if (!roomId.allowed) return roomId;
  }
  if (create === undefined) {
    // v1–v11 rule 2.4: "If there is no m.room.create event among the entries, reject."
    return reject('auth_events.no_create', `${cite(rv, 'authEvents', 4)}: no m.room.create event`);
  }
  // Rule "Considering the event's auth_events" 5, on the state given: "If any event in auth_events has a
  // room_id which does not match that of the event being authorised, reject."
  for (const e of authState.values()) {
    if (e.pdu.type === 'm.room.create' && rv.roomIdFromCreateEvent) continue;
    if (e.pdu.room_id !== pdu.room_id) {
      return reject('auth_events.room_id', `${cite(rv, 'authEvents', 5)}: ${e.eventId} is in room ${String(e.pdu.room_id)}`);
    }
  }

  // Rule 3 (v12: 4): "If the content of the m.room.create event in the room state has the property
  // m.federate set to false, and the sender domain of the event does not match the sender domain of the
  // create event, reject."
  if (create.pdu.content?.['m.federate'] === false && domainOf(pdu.sender) !== domainOf(create.pdu.sender)) {
    return reject('federate', `${cite(rv, 'federate')}: the room is not federated (m.federate is false)`);
  }

  // v1–v5 rule 4: m.room.aliases (removed in v6).
  if (rv.specialCaseAliasesAuth && pdu.type === 'm.room.aliases') {
    if (typeof pdu.state_key !== 'string') {
      return reject('aliases.no_state_key', `${cite(rv, 'aliases', 1)}: m.room.aliases without a state_key`);
    }
    if (domainOf(pdu.sender) !== pdu.state_key) {
      return reject('aliases.domain', `${cite(rv, 'aliases', 2)}: the sender's domain does not match the state_key`);
    }
    return ALLOW;
  }

  if (pdu.type === 'm.room.member') return checkMember(rv, event, content, authState, create, options);

  const sender = pdu.sender;
  // "If the sender's current membership state is not join, reject."
  if (membershipOf(authState, sender) !== 'join') {
    return reject('sender.not_joined', `${cite(rv, 'joined')}: the sender ${sender} is not joined to the room`);
  }
  const senderLevel = getUserPowerLevel(rv, authState, sender);
  const levels = getPowerLevelsContent(rv, authState);

  // "If type is m.room.third_party_invite: allow if and only if sender's current power level is greater
  // than or equal to the invite level."
  if (pdu.type === 'm.room.third_party_invite') {
    return senderLevel >= levels.invite
      ? ALLOW
      : reject(
          'third_party_invite.power',
          `${cite(rv, 'thirdPartyInvite', 1)}: sender power ${senderLevel} is below the invite level ${levels.invite}`,
        );
  }

  // "If the event type's required power level is greater than the sender's power level, reject."
  const isState = typeof pdu.state_key === 'string';
  const required = getRequiredPowerLevel(rv, authState, pdu.type, isState);
  if (required > senderLevel) {
    return reject(
      'power.required_level',
      `${cite(rv, 'required')}: ${pdu.type} needs power ${required}, the sender has ${senderLevel}`,
    );
  }

  // "If the event has a state_key that starts with an @ and does not match the sender, reject."
  if (isState && pdu.state_key!.startsWith('@') && pdu.state_key !== sender) {
    return reject('state_key.other_user', `${cite(rv, 'stateKey')}: state_key ${pdu.state_key} belongs to another user`);
  }

  if (pdu.type === 'm.room.power_levels') return checkPowerLevels(rv, pdu, content, authState, create);

  // v1/v2 rule 11: m.room.redaction. From v3 the auth rules no longer look at the redact level or the
  // domains: rooms v3+ "Handling redactions" decides whether a redaction is *applied*, when both events
  // are known — see `canRedact` in power-levels.ts for the homeserver side. (No room-version flag names
  // this yet: it is the versions with v1-format event ids, i.e. those using v1-auth-rules.)
  if (pdu.type === 'm.room.redaction' && rv.eventIdFormat === 'v1') {
    if (senderLevel >= levels.redact) return ALLOW;
    const redacts = typeof pdu.redacts === 'string' ? pdu.redacts : undefined;
    if (redacts !== undefined && domainOf(redacts) !== undefined && domainOf(redacts) === domainOf(event.eventId)) {
      return ALLOW;
    }
    return reject(
      'redaction.power',
      `${cite(rv, 'redaction', 3)}: below the redact level ${levels.redact} and the redacted event is from another domain`,
    );
  }

  return ALLOW;
}

/**
 * `checkAuthEventsSelection` and then `checkEventAuth` against the auth events: the check "Passes
 * authorisation rules based on the event's auth events" on receipt of a PDU. In v12 the create event is
 * not among the auth events: pass it as `createEvent` (the event named by the room id).
 */
export function checkEventAuthWithAuthEvents(
  rv: RoomVersion,
  event: IdentifiedPdu,
  authEvents: readonly IdentifiedPdu[],
  options: AuthOptions & AuthEventsSelectionOptions & { createEvent?: IdentifiedPdu } = {},
): AuthResult {
  if (event.pdu.type === 'm.room.create') return checkEventAuth(rv, event, new Map(), options);
  const state = authEventsToStateMap(authEvents);
  if (rv.roomIdFromCreateEvent) {
    if (options.createEvent !== undefined) state.set(CREATE_KEY, options.createEvent);
    // v12 orders the room id rule (2) before the auth_events rule (3).
    const roomId = checkRoomIdNamesCreate(rv, event.pdu, state.get(CREATE_KEY));
    if (!roomId.allowed) return roomId;
  }
  const sel = checkAuthEventsSelection(rv, event, authEvents, options);
  if (!sel.allowed) return sel;
  return checkEventAuth(rv, event, state, options);
}

/**
 * v12 rule 2: "If the event's room_id is not an event ID for an accepted (not rejected) m.room.create
 * event, with the sigil ! instead of $, reject." Whether the create event was accepted is the caller's
 * knowledge: it must not hand over a rejected create event.
 */
function checkRoomIdNamesCreate(rv: RoomVersion, pdu: Pdu, create: IdentifiedPdu | undefined): AuthResult {
  if (create === undefined) {
    return reject('room_id.no_create', `${cite(rv, 'roomId')}: no m.room.create event for room ${String(pdu.room_id)}`);
  }
  if (typeof pdu.room_id !== 'string' || pdu.room_id !== roomIdFromCreateEventId(create.eventId)) {
    return reject(
      'room_id.not_create_event',
      `${cite(rv, 'roomId')}: room id ${String(pdu.room_id)} is not the create event ${create.eventId} with sigil !`,
    );
  }
  return ALLOW;
}

// ---------------------------------------------------------------------------------------------------
// Rule 1: m.room.create.

function checkCreate(rv: RoomVersion, pdu: Pdu, content: JsonObject): AuthResult {
  // 1.1 "If it has any prev_events, reject."
  if (!Array.isArray(pdu.prev_events) || pdu.prev_events.length > 0) {
    return reject('create.prev_events', `${cite(rv, 'create', 1)}: m.room.create has prev_events`);
  }
  if (rv.roomIdFromCreateEvent) {
    // v12 1.2 "If the event has a room_id, reject." (The room id is derived from the event id.)
    if (pdu.room_id !== undefined) {
      return reject('create.room_id', `${cite(rv, 'create', 2)}: m.room.create has a room_id`);
    }
  } else {
    // 1.2 "If the domain of the room_id does not match the domain of the sender, reject."
    const roomDomain = domainOf(pdu.room_id);
    if (roomDomain === undefined || roomDomain !== domainOf(pdu.sender)) {
      return reject('create.room_id_domain', `${cite(rv, 'create', 2)}: the room id's domain is not the sender's`);
    }
  }
  // 1.3 "If content.room_version is present and is not a recognised version, reject."
  if (Object.hasOwn(content, 'room_version')) {
    const v = content['room_version'];
    if (typeof v !== 'string' || getRoomVersion(v) === undefined) {
      return reject('create.room_version', `${cite(rv, 'create', 3)}: unknown room_version ${JSON.stringify(v)}`);
    }
  }
  // v1–v10 1.4 "If content has no creator property, reject." (v11 removed the property and the rule.)
  if (!rv.implicitRoomCreator && !Object.hasOwn(content, 'creator')) {
    return reject('create.no_creator', `${cite(rv, 'create', 4)}: m.room.create has no creator`);
  }
  // v12 1.4 "If additional_creators is present in content and is not an array of strings where each
  // string passes the same user ID validation applied to sender, reject."
  if (rv.privilegedCreators && Object.hasOwn(content, 'additional_creators')) {
    const extra = content['additional_creators'];
    if (!Array.isArray(extra) || !extra.every((u) => isValidUserId(u))) {
      return reject(
        'create.additional_creators',
        `${cite(rv, 'create', 4)}: additional_creators is not an array of valid user ids`,
      );
    }
  }
  return ALLOW;
}

// ---------------------------------------------------------------------------------------------------
// Rule "If type is m.room.member".

function checkMember(
  rv: RoomVersion,
  event: IdentifiedPdu,
  content: JsonObject,
  state: StateMap<IdentifiedPdu>,
  create: IdentifiedPdu,
  options: AuthOptions,
): AuthResult {
  const pdu = event.pdu;
  const m = 'member' as const;
  // 1. "If there is no state_key property, or no membership property in content, reject."
  if (typeof pdu.state_key !== 'string' || !Object.hasOwn(content, 'membership')) {
    return reject('member.malformed', `${cite(rv, m, 1)}: m.room.member without a state_key or membership`);
  }
  const target = pdu.state_key;
  const sender = pdu.sender;
  const membership = content['membership'];

  // v8+ 2. "If content has a join_authorised_via_users_server property: if the event is not validly
  // signed by the homeserver of the user ID denoted by the key, reject."
  if (rv.restrictedJoin && Object.hasOwn(content, 'join_authorised_via_users_server')) {
    const via = content['join_authorised_via_users_server'];
    const server = typeof via === 'string' ? serverNameOf(via) : undefined;
    if (server === undefined) {
      return reject(
        'member.join_authorised_via.invalid',
        `${cite(rv, m, 2)}: join_authorised_via_users_server is not a user id`,
      );
    }
    if (options.isSignedBy !== undefined && !options.isSignedBy(event, server)) {
      return reject(
        'member.join_authorised_via.signature',
        `${cite(rv, m, 2, 1)}: the event is not signed by ${server}, the server of join_authorised_via_users_server`,
      );
    }
  }

  const senderMembership = membershipOf(state, sender);
  const targetMembership = membershipOf(state, target);
  const joinRule = joinRuleOf(state);

  if (membership === 'join') {
    const s = memberSub(rv, 'join');
    // 1. "If the only previous event is an m.room.create and the state_key is the creator, allow."
    // (v11+: "the sender of the m.room.create"; v12 too — additional creators join like anyone else.)
    const prev = Array.isArray(pdu.prev_events) ? refIds(pdu.prev_events) : [];
    const creator = rv.implicitRoomCreator ? create.pdu.sender : getRoomCreators(rv, create)[0];
    if (prev.length === 1 && prev[0] === create.eventId && target === creator) return ALLOW;
    // 2. "If the sender does not match state_key, reject."
    if (sender !== target) {
      return reject('member.join.other_user', `${cite(rv, m, s, 2)}: ${sender} cannot join on behalf of ${target}`);
    }
    // 3. "If the sender is banned, reject."
    if (senderMembership === 'ban') return reject('member.join.banned', `${cite(rv, m, s, 3)}: ${sender} is banned`);
    // 4. "If the join_rule is invite (v7+: or knock) then allow if membership state is invite or join."
    if (joinRule === 'invite' || (rv.knock && joinRule === 'knock')) {
      return senderMembership === 'invite' || senderMembership === 'join'
        ? ALLOW
        : reject('member.join.not_invited', `${cite(rv, m, s, 4)}: the join rule is ${joinRule} and ${sender} is not invited`);
    }
    // v8+ 5. "If the join_rule is restricted (v10+: or knock_restricted): 1. if membership state is join or
    // invite, allow. 2. If the join_authorised_via_users_server key in content is not a user with
    // sufficient permission to invite other users or is not a joined member of the room, reject.
    // 3. Otherwise, allow."
    if ((rv.restrictedJoin && joinRule === 'restricted') || (rv.knockRestricted && joinRule === 'knock_restricted')) {
      if (senderMembership === 'join' || senderMembership === 'invite') return ALLOW;
      const via = content['join_authorised_via_users_server'];
      if (typeof via !== 'string') {
        return reject(
          'member.join.restricted.no_authoriser',
          `${cite(rv, m, s, 5, 2)}: join rule ${joinRule} and no join_authorised_via_users_server`,
        );
      }
      if (membershipOf(state, via) !== 'join') {
        return reject('member.join.restricted.authoriser_not_joined', `${cite(rv, m, s, 5, 2)}: ${via} is not joined`);
      }
      const viaLevel = getUserPowerLevel(rv, state, via);
      const inviteLevel = getPowerLevelsContent(rv, state).invite;
      if (viaLevel < inviteLevel) {
        return reject(
          'member.join.restricted.authoriser_power',
          `${cite(rv, m, s, 5, 2)}: ${via} has power ${viaLevel}, below the invite level ${inviteLevel}`,
        );
      }
      return ALLOW;
    }
    // "If the join_rule is public, allow." "Otherwise, reject."
    if (joinRule === 'public') return ALLOW;
    return reject(
      'member.join.join_rule',
      `${cite(rv, m, s, rv.restrictedJoin ? 7 : 6)}: join rule ${joinRule ?? '(none)'} does not let ${sender} join`,
    );
  }

  if (membership === 'invite') {
    const s = memberSub(rv, 'invite');
    // 1. "If content has a third_party_invite property: …"
    if (Object.hasOwn(content, 'third_party_invite')) return checkThirdPartyInvite(rv, pdu, content, state, s, options);
    // 2. "If the sender's current membership state is not join, reject."
    if (senderMembership !== 'join') {
      return reject('member.invite.sender_not_joined', `${cite(rv, m, s, 2)}: ${sender} is not joined`);
    }
    // 3. "If target user's current membership state is join or ban, reject."
    if (targetMembership === 'join' || targetMembership === 'ban') {
      return reject('member.invite.target_' + targetMembership, `${cite(rv, m, s, 3)}: ${target} is ${targetMembership === 'join' ? 'joined' : 'banned'}`);
    }
    // 4. "If the sender's power level is greater than or equal to the invite level, allow." 5. reject.
    const level = getUserPowerLevel(rv, state, sender);
    const invite = getPowerLevelsContent(rv, state).invite;
    return level >= invite
      ? ALLOW
      : reject('member.invite.power', `${cite(rv, m, s, 5)}: power ${level} is below the invite level ${invite}`);
  }

  if (membership === 'leave') {
    const s = memberSub(rv, 'leave');
    // 1. "If the sender matches state_key, allow if and only if that user's current membership state is
    // invite or join" (v7+: "invite, join, or knock").
    if (sender === target) {
      const ok =
        senderMembership === 'invite' || senderMembership === 'join' || (rv.knock && senderMembership === 'knock');
      return ok
        ? ALLOW
        : reject('member.leave.self', `${cite(rv, m, s, 1)}: cannot leave with membership ${senderMembership ?? '(none)'}`);
    }
    // 2. "If the sender's current membership state is not join, reject."
    if (senderMembership !== 'join') {
      return reject('member.leave.sender_not_joined', `${cite(rv, m, s, 2)}: ${sender} is not joined`);
    }
    const levels = getPowerLevelsContent(rv, state);
    const senderLevel = getUserPowerLevel(rv, state, sender);
    const targetLevel = getUserPowerLevel(rv, state, target);
    // 3. "If the target user's current membership state is ban, and the sender's power level is less
    // than the ban level, reject."
    if (targetMembership === 'ban' && senderLevel < levels.ban) {
      return reject('member.leave.unban_power', `${cite(rv, m, s, 3)}: power ${senderLevel} is below the ban level ${levels.ban}`);
    }
    // 4. "If the sender's power level is greater than or equal to the kick level, and the target user's
    // power level is less than the sender's power level, allow." 5. "Otherwise, reject."
    if (senderLevel >= levels.kick && targetLevel < senderLevel) return ALLOW;
    return reject(
      'member.leave.kick_power',
      `${cite(rv, m, s, 5)}: power ${senderLevel} (kick level ${levels.kick}) does not exceed ${target}'s ${targetLevel}`,
    );
  }

  if (membership === 'ban') {
    const s = memberSub(rv, 'ban');
    // 1. "If the sender's current membership state is not join, reject."
    if (senderMembership !== 'join') {
      return reject('member.ban.sender_not_joined', `${cite(rv, m, s, 1)}: ${sender} is not joined`);
    }
    // 2. "If the sender's power level is greater than or equal to the ban level, and the target user's
    // power level is less than the sender's power level, allow." 3. "Otherwise, reject."
    const ban = getPowerLevelsContent(rv, state).ban;
    const senderLevel = getUserPowerLevel(rv, state, sender);
    const targetLevel = getUserPowerLevel(rv, state, target);
    if (senderLevel >= ban && targetLevel < senderLevel) return ALLOW;
    return reject(
      'member.ban.power',
      `${cite(rv, m, s, 3)}: power ${senderLevel} (ban level ${ban}) does not exceed ${target}'s ${targetLevel}`,
    );
  }

  if (membership === 'knock' && rv.knock) {
    const s = memberSub(rv, 'knock');
    // 1. "If the join_rule is anything other than knock (v10+: or knock_restricted), reject."
    if (!(joinRule === 'knock' || (rv.knockRestricted && joinRule === 'knock_restricted'))) {
      return reject('member.knock.join_rule', `${cite(rv, m, s, 1)}: join rule ${joinRule ?? '(none)'} does not allow knocking`);
    }
    // 2. "If sender does not match state_key, reject."
    if (sender !== target) {
      return reject('member.knock.other_user', `${cite(rv, m, s, 2)}: ${sender} cannot knock on behalf of ${target}`);
    }
    // 3. "If the sender's current membership is not ban, invite, or join, allow." 4. "Otherwise, reject."
    if (senderMembership !== 'ban' && senderMembership !== 'invite' && senderMembership !== 'join') return ALLOW;
    return reject('member.knock.membership', `${cite(rv, m, s, 4)}: cannot knock with membership ${senderMembership}`);
  }

  // "Otherwise, the membership is unknown. Reject." (`knock` before v7 is unknown.)
  return reject('member.unknown_membership', `${cite(rv, m, memberSub(rv, 'unknown'))}: unknown membership ${JSON.stringify(membership)}`);
}

/** Rule "membership is invite", 1: the invite carries `third_party_invite`. */
function checkThirdPartyInvite(
  rv: RoomVersion,
  pdu: Pdu,
  content: JsonObject,
  state: StateMap<IdentifiedPdu>,
  s: number,
  options: AuthOptions,
): AuthResult {
  const m = 'member' as const;
  const target = pdu.state_key!;
  // 1.1 "If target user is banned, reject."
  if (membershipOf(state, target) === 'ban') {
    return reject('member.invite.third_party.target_banned', `${cite(rv, m, s, 1, 1)}: ${target} is banned`);
  }
  // 1.2 "If content.third_party_invite does not have a signed property, reject."
  const tpi = content['third_party_invite'];
  const signed = isJsonObject(tpi) ? tpi['signed'] : undefined;
  if (!isJsonObject(signed)) {
    return reject('member.invite.third_party.no_signed', `${cite(rv, m, s, 1, 2)}: third_party_invite has no signed object`);
  }
  // 1.3 "If signed does not have mxid and token properties, reject."
  const mxid = signed['mxid'];
  const token = signed['token'];
  if (typeof mxid !== 'string' || typeof token !== 'string') {
    return reject('member.invite.third_party.no_mxid_token', `${cite(rv, m, s, 1, 3)}: signed lacks mxid or token`);
  }
  // 1.4 "If mxid does not match state_key, reject."
  if (mxid !== target) {
    return reject('member.invite.third_party.mxid', `${cite(rv, m, s, 1, 4)}: signed.mxid ${mxid} is not ${target}`);
  }
  // 1.5 "If there is no m.room.third_party_invite event in the current room state with state_key
  // matching token, reject."
  const invite = state.get(stateKey('m.room.third_party_invite', token));
  if (invite === undefined) {
    return reject('member.invite.third_party.no_invite', `${cite(rv, m, s, 1, 5)}: no m.room.third_party_invite for the token`);
  }
  // 1.6 "If sender does not match sender of the m.room.third_party_invite, reject."
  if (invite.pdu.sender !== pdu.sender) {
    return reject(
      'member.invite.third_party.sender',
      `${cite(rv, m, s, 1, 6)}: ${pdu.sender} did not send the m.room.third_party_invite`,
    );
  }
  // 1.7 "If any signature in signed matches any public key in the m.room.third_party_invite event,
  // allow. The public keys are in content … as: a single public key in the public_key property; a list
  // of public keys in the public_keys property." 1.8 "Otherwise, reject."
  const keys: string[] = [];
  const ic = isJsonObject(invite.pdu.content) ? invite.pdu.content : {};
  if (typeof ic['public_key'] === 'string') keys.push(ic['public_key']);
  const list = ic['public_keys'];
  if (Array.isArray(list)) {
    for (const k of list) if (isJsonObject(k) && typeof k['public_key'] === 'string') keys.push(k['public_key']);
  }
  // The public keys travel in the room state, so the check needs no network: by default it is an
  // Ed25519 verification of `signed` (appendices "Signing JSON") against each key.
  const verify = options.verifySignature ?? verifyThirdPartySigned;
  if (keys.some((k) => verify(signed, k))) return ALLOW;
  return reject(
    'member.invite.third_party.signature',
    `${cite(rv, m, s, 1, 8)}: no signature in signed matches a public key of the m.room.third_party_invite`,
  );
}

// ---------------------------------------------------------------------------------------------------
// Rule "If type is m.room.power_levels".

function checkPowerLevels(
  rv: RoomVersion,
  pdu: Pdu,
  content: JsonObject,
  state: StateMap<IdentifiedPdu>,
  create: IdentifiedPdu,
): AuthResult {
  const p = 'powerLevels' as const;
  const maps = rv.limitNotificationsPowerLevels ? (['events', 'notifications'] as const) : (['events'] as const);

  if (rv.integerPowerLevels) {
    // v10+ 1. "If any of the properties users_default, events_default, state_default, ban, redact,
    // kick, or invite in content are present and not an integer, reject."
    for (const k of SCALAR_POWER_LEVEL_KEYS) {
      if (Object.hasOwn(content, k) && parsePowerLevelValue(rv, content[k]) === undefined) {
        return reject('power_levels.not_integer', `${cite(rv, p, 1)}: ${k} is not an integer`);
      }
    }
    // v10+ 2. "If either of the properties events or notifications in content are present and not an
    // object with values that are integers, reject."
    for (const k of ['events', 'notifications'] as const) {
      if (Object.hasOwn(content, k) && !isLevelMap(rv, content[k])) {
        return reject('power_levels.not_integer', `${cite(rv, p, 2)}: ${k} is not an object of integers`);
      }
    }
  }
  // "If the users property in content is not an object with keys that are valid user IDs with values
  // that are integers (v1–v9: or a string that is an integer), reject."
  if (Object.hasOwn(content, 'users')) {
    const users = content['users'];
    if (!isLevelMap(rv, users) || !Object.keys(users).every((u) => isValidUserId(u))) {
      return reject('power_levels.users', `${cite(rv, p, plSub(rv, 1))}: users is not an object of user ids to integers`);
    }
  }
  if (!rv.integerPowerLevels) {
    // v1–v9 state no format rule for the other properties, but the stringy (and, v1–v5, floaty) power
    // level fragments define the only forms an integer-valued property may take; a value outside them
    // cannot be compared, so such an event is rejected rather than read as a default.
    for (const k of SCALAR_POWER_LEVEL_KEYS) {
      if (Object.hasOwn(content, k) && parsePowerLevelValue(rv, content[k]) === undefined) {
        return reject('power_levels.invalid_value', `v${rv.id} power levels: ${k} is not an integer`);
      }
    }
    for (const k of maps) {
      if (Object.hasOwn(content, k) && !isLevelMap(rv, content[k])) {
        return reject('power_levels.invalid_value', `v${rv.id} power levels: ${k} is not an object of integers`);
      }
    }
  }
  // v12 4. "If the users property in content contains the sender of the m.room.create event or any of
  // the additional_creators array (if present) from the content of the m.room.create event, reject."
  if (rv.privilegedCreators && isJsonObject(content['users'])) {
    const users = content['users'];
    for (const c of getRoomCreators(rv, create)) {
      if (Object.hasOwn(users, c)) {
        return reject('power_levels.creator_in_users', `${cite(rv, p, 4)}: room creator ${c} is listed in users`);
      }
    }
  }

  // "If there is no previous m.room.power_levels event in the room, allow."
  const previous = state.get(POWER_LEVELS_KEY);
  if (previous === undefined) return ALLOW;
  const prev = contentOf(previous.pdu);
  const senderLevel = getUserPowerLevel(rv, state, pdu.sender);
  const level = (v: JsonValue | undefined): number | undefined => (v === undefined ? undefined : parsePowerLevelValue(rv, v));

  // "For the properties users_default, events_default, state_default, ban, redact, kick, invite check if
  // they were added, changed or removed. For each found alteration: 1. If the current value is higher
  // than the sender's current power level, reject. 2. If the new value is higher …, reject."
  for (const k of SCALAR_POWER_LEVEL_KEYS) {
    const before = level(prev[k]);
    const after = level(content[k]);
    if (before === after) continue;
    if (before !== undefined && before > senderLevel) {
      return reject('power_levels.change_above_own', `${cite(rv, p, plSub(rv, 3), 1)}: ${k} is ${before}, above the sender's ${senderLevel}`);
    }
    if (after !== undefined && after > senderLevel) {
      return reject('power_levels.raise_above_own', `${cite(rv, p, plSub(rv, 3), 2)}: ${k} would be ${after}, above the sender's ${senderLevel}`);
    }
  }

  // "For each entry being changed in, or removed from, the events (v6+: or notifications) properties:
  // if the current value is greater than the sender's current power level, reject."
  // "For each entry being added to, or changed in, the events (v6+: or notifications) properties: if the
  // new value is greater than the sender's current power level, reject."
  for (const map of maps) {
    const before = levelMap(rv, prev[map]);
    const after = levelMap(rv, content[map]);
    for (const [k, b] of before) {
      const a = after.get(k);
      if (a !== b && b > senderLevel) {
        return reject('power_levels.change_above_own', `${cite(rv, p, plSub(rv, 4), 1)}: ${map}.${k} is ${b}, above the sender's ${senderLevel}`);
      }
    }
    for (const [k, a] of after) {
      if (before.get(k) !== a && a > senderLevel) {
        return reject('power_levels.raise_above_own', `${cite(rv, p, plSub(rv, 5), 1)}: ${map}.${k} would be ${a}, above the sender's ${senderLevel}`);
      }
    }
  }

  // "For each entry being changed in, or removed from, the users property, other than the sender's own
  // entry: if the current value is greater than or equal to the sender's current power level, reject."
  // "For each entry being added to, or changed in, the users property: if the new value is greater than
  // the sender's current power level, reject."
  const usersBefore = levelMap(rv, prev['users']);
  const usersAfter = levelMap(rv, content['users']);
  for (const [u, b] of usersBefore) {
    if (u === pdu.sender) continue;
    if (usersAfter.get(u) !== b && b >= senderLevel) {
      return reject('power_levels.user_at_or_above_own', `${cite(rv, p, plSub(rv, 6), 1)}: ${u} has ${b}, not below the sender's ${senderLevel}`);
    }
  }
  for (const [u, a] of usersAfter) {
    if (usersBefore.get(u) !== a && a > senderLevel) {
      return reject('power_levels.raise_above_own', `${cite(rv, p, plSub(rv, 7), 1)}: ${u} would get ${a}, above the sender's ${senderLevel}`);
    }
  }
  // "Otherwise, allow."
  return ALLOW;
}

function isLevelMap(rv: RoomVersion, v: JsonValue | undefined): v is JsonObject {
  return isJsonObject(v) && Object.values(v).every((x) => parsePowerLevelValue(rv, x) !== undefined);
}

/** The valid entries of a level map (an absent or malformed map is empty). */
function levelMap(rv: RoomVersion, v: JsonValue | undefined): Map<string, number> {
  const out = new Map<string, number>();
  if (!isJsonObject(v)) return out;
  for (const [k, raw] of Object.entries(v)) {
    const n = parsePowerLevelValue(rv, raw);
    if (n !== undefined) out.set(k, n);
  }
  return out;
}

/**
 * Default verifier for rule "If any signature in signed matches any public key in the
 * m.room.third_party_invite event": does any ed25519 signature of any signing entity in `signed`
 * verify with `publicKey` (unpadded base64, standard or URL-safe)?
 */
export function verifyThirdPartySigned(signed: JsonObject, publicKey: string): boolean {
  let key: Uint8Array;
  try {
    key = decodeBase64(publicKey.replace(/-/g, '+').replace(/_/g, '/'));
  } catch {
    return false;
  }
  if (key.length !== 32) return false;
  const sigs = signed['signatures'];
  if (!isJsonObject(sigs)) return false;
  for (const [entity, byKey] of Object.entries(sigs)) {
    if (!isJsonObject(byKey)) continue;
    for (const keyId of Object.keys(byKey)) {
      if (!keyId.startsWith('ed25519:')) continue;
      if (verifyJsonSignature(signed, entity, keyId, key)) return true;
    }
  }
  return false;
}
