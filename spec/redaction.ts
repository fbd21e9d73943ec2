// The redaction algorithm of every room version (client-server-api "Redactions" defers to the room
// versions: rooms/fragments/v1-redactions.md, v6-redactions.md, v8.md "Redactions",
// v9-redactions.md, v11-redactions.md). It decides what survives a redaction, and therefore what
// the reference hash (event ids) and the event signatures cover.
//
//   variant  rooms   change
//   v1       1–5     the original rules (m.room.aliases keeps `aliases`)
//   v6       6–7     m.room.aliases loses its special case
//   v8       8       m.room.join_rules keeps `allow`
//   v9       9–10    m.room.member keeps `join_authorised_via_users_server`
//   v11      11–12   top-level `origin`, `membership`, `prev_state` no longer kept; m.room.create keeps
//                    all content; m.room.power_levels keeps `invite`; m.room.redaction keeps
//                    content `redacts`; m.room.member keeps `third_party_invite.signed`
import type { Pdu } from './events.ts';
import type { RoomVersion } from './room-versions.ts';

export type RedactionRules = RoomVersion['redaction'];

const TOP_LEVEL_V1: readonly string[] = [
  'event_id', 'type', 'room_id', 'sender', 'state_key', 'content', 'hashes', 'signatures', 'depth',
  'prev_events', 'prev_state', 'auth_events', 'origin', 'origin_server_ts', 'membership',
];
const TOP_LEVEL_V11: readonly string[] = [
  'event_id', 'type', 'room_id', 'sender', 'state_key', 'content', 'hashes', 'signatures', 'depth',
  'prev_events', 'auth_events', 'origin_server_ts',
];

const POWER_LEVELS_V1 = ['ban', 'events', 'events_default', 'kick', 'redact', 'state_default', 'users', 'users_default'];
const POWER_LEVELS_V11 = [...POWER_LEVELS_V1, 'invite'];

/** Content keys kept per event type, per rules variant. `'*'` keeps the whole content. */
type ContentRules = Readonly<Record<string, readonly string[] | '*'>>;

const CONTENT_V1: ContentRules = {
  'm.room.member': ['membership'],
  'm.room.create': ['creator'],
  'm.room.join_rules': ['join_rule'],
  'm.room.power_levels': POWER_LEVELS_V1,
  'm.room.aliases': ['aliases'],
  'm.room.history_visibility': ['history_visibility'],
};
const CONTENT_V6: ContentRules = {
  'm.room.member': ['membership'],
  'm.room.create': ['creator'],
  'm.room.join_rules': ['join_rule'],
  'm.room.power_levels': POWER_LEVELS_V1,
  'm.room.history_visibility': ['history_visibility'],
};
const CONTENT_V8: ContentRules = { ...CONTENT_V6, 'm.room.join_rules': ['join_rule', 'allow'] };
const CONTENT_V9: ContentRules = { ...CONTENT_V8, 'm.room.member': ['membership', 'join_authorised_via_users_server'] };
const CONTENT_V11: ContentRules = {
  // m.room.member's `third_party_invite.signed` is handled separately (it keeps a nested key).
  'm.room.member': ['membership', 'join_authorised_via_users_server'],
  'm.room.create': '*',
  'm.room.join_rules': ['join_rule', 'allow'],
  'm.room.power_levels': POWER_LEVELS_V11,
  'm.room.history_visibility': ['history_visibility'],
  'm.room.redaction': ['redacts'],
};

interface Rules {
  topLevel: readonly string[];
  content: ContentRules;
  thirdPartyInviteSigned: boolean;
}

const RULES: Readonly<Record<RedactionRules, Rules>> = {
  v1: { topLevel: TOP_LEVEL_V1, content: CONTENT_V1, thirdPartyInviteSigned: false },
  v6: { topLevel: TOP_LEVEL_V1, content: CONTENT_V6, thirdPartyInviteSigned: false },
  v8: { topLevel: TOP_LEVEL_V1, content: CONTENT_V8, thirdPartyInviteSigned: false },
  v9: { topLevel: TOP_LEVEL_V1, content: CONTENT_V9, thirdPartyInviteSigned: false },
  v11: { topLevel: TOP_LEVEL_V11, content: CONTENT_V11, thirdPartyInviteSigned: true },
};

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function redactContent(type: unknown, content: unknown, rules: Rules): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (typeof type !== 'string' || !isObject(content) || !Object.hasOwn(rules.content, type)) return out;
  const keep = rules.content[type]!;
  if (keep === '*') return { ...content };
  for (const k of keep) {
    if (Object.hasOwn(content, k)) out[k] = content[k];
  }
  // v11: "Additionally, it allows the `signed` key of the `third_party_invite` key." Only `signed`
  // survives; when there is no `signed` there is nothing to keep, so `third_party_invite` goes too.
  if (rules.thirdPartyInviteSigned && type === 'm.room.member') {
    const tpi = content['third_party_invite'];
    if (isObject(tpi) && Object.hasOwn(tpi, 'signed')) out['third_party_invite'] = { signed: tpi['signed'] };
  }
  return out;
}

/**
 * The redacted form of `event` under the rules of room version `rv`. Returns a new object (the event
 * is never mutated); kept values below `content` are shared with the input, so treat the result as
 * immutable. `unsigned` is never kept (it is not in any version's list). A `content` that is not an object
 * becomes `{}`.
 */
export function redactEvent(event: Pdu, rv: RoomVersion): Pdu;
export function redactEvent(event: object, rv: RoomVersion): Record<string, unknown>;
export function redactEvent(event: object, rv: RoomVersion): Record<string, unknown> {
  const rules = RULES[rv.redaction];
  const src = event as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const k of rules.topLevel) {
    if (k === 'content') continue;
    if (Object.hasOwn(src, k)) out[k] = src[k];
  }
  // Spec: keys not in the list are stripped, and the content object is stripped of its keys. Nothing
  // is added: an event without `content` (malformed; every schema requires it) stays without one.
  if (Object.hasOwn(src, 'content')) out['content'] = redactContent(src['type'], src['content'], rules);
  return out;
}

/** The top-level keys a room version's redaction keeps (for callers that need to reason about them). */
export function redactionTopLevelKeys(rv: RoomVersion): readonly string[] {
  return RULES[rv.redaction].topLevel;
}
