// The room-version table: every property of a version that an algorithm branches on.
// Source: ../shared/matrix-spec/content/rooms/v1.md … v12.md and rooms/_index.md.
// Room versions are opaque strings; nothing here parses them as numbers.

export type EventIdFormat = 'v1' | 'v3' | 'v4';
export type StateResAlgorithm = 'v1' | 'v2' | 'v2.1';
export type RedactionRulesVariant = 'v1' | 'v6' | 'v8' | 'v9' | 'v11';

export interface RoomVersion {
  readonly id: string;
  readonly stable: boolean;
  /** v1/v2: `$local:server`; v3: standard base64 reference hash; v4+: URL-safe base64. */
  readonly eventIdFormat: EventIdFormat;
  /** 'v1' for room version 1, 'v2' for 2–11, 'v2.1' (MSC4297, empty start map + conflicted subgraph) for 12. */
  readonly stateRes: StateResAlgorithm;
  /** v5+: signing keys must be valid at origin_server_ts. */
  readonly enforceKeyValidity: boolean;
  /** v1–v5: the auth rule special-casing m.room.aliases (rule 4) exists; removed in v6. */
  readonly specialCaseAliasesAuth: boolean;
  /** v6+: events MUST be valid canonical JSON (integers in range, no floats); v1–v5 may hold floats/big ints. */
  readonly strictCanonicalJson: boolean;
  /** v6+: power-level changes are also checked against the `notifications` property. */
  readonly limitNotificationsPowerLevels: boolean;
  /** v7+: the `knock` membership and join rule. */
  readonly knock: boolean;
  /** v8+: the `restricted` join rule and `join_authorised_via_users_server`. */
  readonly restrictedJoin: boolean;
  /** v10+: the `knock_restricted` join rule. */
  readonly knockRestricted: boolean;
  /** v10+: power-level values must be integers (not strings). */
  readonly integerPowerLevels: boolean;
  /** v11+: `creator` removed from m.room.create, sender is the creator; redaction changes of MSC2176/MSC3821/MSC3989. */
  readonly implicitRoomCreator: boolean;
  /** v12: room id is `!` + URL-safe base64 reference hash of the create event, no domain; create event has no room_id. */
  readonly roomIdFromCreateEvent: boolean;
  /** v12: creators (sender + additional_creators) have infinite power, are not listed in power levels. */
  readonly privilegedCreators: boolean;
  /**
   * Redaction rules variant (see spec/redaction.ts): 'v1' rooms 1–5 (original rules, m.room.aliases
   * keeps `aliases`); 'v6' rooms 6–7 (aliases special case removed); 'v8' room 8 (join_rules keeps
   * `allow`); 'v9' rooms 9–10 (member keeps `join_authorised_via_users_server`); 'v11' rooms 11–12
   * (MSC2176/MSC3821/MSC3989: top-level origin/membership/prev_state dropped, create keeps all content,
   * power_levels keeps `invite`, redaction keeps content `redacts`, member keeps third_party_invite.signed).
   */
  readonly redaction: RedactionRulesVariant;
  /** v11+: m.room.redaction carries `redacts` in `content` instead of at the top level (rooms/v11.md). */
  readonly redactsInContent: boolean;
  /** v1/v2 events carry a `event_id` field inside the event; v3+ do not. */
  readonly eventIdInEvent: boolean;
}

function v(id: string, p: Partial<RoomVersion>): RoomVersion {
  const base: RoomVersion = {
    id,
    stable: true,
    eventIdFormat: 'v4',
    stateRes: 'v2',
    enforceKeyValidity: true,
    specialCaseAliasesAuth: false,
    strictCanonicalJson: true,
    limitNotificationsPowerLevels: true,
    knock: true,
    restrictedJoin: true,
    knockRestricted: true,
    integerPowerLevels: true,
    implicitRoomCreator: true,
    roomIdFromCreateEvent: false,
    privilegedCreators: false,
    redaction: 'v11',
    redactsInContent: true,
    eventIdInEvent: false,
  };
  return Object.freeze({ ...base, ...p });
}

const legacy = {
  specialCaseAliasesAuth: true,
  strictCanonicalJson: false,
  limitNotificationsPowerLevels: false,
  knock: false,
  restrictedJoin: false,
  knockRestricted: false,
  integerPowerLevels: false,
  implicitRoomCreator: false,
  redaction: 'v1' as const,
  redactsInContent: false,
};

/** What room version 6 changed (rooms/v6.md): aliases auth and redaction special cases gone, strict canonical JSON, `notifications` power levels. */
const v6 = {
  specialCaseAliasesAuth: false,
  strictCanonicalJson: true,
  limitNotificationsPowerLevels: true,
  redaction: 'v6' as const,
};

export const ROOM_VERSIONS: ReadonlyMap<string, RoomVersion> = new Map(
  [
    v('1', { ...legacy, eventIdFormat: 'v1', stateRes: 'v1', enforceKeyValidity: false, eventIdInEvent: true }),
    v('2', { ...legacy, eventIdFormat: 'v1', enforceKeyValidity: false, eventIdInEvent: true }),
    v('3', { ...legacy, eventIdFormat: 'v3', enforceKeyValidity: false }),
    v('4', { ...legacy, enforceKeyValidity: false }),
    v('5', { ...legacy }),
    v('6', { ...legacy, ...v6 }),
    v('7', { ...legacy, ...v6, knock: true }),
    v('8', { ...legacy, ...v6, knock: true, restrictedJoin: true, redaction: 'v8' }),
    v('9', { ...legacy, ...v6, knock: true, restrictedJoin: true, redaction: 'v9' }),
    v('10', { implicitRoomCreator: false, redaction: 'v9', redactsInContent: false }),
    v('11', {}),
    v('12', { stateRes: 'v2.1', roomIdFromCreateEvent: true, privilegedCreators: true }),
  ].map((rv) => [rv.id, rv]),
);

/** Servers SHOULD use room version 12 as the default (rooms/_index.md). */
export const DEFAULT_ROOM_VERSION = '12';

export function getRoomVersion(id: string): RoomVersion | undefined {
  return ROOM_VERSIONS.get(id);
}

/** Room version grammar: 1–32 chars of a-z 0-9 . - (rooms/_index.md "Room version grammar"). */
export function isValidRoomVersionString(id: unknown): id is string {
  return typeof id === 'string' && id.length >= 1 && id.length <= 32 && /^[a-z0-9.-]+$/.test(id);
}
