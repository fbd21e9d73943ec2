// Push rules (client-server API, "Push Notifications" module, v1.19) as pure functions: the predefined
// rules, merging them with a user's own rules, evaluating a ruleset against an event, reading actions,
// and validating bodies of the push rules API. No I/O: the caller supplies the room facts in a
// PushContext (member count, sender power, notification levels, the user's display name).

import { globMatches, isWordChar } from './glob.ts';

export type PushRuleKind = 'override' | 'content' | 'room' | 'sender' | 'underride';

/** The kinds in the order they are checked ("The different kinds of rule, in the order that they are checked"). */
export const PUSH_RULE_KINDS: readonly PushRuleKind[] = ['override', 'content', 'room', 'sender', 'underride'];

/** Non-compound canonical JSON values: what event_property_is / event_property_contains compare. */
export type PushScalar = string | number | boolean | null;

/**
 * A condition of an override/underride rule. `kind` is open: conditions this server does not know are
 * kept (they round-trip through the API) but never match.
 */
export interface PushCondition {
  kind: string;
  /** event_match, event_property_is, event_property_contains: dotted event path; sender_notification_permission: notifications key. */
  key?: string;
  /** event_match: glob pattern. */
  pattern?: string;
  /** event_property_is, event_property_contains. */
  value?: PushScalar;
  /** room_member_count: `[==|<|>|<=|>=]N`. */
  is?: string;
  [param: string]: unknown;
}

export interface SetTweakAction {
  set_tweak: string;
  value?: unknown;
  [param: string]: unknown;
}

/** Parameterless actions are strings (`"notify"`); others are objects keyed by their name. */
export type PushAction = string | SetTweakAction;

export interface PushRule {
  rule_id: string;
  default: boolean;
  enabled: boolean;
  actions: PushAction[];
  conditions?: PushCondition[];
  pattern?: string;
}

export interface Ruleset {
  override: PushRule[];
  content: PushRule[];
  room: PushRule[];
  sender: PushRule[];
  underride: PushRule[];
}

/** A rule as the user stored it. For server-default rule ids (leading "."), only `enabled`/`actions` count. */
export interface UserPushRule {
  rule_id: string;
  default?: boolean;
  enabled?: boolean;
  actions?: PushAction[];
  conditions?: PushCondition[];
  pattern?: string;
}

export type UserRules = Partial<Record<PushRuleKind, readonly UserPushRule[]>>;

export interface PushContext {
  /** The user whose rules are evaluated. */
  userId: string;
  /** The user's display name in this room (for the deprecated contains_display_name condition). */
  displayName?: string | null;
  /** Current number of joined members of the room. */
  roomMemberCount: number;
  /** The sender's power level in the room. */
  senderPowerLevel: number;
  /** `content.notifications` of the room's m.room.power_levels; `room` defaults to 50. */
  notificationPowerLevels: Record<string, number>;
}

export interface PushEvaluation {
  rule: PushRule;
  /** The rule's actions with the historical `dont_notify`/`coalesce` stripped. */
  actions: PushAction[];
}

// ---------------------------------------------------------------------------------------------------
// Predefined rules

/**
 * The server-default rules exactly as v1.19 "Predefined Rules" lists them, in its order. v1.17 removed
 * the body-based mention rules (`.m.rule.contains_display_name`, `.m.rule.contains_user_name`,
 * `.m.rule.roomnotif`), so there are no default content rules any more.
 */
export function defaultRuleset(userId: string): Ruleset {
  const rule = (rule_id: string, conditions: PushCondition[], actions: PushAction[], enabled = true): PushRule => ({
    rule_id,
    default: true,
    enabled,
    conditions,
    actions,
  });
  const notifySound = (sound: string): PushAction[] => ['notify', { set_tweak: 'sound', value: sound }];
  const typeIs = (type: string): PushCondition => ({ kind: 'event_match', key: 'type', pattern: type });
  const emptyStateKey = (): PushCondition => ({ kind: 'event_match', key: 'state_key', pattern: '' });

  return {
    override: [
      // Matches all events; disabled by default; when enabled it silences everything.
      rule('.m.rule.master', [], [], false),
      rule('.m.rule.suppress_notices', [{ kind: 'event_match', key: 'content.msgtype', pattern: 'm.notice' }], []),
      rule(
        '.m.rule.invite_for_me',
        [
          typeIs('m.room.member'),
          { kind: 'event_match', key: 'content.membership', pattern: 'invite' },
          // The spec puts "[the user's Matrix ID]" in a glob pattern. Current user ids cannot contain
          // `*` or `?`; in a historical id they would act as wildcards, widening the match slightly.
          { kind: 'event_match', key: 'state_key', pattern: userId },
        ],
        notifySound('default'),
      ),
      rule('.m.rule.member_event', [typeIs('m.room.member')], []),
      rule(
        '.m.rule.is_user_mention',
        [{ kind: 'event_property_contains', key: 'content.m\\.mentions.user_ids', value: userId }],
        [...notifySound('default'), { set_tweak: 'highlight' }],
      ),
      rule(
        '.m.rule.is_room_mention',
        [
          { kind: 'event_property_is', key: 'content.m\\.mentions.room', value: true },
          { kind: 'sender_notification_permission', key: 'room' },
        ],
        ['notify', { set_tweak: 'highlight' }],
      ),
      // No implicit state_key condition exists, so state-only rules say `state_key == ""` themselves.
      rule('.m.rule.tombstone', [typeIs('m.room.tombstone'), emptyStateKey()], ['notify', { set_tweak: 'highlight' }]),
      rule('.m.rule.reaction', [typeIs('m.reaction')], []),
      rule('.m.rule.room.server_acl', [typeIs('m.room.server_acl'), emptyStateKey()], []),
      rule(
        '.m.rule.suppress_edits',
        [{ kind: 'event_property_is', key: 'content.m\\.relates_to.rel_type', value: 'm.replace' }],
        [],
      ),
    ],
    content: [],
    room: [],
    sender: [],
    underride: [
      rule('.m.rule.call', [typeIs('m.call.invite')], notifySound('ring')),
      rule(
        '.m.rule.encrypted_room_one_to_one',
        [{ kind: 'room_member_count', is: '2' }, typeIs('m.room.encrypted')],
        notifySound('default'),
      ),
      rule('.m.rule.room_one_to_one', [{ kind: 'room_member_count', is: '2' }, typeIs('m.room.message')], notifySound('default')),
      rule('.m.rule.message', [typeIs('m.room.message')], ['notify']),
      rule('.m.rule.encrypted', [typeIs('m.room.encrypted')], ['notify']),
    ],
  };
}

/** Server-default rule ids start with a dot ("Predefined Rules"). */
export function isServerDefaultRuleId(ruleId: string): boolean {
  return ruleId.startsWith('.');
}

function cloneJson<T>(value: T): T {
  return structuredClone(value);
}

/**
 * The effective ruleset in evaluation order. Per "Predefined Rules", server-default rules rank below
 * user-defined rules of the same kind, except `.m.rule.master`, which ranks above everything: so
 * override = [master, user overrides..., other default overrides...], and every other kind is
 * [user rules..., default rules...].
 *
 * Entries in `userRules` whose rule_id starts with "." are the user's changes to server-default rules
 * (only `enabled` and `actions` are taken); ones naming no current server-default rule of that kind
 * (e.g. `.m.rule.contains_display_name` saved before v1.17) are dropped. Historical actions are stripped.
 */
export function mergeWithDefaults(userRules: UserRules, userId: string): Ruleset {
  const defaults = defaultRuleset(userId);
  const out: Ruleset = { override: [], content: [], room: [], sender: [], underride: [] };
  for (const kind of PUSH_RULE_KINDS) {
    const own: PushRule[] = [];
    const changes = new Map<string, UserPushRule>();
    const seen = new Set<string>();
    for (const r of userRules[kind] ?? []) {
      if (!r || typeof r.rule_id !== 'string' || seen.has(r.rule_id)) continue;
      seen.add(r.rule_id);
      if (isServerDefaultRuleId(r.rule_id)) {
        changes.set(r.rule_id, r);
        continue;
      }
      const rule: PushRule = {
        rule_id: r.rule_id,
        default: false,
        enabled: typeof r.enabled === 'boolean' ? r.enabled : true,
        actions: stripHistoricalActions(Array.isArray(r.actions) ? cloneJson(r.actions) : []),
      };
      if (Array.isArray(r.conditions)) rule.conditions = cloneJson(r.conditions);
      if (typeof r.pattern === 'string') rule.pattern = r.pattern;
      own.push(rule);
    }
    const serverDefaults = defaults[kind].map((d) => {
      const change = changes.get(d.rule_id);
      if (change) {
        if (typeof change.enabled === 'boolean') d.enabled = change.enabled;
        if (Array.isArray(change.actions)) d.actions = stripHistoricalActions(cloneJson(change.actions));
      }
      return d;
    });
    if (kind === 'override') {
      const master = serverDefaults.filter((d) => d.rule_id === '.m.rule.master');
      const rest = serverDefaults.filter((d) => d.rule_id !== '.m.rule.master');
      out.override = [...master, ...own, ...rest];
    } else {
      out[kind] = [...own, ...serverDefaults];
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Event properties

/**
 * Splits a dot-separated property path (appendix "Dot-separated property paths"): `\.` is a literal
 * dot and `\\` a literal backslash inside a name; any other backslash is itself (`\x` → `\x`).
 */
export function parseDottedPath(key: string): string[] {
  // Push rules use a handful of keys on every evaluation: parse each once (callers never mutate).
  const hit = dottedPathCache.get(key);
  if (hit) return hit;
  const parts = parseDottedPathUncached(key);
  if (dottedPathCache.size >= 1024) dottedPathCache.clear();
  dottedPathCache.set(key, parts);
  return parts;
}

const dottedPathCache = new Map<string, string[]>();

function parseDottedPathUncached(key: string): string[] {
  const parts: string[] = [];
  let current = '';
  for (let i = 0; i < key.length; i++) {
    const c = key[i]!;
    if (c === '\\' && (key[i + 1] === '.' || key[i + 1] === '\\')) {
      current += key[i + 1];
      i++;
    } else if (c === '.') {
      parts.push(current);
      current = '';
    } else {
      current += c;
    }
  }
  parts.push(current);
  return parts;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The value at a dotted path, or `undefined` when any step is absent. Only objects are descended into. */
export function lookupEventProperty(event: object, key: string): unknown {
  let node: unknown = event;
  for (const name of parseDottedPath(key)) {
    if (!isPlainObject(node) || !Object.hasOwn(node, name)) return undefined;
    node = node[name];
  }
  return node;
}

const MAX_SAFE = 2 ** 53 - 1;

/** Strings, integers in [-(2**53)+1, (2**53)-1], booleans and null: the values the spec compares. */
export function isPushScalar(v: unknown): v is PushScalar {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return true;
  return typeof v === 'number' && Number.isInteger(v) && Math.abs(v) <= MAX_SAFE;
}

// ---------------------------------------------------------------------------------------------------
// Conditions

const MEMBER_COUNT = /^(==|<=|>=|<|>)?(-?[0-9]+)$/;

function bodyOf(event: object): string | undefined {
  const content = (event as { content?: unknown }).content;
  if (!isPlainObject(content)) return undefined;
  return typeof content.body === 'string' ? content.body : undefined;
}

/** Whether one condition holds for the event. Unknown kinds and malformed conditions never match. */
export function conditionMatches(cond: PushCondition, event: object, ctx: PushContext): boolean {
  if (!isPlainObject(cond)) return false;
  switch (cond.kind) {
    case 'event_match': {
      if (typeof cond.key !== 'string' || typeof cond.pattern !== 'string') return false;
      const value = lookupEventProperty(event, cond.key);
      // Absent or non-string: no match, "even if pattern is *".
      if (typeof value !== 'string') return false;
      const path = parseDottedPath(cond.key);
      // Special case: on content.body the pattern matches any word-bounded substring.
      const wordBoundary = path.length === 2 && path[0] === 'content' && path[1] === 'body';
      return globMatches(cond.pattern, value, { wordBoundary });
    }
    case 'event_property_is': {
      if (typeof cond.key !== 'string' || !isPushScalar(cond.value)) return false;
      const value = lookupEventProperty(event, cond.key);
      // Exact: no casting between "true", 1 and true.
      return isPushScalar(value) && value === cond.value;
    }
    case 'event_property_contains': {
      if (typeof cond.key !== 'string' || !isPushScalar(cond.value)) return false;
      const value = lookupEventProperty(event, cond.key);
      if (!Array.isArray(value)) return false;
      return value.some((item) => isPushScalar(item) && item === cond.value);
    }
    case 'contains_display_name': {
      // Deprecated since v1.17 but still defined. The name is literal text, not a glob.
      const name = ctx.displayName;
      if (typeof name !== 'string' || name.length === 0) return false;
      const body = bodyOf(event);
      if (body === undefined) return false;
      return globMatches(name, body, { wordBoundary: true, literal: true });
    }
    case 'room_member_count': {
      if (typeof cond.is !== 'string') return false;
      const m = MEMBER_COUNT.exec(cond.is);
      if (!m) return false;
      const n = Number(m[2]);
      const count = ctx.roomMemberCount;
      switch (m[1] ?? '==') {
        case '==': return count === n;
        case '<': return count < n;
        case '>': return count > n;
        case '<=': return count <= n;
        case '>=': return count >= n;
      }
      return false;
    }
    case 'sender_notification_permission': {
      if (typeof cond.key !== 'string') return false;
      const levels = ctx.notificationPowerLevels;
      const configured = isPlainObject(levels) && Object.hasOwn(levels, cond.key) ? levels[cond.key] : undefined;
      // m.room.power_levels documents only `room` ("Defaults to 50 if unspecified"); we use the same
      // default for any key the room leaves out.
      const required = typeof configured === 'number' && Number.isFinite(configured) ? configured : 50;
      return ctx.senderPowerLevel >= required;
    }
    default:
      // "Unrecognised conditions MUST NOT match any events, effectively making the push rule disabled."
      return false;
  }
}

// ---------------------------------------------------------------------------------------------------
// Rules and evaluation

/** Whether the rule's (explicit or predefined) conditions hold. Ignores `enabled`. */
export function ruleMatches(kind: PushRuleKind, rule: PushRule, event: object, ctx: PushContext): boolean {
  const ev = event as { room_id?: unknown; sender?: unknown };
  switch (kind) {
    case 'override':
    case 'underride': {
      const conditions = rule.conditions ?? [];
      // "A rule with no conditions always matches."
      return Array.isArray(conditions) && conditions.every((c) => conditionMatches(c, event, ctx));
    }
    case 'content': {
      if (typeof rule.pattern !== 'string') return false;
      const body = bodyOf(event);
      return body !== undefined && globMatches(rule.pattern, body, { wordBoundary: true });
    }
    case 'room':
      // "The rule_id of a room rule is always the ID of the room that it affects."
      return typeof ev.room_id === 'string' && ev.room_id === rule.rule_id;
    case 'sender':
      return typeof ev.sender === 'string' && ev.sender === rule.rule_id;
  }
}

/**
 * The first enabled rule that matches, in kind order and then list order, with its actions (historical
 * actions stripped); null when nothing matches, in which case the push gateway MUST NOT be notified.
 * The caller must not evaluate events the user sent themselves ("MUST NOT notify ... for events that
 * the user has sent themselves").
 */
export function evaluatePushRules(ruleset: Ruleset, event: object, ctx: PushContext): PushEvaluation | null {
  for (const kind of PUSH_RULE_KINDS) {
    for (const rule of ruleset[kind] ?? []) {
      if (rule.enabled !== true) continue; // "Disabled rules never match."
      if (ruleMatches(kind, rule, event, ctx)) {
        return { rule, actions: stripHistoricalActions(Array.isArray(rule.actions) ? rule.actions : []) };
      }
    }
  }
  return null;
}

// ---------------------------------------------------------------------------------------------------
// Actions

/** Actions older spec versions had; "Clients and homeservers MUST ignore these actions". */
export const HISTORICAL_ACTIONS: readonly string[] = ['dont_notify', 'coalesce'];

export function stripHistoricalActions(actions: readonly PushAction[]): PushAction[] {
  return actions.filter((a) => !(typeof a === 'string' && HISTORICAL_ACTIONS.includes(a)));
}

function isSetTweak(a: unknown): a is SetTweakAction {
  return isPlainObject(a) && typeof a.set_tweak === 'string';
}

/**
 * The `tweaks` dictionary the actions build, in order (a later set_tweak of the same name wins).
 * A `highlight` tweak without a value is `true`.
 */
export function tweaksFromActions(actions: readonly PushAction[]): Record<string, unknown> {
  const tweaks: Record<string, unknown> = {};
  for (const a of actions) {
    if (!isSetTweak(a)) continue;
    if (a.set_tweak === 'highlight' && !Object.hasOwn(a, 'value')) tweaks.highlight = true;
    else tweaks[a.set_tweak] = a.value;
  }
  return tweaks;
}

export function actionsNotify(actions: readonly PushAction[]): boolean {
  return actions.includes('notify');
}

/** highlight tweak with value true or no value; no highlight tweak at all means false. */
export function actionsHighlight(actions: readonly PushAction[]): boolean {
  const tweaks = tweaksFromActions(actions);
  return tweaks.highlight === true;
}

/** The sound tweak's value (`"default"` for the default sound), or null when none is set. */
export function actionsSound(actions: readonly PushAction[]): string | null {
  const sound = tweaksFromActions(actions).sound;
  return typeof sound === 'string' ? sound : null;
}

// ---------------------------------------------------------------------------------------------------
// Validation for the push rules API (PUT /pushrules/global/{kind}/{ruleId})

export function isPushRuleKind(kind: unknown): kind is PushRuleKind {
  return typeof kind === 'string' && (PUSH_RULE_KINDS as readonly string[]).includes(kind);
}

const KNOWN_STRING_ACTIONS: readonly string[] = ['notify', ...HISTORICAL_ACTIONS];

const utf8Length = (s: string): number => Buffer.byteLength(s, 'utf8');

// User ids: `@localpart:domain`; localparts of historical ids may use any printable ASCII but `:`
// (appendix "User Identifiers"). Room ids: `!` then an opaque part, with `:domain` before v12.
const USER_ID = /^@[\x21-\x39\x3b-\x7e]+:[A-Za-z0-9.\-:[\]]+$/;
const ROOM_ID = /^![\x21-\x7e]+$/;

/**
 * Whether a client may create a user rule with this id. Ids starting with "." are reserved for
 * server-default rules and "/" and "\" are not allowed (pushrules.yaml, `ruleId`). For `room` and
 * `sender` rules the id is the room id / user id: since user id localparts may contain "/", those two
 * kinds are checked against the identifier grammar instead of the "/" ban.
 */
export function isValidRuleId(kind: PushRuleKind, ruleId: string): boolean {
  if (typeof ruleId !== 'string' || ruleId.length === 0 || isServerDefaultRuleId(ruleId)) return false;
  if (ruleId.includes('\\')) return false;
  switch (kind) {
    case 'room':
      return ROOM_ID.test(ruleId) && utf8Length(ruleId) <= 255;
    case 'sender':
      return USER_ID.test(ruleId) && utf8Length(ruleId) <= 255;
    default:
      return !ruleId.includes('/');
  }
}

/** Why one action is invalid, or null. */
function validateAction(a: unknown): string | null {
  if (typeof a === 'string') return KNOWN_STRING_ACTIONS.includes(a) ? null : `unknown action: ${a}`;
  if (isSetTweak(a)) return null;
  return 'each action must be a known action string or a set_tweak object';
}

/** Why one condition is invalid, or null. Unknown kinds are accepted: they are stored and never match. */
export function validateCondition(c: unknown): string | null {
  if (!isPlainObject(c) || typeof c.kind !== 'string') return 'each condition must be an object with a string kind';
  const needKey = (): string | null => (typeof c.key === 'string' ? null : `${c.kind} requires a string key`);
  switch (c.kind) {
    case 'event_match':
      return needKey() ?? (typeof c.pattern === 'string' ? null : 'event_match requires a string pattern');
    case 'event_property_is':
    case 'event_property_contains':
      return (
        needKey() ??
        (Object.hasOwn(c, 'value') && isPushScalar(c.value)
          ? null
          : `${c.kind} requires a value that is a string, integer, boolean or null`)
      );
    case 'room_member_count':
      return typeof c.is === 'string' && MEMBER_COUNT.test(c.is)
        ? null
        : 'room_member_count requires is: an integer optionally prefixed by ==, <, >, <= or >=';
    case 'sender_notification_permission':
      return needKey();
    default:
      return null;
  }
}

/**
 * Why a PUT body for a rule of this kind is invalid, or null. `actions` must be an array of known
 * actions; `pattern` (a string) is required for content rules and refused elsewhere; `conditions` are
 * accepted only for override/underride (push_rule.yaml: "Only applicable to underride and override
 * rules"). When `ruleId` is given it is checked with isValidRuleId.
 */
export function validateRuleBody(kind: PushRuleKind, body: unknown, ruleId?: string): string | null {
  if (!isPushRuleKind(kind)) return `unknown push rule kind: ${String(kind)}`;
  if (ruleId !== undefined && !isValidRuleId(kind, ruleId)) {
    if (typeof ruleId === 'string' && isServerDefaultRuleId(ruleId)) return 'rule ids starting with "." are reserved for server-default rules';
    if (kind === 'room') return 'the rule_id of a room rule must be the room id';
    if (kind === 'sender') return 'the rule_id of a sender rule must be the user id';
    return 'invalid rule_id';
  }
  if (!isPlainObject(body)) return 'body must be a JSON object';
  if (!Array.isArray(body.actions)) return 'actions must be an array';
  for (const a of body.actions) {
    const err = validateAction(a);
    if (err) return err;
  }
  if (kind === 'content') {
    if (typeof body.pattern !== 'string') return 'content rules require a string pattern';
  } else if (body.pattern !== undefined) {
    return 'pattern is only applicable to content rules';
  }
  if (body.conditions !== undefined) {
    if (kind !== 'override' && kind !== 'underride') return 'conditions are only applicable to override and underride rules';
    if (!Array.isArray(body.conditions)) return 'conditions must be an array';
    for (const c of body.conditions) {
      const err = validateCondition(c);
      if (err) return err;
    }
  }
  return null;
}

/** Validates the body of PUT .../actions. */
export function validateActions(actions: unknown): string | null {
  if (!Array.isArray(actions)) return 'actions must be an array';
  for (const a of actions) {
    const err = validateAction(a);
    if (err) return err;
  }
  return null;
}

/**
 * Places a user rule in its kind's list of user rules, as PUT /pushrules/global/{kind}/{ruleId}
 * describes: an existing rule with the same id is updated (keeping its `enabled`, keeping its place
 * unless before/after is given); a new rule is enabled and becomes the most important one unless
 * before/after is given. `before` wins when both are given. Rules may not be placed relative to a
 * server-default rule. Returns the new list, or an error string (M_UNKNOWN / M_NOT_FOUND territory).
 */
export function upsertUserRule(
  rules: readonly PushRule[],
  rule: Omit<PushRule, 'default' | 'enabled'>,
  position: { before?: string; after?: string } = {},
): PushRule[] | { error: string } {
  for (const anchor of [position.before, position.after]) {
    if (anchor !== undefined && isServerDefaultRuleId(anchor)) {
      return { error: `cannot place a rule relative to a server-default rule: ${anchor}` };
    }
  }
  const existing = rules.find((r) => r.rule_id === rule.rule_id);
  const updated: PushRule = {
    ...cloneJson(rule),
    rule_id: rule.rule_id,
    default: false,
    enabled: existing ? existing.enabled : true,
  };
  const hasPosition = position.before !== undefined || position.after !== undefined;
  if (existing && !hasPosition) return rules.map((r) => (r.rule_id === rule.rule_id ? updated : r));
  const rest = rules.filter((r) => r.rule_id !== rule.rule_id);
  if (position.before !== undefined) {
    const i = rest.findIndex((r) => r.rule_id === position.before);
    if (i < 0) return { error: `before/after rule not found: ${position.before}` };
    return [...rest.slice(0, i), updated, ...rest.slice(i)];
  }
  if (position.after !== undefined) {
    const i = rest.findIndex((r) => r.rule_id === position.after);
    if (i < 0) return { error: `before/after rule not found: ${position.after}` };
    return [...rest.slice(0, i + 1), updated, ...rest.slice(i + 1)];
  }
  return [updated, ...rest];
}

// Re-exported for callers that need the boundary definition (e.g. highlighting matches in a UI).
export { isWordChar };
