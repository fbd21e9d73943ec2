// server-server-api.md "Auth events selection": which (type, state_key) pairs of the room state an
// event's `auth_events` hold.

import type { IdentifiedPdu, JsonValue, StateMap } from './events.ts';
import { stateKey } from './events.ts';
import type { RoomVersion } from './room-versions.ts';

/** The fields of an event the selection reads (an event being built qualifies as well as a PDU). */
export interface AuthSelectionInput {
  type: string;
  sender: string;
  state_key?: string;
  content: { [key: string]: JsonValue };
}

function objectOrUndefined(v: unknown): { [key: string]: JsonValue } | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as { [key: string]: JsonValue }) : undefined;
}

/**
 * The (type, state_key) pairs that make up an event's auth events, in the spec's order, without
 * duplicates:
 * - m.room.create has none;
 * - the m.room.create event "depending on the room version": every version but 12, where the room id
 *   names it instead (rooms/v12.md: "The m.room.create event MUST NOT be selected");
 * - m.room.power_levels; the sender's m.room.member;
 * - for m.room.member: the target's m.room.member; m.room.join_rules when `membership` is join, invite or
 *   knock; for an invite with `third_party_invite`, the m.room.third_party_invite whose state_key is
 *   `content.third_party_invite.signed.token`; for a join with `join_authorised_via_users_server` in a
 *   version with restricted rooms (v8+), that user's m.room.member.
 */
export function authEventTypesFor(rv: RoomVersion, event: AuthSelectionInput): Array<[string, string]> {
  if (event.type === 'm.room.create') return [];
  const out: Array<[string, string]> = [];
  const seen = new Set<string>();
  const add = (type: string, sk: string): void => {
    const k = stateKey(type, sk);
    if (seen.has(k)) return;
    seen.add(k);
    out.push([type, sk]);
  };
  if (!rv.roomIdFromCreateEvent) add('m.room.create', '');
  add('m.room.power_levels', '');
  add('m.room.member', event.sender);
  if (event.type === 'm.room.member' && typeof event.state_key === 'string') {
    add('m.room.member', event.state_key);
    const membership = event.content['membership'];
    if (membership === 'join' || membership === 'invite' || membership === 'knock') add('m.room.join_rules', '');
    if (membership === 'invite') {
      const signed = objectOrUndefined(objectOrUndefined(event.content['third_party_invite'])?.['signed']);
      const token = signed?.['token'];
      if (typeof token === 'string') add('m.room.third_party_invite', token);
    }
    if (membership === 'join' && rv.restrictedJoin) {
      const via = event.content['join_authorised_via_users_server'];
      if (typeof via === 'string') add('m.room.member', via);
    }
  }
  return out;
}

/** The ids of the auth events for `event` taken from `state` (entries the state lacks are skipped). */
export function selectAuthEvents(
  rv: RoomVersion,
  event: AuthSelectionInput,
  state: StateMap<IdentifiedPdu>,
): string[] {
  const ids: string[] = [];
  for (const [type, sk] of authEventTypesFor(rv, event)) {
    const e = state.get(stateKey(type, sk));
    if (e !== undefined && !ids.includes(e.eventId)) ids.push(e.eventId);
  }
  return ids;
}
