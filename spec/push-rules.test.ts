import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import {
  actionsHighlight,
  actionsNotify,
  actionsSound,
  conditionMatches,
  defaultRuleset,
  evaluatePushRules,
  lookupEventProperty,
  mergeWithDefaults,
  parseDottedPath,
  stripHistoricalActions,
  tweaksFromActions,
  PUSH_RULE_KINDS,
} from './push-rules.ts';
import type { PushAction, PushCondition, PushContext, PushRule, PushRuleKind, Ruleset, UserPushRule, UserRules } from './push-rules.ts';

const ME = '@alice:example.com';
const ROOM = '!room:example.com';

function ctx(over: Partial<PushContext> = {}): PushContext {
  return {
    userId: ME,
    displayName: 'Alice',
    roomMemberCount: 5,
    senderPowerLevel: 0,
    notificationPowerLevels: { room: 50 },
    ...over,
  };
}

function message(body: string, extra: Record<string, unknown> = {}, sender = '@bob:example.com'): Record<string, unknown> {
  return {
    type: 'm.room.message',
    room_id: ROOM,
    sender,
    event_id: '$m:example.com',
    content: { msgtype: 'm.text', body, ...extra },
  };
}

function evalDefault(event: object, c: PushContext = ctx(), userRules: UserRules = {}) {
  return evaluatePushRules(mergeWithDefaults(userRules, ME), event, c);
}

// ---------------------------------------------------------------------------------------------------
// Conditions

test('event_match: the spec example (content.topic, lunc?*)', () => {
  const cond: PushCondition = { kind: 'event_match', key: 'content.topic', pattern: 'lunc?*' };
  const topicEvent = (topic: unknown) => ({
    content: { topic },
    event_id: '$143273582443PhrSn:example.org',
    room_id: '!636q39766251:example.com',
    sender: '@example:example.org',
    state_key: '',
    type: 'm.room.topic',
  });
  assert.equal(conditionMatches(cond, topicEvent('Lunch plans'), ctx()), true);
  assert.equal(conditionMatches(cond, topicEvent('LUNCH'), ctx()), true);
  assert.equal(conditionMatches(cond, topicEvent(' lunch'), ctx()), false);
  assert.equal(conditionMatches(cond, topicEvent('lunc'), ctx()), false);
  assert.equal(conditionMatches(cond, topicEvent(null), ctx()), false);
});

test('event_match: absent or non-string values never match, even pattern *', () => {
  const star: PushCondition = { kind: 'event_match', key: 'content.topic', pattern: '*' };
  assert.equal(conditionMatches(star, { content: {} }, ctx()), false);
  assert.equal(conditionMatches(star, { content: { topic: 5 } }, ctx()), false);
  assert.equal(conditionMatches(star, { content: { topic: true } }, ctx()), false);
  assert.equal(conditionMatches(star, { content: { topic: ['x'] } }, ctx()), false);
  assert.equal(conditionMatches(star, { content: { topic: { a: 'x' } } }, ctx()), false);
  assert.equal(conditionMatches(star, { content: { topic: '' } }, ctx()), true);
  assert.equal(conditionMatches(star, {}, ctx()), false);
});

test('event_match: content.body matches word-bounded substrings (spec example ex*ple)', () => {
  const cond: PushCondition = { kind: 'event_match', key: 'content.body', pattern: 'ex*ple' };
  const ev = (body: string) => ({
    content: { body },
    event_id: '$143273976499sgjks:example.org',
    room_id: '!636q39766251:example.com',
    sender: '@example:example.org',
    type: 'm.room.message',
  });
  assert.equal(conditionMatches(cond, ev('An example event.'), ctx()), true);
  assert.equal(conditionMatches(cond, ev('exple'), ctx()), true);
  assert.equal(conditionMatches(cond, ev('An exciting triple-whammy'), ctx()), true);
  assert.equal(conditionMatches(cond, ev('An examples event'), ctx()), false);
  // Other keys are whole-value matches.
  const topic: PushCondition = { kind: 'event_match', key: 'content.topic', pattern: 'example' };
  assert.equal(conditionMatches(topic, { content: { topic: 'An example event.' } }, ctx()), false);
  assert.equal(conditionMatches(topic, { content: { topic: 'EXAMPLE' } }, ctx()), true);
});

test('dot-separated paths: \\. and \\\\ escapes, other escapes left as-is (appendix)', () => {
  assert.deepEqual(parseDottedPath('content.body'), ['content', 'body']);
  assert.deepEqual(parseDottedPath('content.m\\.relates_to'), ['content', 'm.relates_to']);
  assert.deepEqual(parseDottedPath('content.m\\\\foo'), ['content', 'm\\foo']);
  assert.deepEqual(parseDottedPath('content.m\\x'), ['content', 'm\\x']);
  assert.deepEqual(parseDottedPath('content.m\\\\.foo'), ['content', 'm\\', 'foo']);
  assert.deepEqual(parseDottedPath('trailing\\'), ['trailing\\']);

  const event = {
    content: {
      'm.relates_to': { rel_type: 'm.replace' },
      'm\\foo': 'backslash',
      'm\\x': 'other-escape',
      m: { relates_to: 'nested' },
    },
  };
  assert.deepEqual(lookupEventProperty(event, 'content.m\\.relates_to'), { rel_type: 'm.replace' });
  assert.equal(lookupEventProperty(event, 'content.m\\.relates_to.rel_type'), 'm.replace');
  assert.equal(lookupEventProperty(event, 'content.m.relates_to'), 'nested'); // unescaped dot descends
  assert.equal(lookupEventProperty(event, 'content.m\\\\foo'), 'backslash');
  assert.equal(lookupEventProperty(event, 'content.m\\x'), 'other-escape');
  assert.equal(lookupEventProperty(event, 'content.missing'), undefined);
  // Prototype properties are not event properties; arrays are not descended into.
  assert.equal(lookupEventProperty(event, 'content.constructor'), undefined);
  assert.equal(lookupEventProperty({ a: ['x'] }, 'a.0'), undefined);

  const cond: PushCondition = { kind: 'event_match', key: 'content.m\\.relates_to.rel_type', pattern: 'm.replace' };
  assert.equal(conditionMatches(cond, event, ctx()), true);
  const unescaped: PushCondition = { kind: 'event_match', key: 'content.m.relates_to.rel_type', pattern: 'm.replace' };
  assert.equal(conditionMatches(unescaped, event, ctx()), false);
});

test('event_property_is: the spec example (content.m\\.federate = true) and exact typing', () => {
  const cond: PushCondition = { kind: 'event_property_is', key: 'content.m\\.federate', value: true };
  const create = (federate: unknown) => ({
    content: {
      creator: '@example:example.org',
      'm.federate': federate,
      predecessor: { event_id: '$something:example.org', room_id: '!oldroom:example.org' },
      room_version: '1',
    },
    event_id: '$143273582443PhrSn:example.org',
    room_id: '!636q39766251:example.com',
    sender: '@example:example.org',
    state_key: '',
    type: 'm.room.create',
  });
  assert.equal(conditionMatches(cond, create(true), ctx()), true);
  assert.equal(conditionMatches(cond, create('true'), ctx()), false); // string value
  assert.equal(conditionMatches(cond, create(1), ctx()), false); // no casting
  assert.equal(conditionMatches(cond, create(false), ctx()), false);

  const isNull: PushCondition = { kind: 'event_property_is', key: 'content.x', value: null };
  assert.equal(conditionMatches(isNull, { content: { x: null } }, ctx()), true);
  assert.equal(conditionMatches(isNull, { content: {} }, ctx()), false); // absent is not null
  const isInt: PushCondition = { kind: 'event_property_is', key: 'content.n', value: 42 };
  assert.equal(conditionMatches(isInt, { content: { n: 42 } }, ctx()), true);
  assert.equal(conditionMatches(isInt, { content: { n: '42' } }, ctx()), false);
  const isStr: PushCondition = { kind: 'event_property_is', key: 'content.s', value: 'Abc' };
  assert.equal(conditionMatches(isStr, { content: { s: 'Abc' } }, ctx()), true);
  assert.equal(conditionMatches(isStr, { content: { s: 'abc' } }, ctx()), false); // exact, not case-folded
  assert.equal(conditionMatches(isStr, { content: { s: ['Abc'] } }, ctx()), false); // compound values never match
  const isFloat: PushCondition = { kind: 'event_property_is', key: 'content.f', value: 1.5 };
  assert.equal(conditionMatches(isFloat, { content: { f: 1.5 } }, ctx()), false); // not canonical JSON
});

test('event_property_contains: the spec example (content.alt_aliases)', () => {
  const cond: PushCondition = { kind: 'event_property_contains', key: 'content.alt_aliases', value: '#myroom:example.com' };
  const alias = (alt: unknown) => ({
    content: { alias: '#somewhere:localhost', alt_aliases: alt },
    event_id: '$143273582443PhrSn:example.org',
    origin_server_ts: 1432735824653,
    room_id: '!jEsUZKDJdhlrceRyVU:example.org',
    sender: '@example:example.org',
    state_key: '',
    type: 'm.room.canonical_alias',
    unsigned: { age: 1234 },
  });
  assert.equal(conditionMatches(cond, alias(['#somewhere:example.org', '#myroom:example.com']), ctx()), true);
  assert.equal(conditionMatches(cond, alias([':example.com']), ctx()), false); // partial values do not match
  assert.equal(conditionMatches(cond, alias(['#MYROOM:example.com']), ctx()), false); // exact
  assert.equal(conditionMatches(cond, alias('#myroom:example.com'), ctx()), false); // not an array
  assert.equal(conditionMatches(cond, { content: {} }, ctx()), false);
  // Compound array values are ignored, scalars still match.
  const containsTrue: PushCondition = { kind: 'event_property_contains', key: 'content.a', value: true };
  assert.equal(conditionMatches(containsTrue, { content: { a: [{ x: true }, [true]] } }, ctx()), false);
  assert.equal(conditionMatches(containsTrue, { content: { a: [{ x: true }, true] } }, ctx()), true);
  const containsNull: PushCondition = { kind: 'event_property_contains', key: 'content.a', value: null };
  assert.equal(conditionMatches(containsNull, { content: { a: [1, null] } }, ctx()), true);
});

test('contains_display_name: word-bounded, case-insensitive, literal', () => {
  const cond: PushCondition = { kind: 'contains_display_name' };
  assert.equal(conditionMatches(cond, message('hello alice!'), ctx()), true);
  assert.equal(conditionMatches(cond, message('ALICE'), ctx()), true);
  assert.equal(conditionMatches(cond, message('Alicette is here'), ctx()), false);
  assert.equal(conditionMatches(cond, message('malice'), ctx()), false);
  assert.equal(conditionMatches(cond, message('hello alice'), ctx({ displayName: null })), false);
  assert.equal(conditionMatches(cond, message('hello'), ctx({ displayName: '' })), false);
  assert.equal(conditionMatches(cond, { type: 'm.room.message', content: {} }, ctx()), false);
  // Glob characters in a display name are plain text.
  assert.equal(conditionMatches(cond, message('hi Ab'), ctx({ displayName: 'A*' })), false);
  assert.equal(conditionMatches(cond, message('hi a* there'), ctx({ displayName: 'A*' })), true);
});

test('room_member_count: ==, <, >, <=, >= and a bare number meaning ==', () => {
  const at = (is: string, count: number) => conditionMatches({ kind: 'room_member_count', is }, {}, ctx({ roomMemberCount: count }));
  assert.equal(at('2', 2), true);
  assert.equal(at('2', 3), false);
  assert.equal(at('==2', 2), true);
  assert.equal(at('==2', 1), false);
  assert.equal(at('<10', 9), true);
  assert.equal(at('<10', 10), false);
  assert.equal(at('>10', 11), true);
  assert.equal(at('>10', 10), false);
  assert.equal(at('<=10', 10), true);
  assert.equal(at('<=10', 11), false);
  assert.equal(at('>=10', 10), true);
  assert.equal(at('>=10', 9), false);
  // Malformed values never match.
  assert.equal(at('=2', 2), false);
  assert.equal(at('two', 2), false);
  assert.equal(at('', 2), false);
  assert.equal(at('2.0', 2), false);
  assert.equal(conditionMatches({ kind: 'room_member_count' }, {}, ctx({ roomMemberCount: 2 })), false);
});

test('sender_notification_permission: sender power >= notifications[key], room defaults to 50', () => {
  const room: PushCondition = { kind: 'sender_notification_permission', key: 'room' };
  assert.equal(conditionMatches(room, {}, ctx({ senderPowerLevel: 50, notificationPowerLevels: {} })), true);
  assert.equal(conditionMatches(room, {}, ctx({ senderPowerLevel: 49, notificationPowerLevels: {} })), false);
  assert.equal(conditionMatches(room, {}, ctx({ senderPowerLevel: 10, notificationPowerLevels: { room: 10 } })), true);
  assert.equal(conditionMatches(room, {}, ctx({ senderPowerLevel: 99, notificationPowerLevels: { room: 100 } })), false);
  const other: PushCondition = { kind: 'sender_notification_permission', key: 'custom' };
  assert.equal(conditionMatches(other, {}, ctx({ senderPowerLevel: 0, notificationPowerLevels: { custom: 0 } })), true);
  assert.equal(conditionMatches(other, {}, ctx({ senderPowerLevel: 0, notificationPowerLevels: { room: 0 } })), false);
  assert.equal(conditionMatches({ kind: 'sender_notification_permission' }, {}, ctx({ senderPowerLevel: 100 })), false);
});

test('unknown condition kinds never match, disabling their rule', () => {
  const unknown: PushCondition = { kind: 'org.example.future', key: 'type', pattern: '*' };
  assert.equal(conditionMatches(unknown, message('hi'), ctx()), false);
  const ruleset: Ruleset = {
    override: [{ rule_id: 'future', default: false, enabled: true, conditions: [unknown], actions: ['notify'] }],
    content: [],
    room: [],
    sender: [],
    underride: [],
  };
  assert.equal(evaluatePushRules(ruleset, message('hi'), ctx()), null);
});

// ---------------------------------------------------------------------------------------------------
// The predefined rules

const EXPECTED_OVERRIDE = [
  '.m.rule.master',
  '.m.rule.suppress_notices',
  '.m.rule.invite_for_me',
  '.m.rule.member_event',
  '.m.rule.is_user_mention',
  '.m.rule.is_room_mention',
  '.m.rule.tombstone',
  '.m.rule.reaction',
  '.m.rule.room.server_acl',
  '.m.rule.suppress_edits',
];
const EXPECTED_UNDERRIDE = [
  '.m.rule.call',
  '.m.rule.encrypted_room_one_to_one',
  '.m.rule.room_one_to_one',
  '.m.rule.message',
  '.m.rule.encrypted',
];

test('defaultRuleset: exactly the v1.19 rule ids, kinds and order; master disabled', () => {
  const rs = defaultRuleset(ME);
  assert.deepEqual(rs.override.map((r) => r.rule_id), EXPECTED_OVERRIDE);
  assert.deepEqual(rs.content, []); // v1.17 removed .m.rule.contains_user_name
  assert.deepEqual(rs.room, []);
  assert.deepEqual(rs.sender, []);
  assert.deepEqual(rs.underride.map((r) => r.rule_id), EXPECTED_UNDERRIDE);
  const all = PUSH_RULE_KINDS.flatMap((k) => rs[k]);
  for (const removed of ['.m.rule.contains_display_name', '.m.rule.roomnotif', '.m.rule.contains_user_name']) {
    assert.equal(all.some((r) => r.rule_id === removed), false, removed);
  }
  for (const r of all) {
    assert.equal(r.default, true);
    assert.equal(r.enabled, r.rule_id !== '.m.rule.master', r.rule_id);
  }
  // Fresh objects every call: callers may mutate.
  rs.override[0]!.enabled = true;
  assert.equal(defaultRuleset(ME).override[0]!.enabled, false);
});

// The spec file, when this checkout sits beside ../shared/matrix-spec.
const PUSH_MD = new URL('../../shared/matrix-spec/content/client-server-api/modules/push.md', import.meta.url);

test('defaultRuleset: definitions deep-equal the JSON in the spec text, in order and kind', (t) => {
  if (!existsSync(PUSH_MD)) {
    t.skip('matrix-spec checkout not found');
    return;
  }
  const text = readFileSync(PUSH_MD, 'utf8');
  const section = text.slice(text.indexOf('#### Predefined Rules'), text.indexOf('#### Push Rules: API'));
  const overridePart = section.slice(section.indexOf('##### Default Override Rules'), section.indexOf('##### Default Underride Rules'));
  const underridePart = section.slice(section.indexOf('##### Default Underride Rules'));
  const defs = (part: string): PushRule[] =>
    [...part.matchAll(/```json\n([\s\S]*?)```/g)].map((m) =>
      JSON.parse(m[1]!.replaceAll("[the user's Matrix ID]", ME)) as PushRule,
    );
  const specOverride = defs(overridePart);
  const specUnderride = defs(underridePart);
  assert.deepEqual(specOverride.map((r) => r.rule_id), EXPECTED_OVERRIDE);
  assert.deepEqual(specUnderride.map((r) => r.rule_id), EXPECTED_UNDERRIDE);
  // No default content rules are listed: every definition is under the two headings above.
  assert.equal([...section.matchAll(/```json/g)].length, specOverride.length + specUnderride.length);
  const ours = defaultRuleset(ME);
  assert.deepEqual(ours.override, specOverride);
  assert.deepEqual(ours.underride, specUnderride);
});

test('.m.rule.master: when enabled, silences everything (even invites and user overrides)', () => {
  const userRules: UserRules = {
    override: [
      { rule_id: '.m.rule.master', enabled: true },
      { rule_id: 'loud', enabled: true, conditions: [], actions: ['notify'] },
    ],
  };
  const r = evalDefault(message('hi', { 'm.mentions': { user_ids: [ME] } }), ctx(), userRules);
  assert.equal(r?.rule.rule_id, '.m.rule.master');
  assert.deepEqual(r?.actions, []);
  assert.equal(actionsNotify(r!.actions), false);
  // Disabled by default: the same message then notifies normally.
  assert.equal(evalDefault(message('hi'))?.rule.rule_id, '.m.rule.message');
});

test('.m.rule.suppress_notices: m.notice messages do not notify', () => {
  const r = evalDefault(message('beep', { msgtype: 'm.notice' }));
  assert.equal(r?.rule.rule_id, '.m.rule.suppress_notices');
  assert.deepEqual(r?.actions, []);
});

test('.m.rule.invite_for_me: an invite for me notifies with the default sound', () => {
  const invite = (target: string) => ({
    type: 'm.room.member',
    room_id: ROOM,
    sender: '@bob:example.com',
    state_key: target,
    content: { membership: 'invite' },
  });
  const r = evalDefault(invite(ME));
  assert.equal(r?.rule.rule_id, '.m.rule.invite_for_me');
  assert.deepEqual(r?.actions, ['notify', { set_tweak: 'sound', value: 'default' }]);
  assert.equal(actionsSound(r!.actions), 'default');
  assert.equal(actionsHighlight(r!.actions), false);
  // Someone else's invite is just a member event.
  assert.equal(evalDefault(invite('@carol:example.com'))?.rule.rule_id, '.m.rule.member_event');
});

test('.m.rule.member_event: other membership events do not notify', () => {
  const join = { type: 'm.room.member', room_id: ROOM, sender: '@bob:example.com', state_key: '@bob:example.com', content: { membership: 'join' } };
  const r = evalDefault(join);
  assert.equal(r?.rule.rule_id, '.m.rule.member_event');
  assert.deepEqual(r?.actions, []);
});

test('.m.rule.is_user_mention: m.mentions.user_ids with my id highlights', () => {
  const r = evalDefault(message('hey', { 'm.mentions': { user_ids: ['@carol:example.com', ME] } }));
  assert.equal(r?.rule.rule_id, '.m.rule.is_user_mention');
  assert.deepEqual(r?.actions, ['notify', { set_tweak: 'sound', value: 'default' }, { set_tweak: 'highlight' }]);
  assert.equal(actionsNotify(r!.actions), true);
  assert.equal(actionsHighlight(r!.actions), true);
  assert.equal(actionsSound(r!.actions), 'default');
  // Somebody else's mention, or my name only in the body (legacy rules removed in v1.17): a plain message.
  assert.equal(evalDefault(message('hey', { 'm.mentions': { user_ids: ['@carol:example.com'] } }))?.rule.rule_id, '.m.rule.message');
  assert.equal(evalDefault(message(`hey Alice, ${ME}`))?.rule.rule_id, '.m.rule.message');
});

test('.m.rule.is_room_mention: m.mentions.room from a sender with the room notification level', () => {
  const atRoom = message('@room hello', { 'm.mentions': { room: true } });
  const r = evalDefault(atRoom, ctx({ senderPowerLevel: 50 }));
  assert.equal(r?.rule.rule_id, '.m.rule.is_room_mention');
  assert.deepEqual(r?.actions, ['notify', { set_tweak: 'highlight' }]);
  assert.equal(actionsHighlight(r!.actions), true);
  assert.equal(actionsSound(r!.actions), null);
  // Without enough power it is an ordinary message.
  assert.equal(evalDefault(atRoom, ctx({ senderPowerLevel: 0 }))?.rule.rule_id, '.m.rule.message');
  // A room that lowers notifications.room lets anyone @room.
  assert.equal(evalDefault(atRoom, ctx({ senderPowerLevel: 0, notificationPowerLevels: { room: 0 } }))?.rule.rule_id, '.m.rule.is_room_mention');
  // "@room" in the body alone no longer highlights (.m.rule.roomnotif removed); room must be exactly true.
  assert.equal(evalDefault(message('@room hello'), ctx({ senderPowerLevel: 100 }))?.rule.rule_id, '.m.rule.message');
  assert.equal(evalDefault(message('x', { 'm.mentions': { room: 'true' } }), ctx({ senderPowerLevel: 100 }))?.rule.rule_id, '.m.rule.message');
});

test('.m.rule.tombstone: a tombstone state event highlights; a non-state one does not match it', () => {
  const tomb = { type: 'm.room.tombstone', room_id: ROOM, sender: '@bob:example.com', state_key: '', content: { body: 'moved', replacement_room: '!new:example.com' } };
  const r = evalDefault(tomb);
  assert.equal(r?.rule.rule_id, '.m.rule.tombstone');
  assert.deepEqual(r?.actions, ['notify', { set_tweak: 'highlight' }]);
  const { state_key: _omit, ...notState } = tomb;
  assert.equal(evalDefault(notState), null);
});

test('.m.rule.reaction: reactions do not notify', () => {
  const reaction = {
    type: 'm.reaction',
    room_id: ROOM,
    sender: '@bob:example.com',
    content: { 'm.relates_to': { rel_type: 'm.annotation', event_id: '$x', key: '👍' } },
  };
  const r = evalDefault(reaction, ctx({ roomMemberCount: 2 }));
  assert.equal(r?.rule.rule_id, '.m.rule.reaction');
  assert.deepEqual(r?.actions, []);
  assert.equal(actionsNotify(r!.actions), false);
});

test('.m.rule.room.server_acl: server ACL changes do not notify', () => {
  const acl = { type: 'm.room.server_acl', room_id: ROOM, sender: '@bob:example.com', state_key: '', content: { allow: ['*'] } };
  const r = evalDefault(acl);
  assert.equal(r?.rule.rule_id, '.m.rule.room.server_acl');
  assert.deepEqual(r?.actions, []);
});

test('.m.rule.suppress_edits: replacements do not notify', () => {
  const edit = message('* fixed', {
    'm.new_content': { msgtype: 'm.text', body: 'fixed' },
    'm.relates_to': { rel_type: 'm.replace', event_id: '$orig' },
  });
  const r = evalDefault(edit, ctx({ roomMemberCount: 2 }));
  assert.equal(r?.rule.rule_id, '.m.rule.suppress_edits');
  assert.deepEqual(r?.actions, []);
  // A thread reply is not an edit.
  const threaded = message('reply', { 'm.relates_to': { rel_type: 'm.thread', event_id: '$root' } });
  assert.equal(evalDefault(threaded)?.rule.rule_id, '.m.rule.message');
});

test('.m.rule.call: call invites ring', () => {
  const call = { type: 'm.call.invite', room_id: ROOM, sender: '@bob:example.com', content: { call_id: '1', version: '1', lifetime: 60000, offer: { type: 'offer', sdp: '' } } };
  const r = evalDefault(call, ctx({ roomMemberCount: 2 }));
  assert.equal(r?.rule.rule_id, '.m.rule.call');
  assert.deepEqual(r?.actions, ['notify', { set_tweak: 'sound', value: 'ring' }]);
  assert.equal(actionsSound(r!.actions), 'ring');
});

const encrypted = { type: 'm.room.encrypted', room_id: ROOM, sender: '@bob:example.com', content: { algorithm: 'm.megolm.v1.aes-sha2', ciphertext: 'AwgA...' } };

test('.m.rule.encrypted_room_one_to_one: encrypted events in a two-member room notify with sound', () => {
  const r = evalDefault(encrypted, ctx({ roomMemberCount: 2 }));
  assert.equal(r?.rule.rule_id, '.m.rule.encrypted_room_one_to_one');
  assert.deepEqual(r?.actions, ['notify', { set_tweak: 'sound', value: 'default' }]);
});

test('.m.rule.room_one_to_one: messages in a two-member room notify with sound', () => {
  const r = evalDefault(message('hi'), ctx({ roomMemberCount: 2 }));
  assert.equal(r?.rule.rule_id, '.m.rule.room_one_to_one');
  assert.deepEqual(r?.actions, ['notify', { set_tweak: 'sound', value: 'default' }]);
});

test('.m.rule.message: messages in a group room notify silently', () => {
  const r = evalDefault(message('hi'), ctx({ roomMemberCount: 3 }));
  assert.equal(r?.rule.rule_id, '.m.rule.message');
  assert.deepEqual(r?.actions, ['notify']);
  assert.equal(actionsSound(r!.actions), null);
  assert.equal(actionsHighlight(r!.actions), false);
});

test('.m.rule.encrypted: encrypted events in a group room notify silently', () => {
  const r = evalDefault(encrypted, ctx({ roomMemberCount: 3 }));
  assert.equal(r?.rule.rule_id, '.m.rule.encrypted');
  assert.deepEqual(r?.actions, ['notify']);
});

test('events no rule matches produce no notification', () => {
  const topic = { type: 'm.room.topic', room_id: ROOM, sender: '@bob:example.com', state_key: '', content: { topic: 'x' } };
  assert.equal(evalDefault(topic), null);
});

// ---------------------------------------------------------------------------------------------------
// Ordering and merging

function rule(rule_id: string, actions: PushAction[], extra: Partial<PushRule> = {}): PushRule {
  return { rule_id, default: false, enabled: true, actions, ...extra };
}

function emptyRuleset(): Ruleset {
  return { override: [], content: [], room: [], sender: [], underride: [] };
}

test('kinds are checked override, content, room, sender, underride', () => {
  const ev = message('cake time', {}, '@spambot:matrix.org');
  const rs = emptyRuleset();
  rs.underride.push(rule('u', ['notify'], { conditions: [] }));
  rs.sender.push(rule('@spambot:matrix.org', [{ set_tweak: 'sound', value: 'sender' }]));
  rs.room.push(rule(ROOM, [{ set_tweak: 'sound', value: 'room' }]));
  rs.content.push(rule('c', [{ set_tweak: 'sound', value: 'content' }], { pattern: 'cake' }));
  rs.override.push(rule('o', [{ set_tweak: 'sound', value: 'override' }], { conditions: [] }));
  const order: PushRuleKind[] = [];
  // Peel off the winning kind each time: the next kind in line must win.
  for (;;) {
    const r = evaluatePushRules(rs, ev, ctx());
    if (!r) break;
    const kind = PUSH_RULE_KINDS.find((k) => rs[k].includes(r.rule))!;
    order.push(kind);
    rs[kind] = [];
  }
  assert.deepEqual(order, ['override', 'content', 'room', 'sender', 'underride']);
});

test('within a kind the first matching rule wins (the spec\'s "tea"/"time" example)', () => {
  const rs = emptyRuleset();
  rs.content.push(rule('time', ['notify', { set_tweak: 'sound', value: 'time.wav' }], { pattern: 'time' }));
  rs.content.push(rule('tea', ['notify', { set_tweak: 'sound', value: 'tea.wav' }], { pattern: 'tea' }));
  assert.equal(evaluatePushRules(rs, message("It's time for tea"), ctx())?.rule.rule_id, 'time');
  rs.content.reverse();
  assert.equal(evaluatePushRules(rs, message("It's time for tea"), ctx())?.rule.rule_id, 'tea');
});

test('a disabled rule is skipped', () => {
  const rs = emptyRuleset();
  rs.override.push(rule('off', ['notify'], { conditions: [], enabled: false }));
  rs.underride.push(rule('on', [], { conditions: [] }));
  assert.equal(evaluatePushRules(rs, message('x'), ctx())?.rule.rule_id, 'on');
  rs.underride[0]!.enabled = false;
  assert.equal(evaluatePushRules(rs, message('x'), ctx()), null);
});

test('content rules: the spec examples (cake, cake*lie before it)', () => {
  const cake: UserPushRule = { rule_id: 'SSByZWFsbHkgbGlrZSBjYWtl', pattern: 'cake', actions: ['notify', { set_tweak: 'sound', value: 'cakealarm.wav' }] };
  const lie: UserPushRule = { rule_id: 'U3BvbmdlIGNha2UgaXMgYmVzdA', pattern: 'cake*lie', actions: ['notify'] };
  let r = evalDefault(message('I love CAKE!'), ctx(), { content: [cake] });
  assert.equal(r?.rule.rule_id, 'SSByZWFsbHkgbGlrZSBjYWtl');
  assert.equal(actionsSound(r!.actions), 'cakealarm.wav');
  // Content rules beat the default underride rules, even in a 1:1 room.
  assert.equal(evalDefault(message('cake'), ctx({ roomMemberCount: 2 }), { content: [cake] })?.rule.rule_id, 'SSByZWFsbHkgbGlrZSBjYWtl');
  // Word boundaries: "pancakes" is not "cake".
  assert.equal(evalDefault(message('pancakes'), ctx(), { content: [cake] })?.rule.rule_id, '.m.rule.message');
  // "before=SSByZWFsbHkgbGlrZSBjYWtl" puts cake*lie first, so it supersedes.
  r = evalDefault(message('the cake is a lie'), ctx(), { content: [lie, cake] });
  assert.equal(r?.rule.rule_id, 'U3BvbmdlIGNha2UgaXMgYmVzdA');
  assert.deepEqual(r?.actions, ['notify']);
  // A content rule without a pattern, or an event without a string body, never matches.
  assert.equal(evalDefault(message('cake'), ctx(), { content: [{ rule_id: 'nopattern', actions: ['notify'] }] })?.rule.rule_id, '.m.rule.message');
  assert.equal(evalDefault(encrypted, ctx(), { content: [{ rule_id: 'all', pattern: '*', actions: ['notify'] }] })?.rule.rule_id, '.m.rule.encrypted');
});

test('override example: "beer" in rooms with 10 members or fewer', () => {
  const beer: UserPushRule = {
    rule_id: 'U2VlIHlvdSBpbiBUaGUgRHVrZQ',
    conditions: [
      { kind: 'event_match', key: 'content.body', pattern: 'beer' },
      { kind: 'room_member_count', is: '<=10' },
    ],
    actions: ['notify', { set_tweak: 'sound', value: 'beeroclock.wav' }],
  };
  assert.equal(evalDefault(message('Beer?'), ctx({ roomMemberCount: 10 }), { override: [beer] })?.rule.rule_id, 'U2VlIHlvdSBpbiBUaGUgRHVrZQ');
  assert.equal(evalDefault(message('Beer?'), ctx({ roomMemberCount: 11 }), { override: [beer] })?.rule.rule_id, '.m.rule.message');
  assert.equal(evalDefault(message('beers?'), ctx({ roomMemberCount: 3 }), { override: [beer] })?.rule.rule_id, '.m.rule.message');
});

test('a room rule with actions [] mutes that room (spec example), and so does legacy ["dont_notify"]', () => {
  const muted = '!dj234r78wl45Gh4D:matrix.org';
  const ev = { ...message('hi'), room_id: muted };
  for (const actions of [[], ['dont_notify']] as PushAction[][]) {
    const r = evalDefault(ev, ctx({ roomMemberCount: 2 }), { room: [{ rule_id: muted, actions }] });
    assert.equal(r?.rule.rule_id, muted);
    assert.deepEqual(r?.actions, []);
    assert.equal(actionsNotify(r!.actions), false);
  }
  // Other rooms are unaffected.
  assert.equal(evalDefault(message('hi'), ctx({ roomMemberCount: 2 }), { room: [{ rule_id: muted, actions: [] }] })?.rule.rule_id, '.m.rule.room_one_to_one');
  // Mentions are overrides: they still get through a muted room (override runs before room).
  const mention = { ...message('hi', { 'm.mentions': { user_ids: [ME] } }), room_id: muted };
  assert.equal(evalDefault(mention, ctx(), { room: [{ rule_id: muted, actions: [] }] })?.rule.rule_id, '.m.rule.is_user_mention');
});

test('a sender rule with actions [] mutes that user (spec example @spambot:matrix.org)', () => {
  const spam = message('BUY NOW', {}, '@spambot:matrix.org');
  const r = evalDefault(spam, ctx(), { sender: [{ rule_id: '@spambot:matrix.org', actions: [] }] });
  assert.equal(r?.rule.rule_id, '@spambot:matrix.org');
  assert.equal(actionsNotify(r!.actions), false);
  assert.equal(evalDefault(message('hello'), ctx(), { sender: [{ rule_id: '@spambot:matrix.org', actions: [] }] })?.rule.rule_id, '.m.rule.message');
});

test('mergeWithDefaults: master first, then user overrides, then the other default overrides', () => {
  const merged = mergeWithDefaults(
    {
      override: [
        { rule_id: 'mine1', conditions: [], actions: ['notify'] },
        { rule_id: 'mine2', conditions: [], actions: [] },
      ],
      underride: [{ rule_id: 'low', conditions: [], actions: ['notify'] }],
      content: [{ rule_id: 'kw', pattern: 'cake', actions: ['notify'] }],
      room: [{ rule_id: ROOM, actions: [] }],
      sender: [{ rule_id: '@bob:example.com', actions: [] }],
    },
    ME,
  );
  assert.deepEqual(merged.override.map((r) => r.rule_id), ['.m.rule.master', 'mine1', 'mine2', ...EXPECTED_OVERRIDE.slice(1)]);
  assert.deepEqual(merged.underride.map((r) => r.rule_id), ['low', ...EXPECTED_UNDERRIDE]);
  assert.deepEqual(merged.content.map((r) => r.rule_id), ['kw']);
  assert.deepEqual(merged.room.map((r) => r.rule_id), [ROOM]);
  assert.deepEqual(merged.sender.map((r) => r.rule_id), ['@bob:example.com']);
  for (const r of [...merged.override, ...merged.underride]) assert.equal(r.default, r.rule_id.startsWith('.'), r.rule_id);
  // User overrides win over server-default overrides: a notifying override beats suppress_notices.
  const loudNotices = mergeWithDefaults(
    { override: [{ rule_id: 'notices', conditions: [{ kind: 'event_match', key: 'content.msgtype', pattern: 'm.notice' }], actions: ['notify'] }] },
    ME,
  );
  assert.equal(evaluatePushRules(loudNotices, message('beep', { msgtype: 'm.notice' }), ctx())?.rule.rule_id, 'notices');
});

test('mergeWithDefaults: user changes to enabled/actions of default rules apply; stale default ids are dropped', () => {
  const merged = mergeWithDefaults(
    {
      override: [
        { rule_id: '.m.rule.suppress_notices', enabled: false },
        { rule_id: '.m.rule.contains_display_name', actions: ['notify'] }, // removed in v1.17
        // Only enabled/actions may change: conditions are ignored.
        { rule_id: '.m.rule.reaction', conditions: [{ kind: 'event_match', key: 'type', pattern: 'nothing' }] },
      ],
      underride: [{ rule_id: '.m.rule.message', actions: ['notify', { set_tweak: 'sound', value: 'ping' }, 'coalesce'] }],
      content: [{ rule_id: '.m.rule.contains_user_name', pattern: 'alice', actions: ['notify'] }],
    },
    ME,
  );
  assert.deepEqual(merged.override.map((r) => r.rule_id), EXPECTED_OVERRIDE);
  assert.deepEqual(merged.content, []);
  assert.equal(merged.override.find((r) => r.rule_id === '.m.rule.suppress_notices')?.enabled, false);
  const msgRule = merged.underride.find((r) => r.rule_id === '.m.rule.message')!;
  assert.deepEqual(msgRule.actions, ['notify', { set_tweak: 'sound', value: 'ping' }]);
  assert.equal(msgRule.default, true);
  // Notices now fall through to .m.rule.message with the user's sound.
  const r = evaluatePushRules(merged, message('beep', { msgtype: 'm.notice' }), ctx());
  assert.equal(r?.rule.rule_id, '.m.rule.message');
  assert.equal(actionsSound(r!.actions), 'ping');
  const reaction = { type: 'm.reaction', room_id: ROOM, sender: '@bob:example.com', content: {} };
  assert.equal(evaluatePushRules(merged, reaction, ctx())?.rule.rule_id, '.m.rule.reaction');
});

test('mergeWithDefaults: user rules default to enabled, keep disabled ones, and are copies', () => {
  const stored: UserPushRule = { rule_id: 'x', conditions: [{ kind: 'event_match', key: 'type', pattern: 'm.room.message' }], actions: ['notify'] };
  const merged = mergeWithDefaults({ override: [stored, { rule_id: 'off', enabled: false, conditions: [], actions: [] }] }, ME);
  assert.equal(merged.override[1]!.enabled, true);
  assert.equal(merged.override[2]!.enabled, false);
  merged.override[1]!.conditions![0]!.pattern = 'changed';
  assert.equal(stored.conditions![0]!.pattern, 'm.room.message');
});

// ---------------------------------------------------------------------------------------------------
// Actions

test('actions: notify, highlight (no value = true), sound, tweaks; historical actions stripped', () => {
  assert.equal(actionsNotify(['notify']), true);
  assert.equal(actionsNotify([]), false);
  assert.equal(actionsNotify(['dont_notify']), false);
  assert.equal(actionsHighlight([{ set_tweak: 'highlight' }]), true);
  assert.equal(actionsHighlight([{ set_tweak: 'highlight', value: true }]), true);
  assert.equal(actionsHighlight([{ set_tweak: 'highlight', value: false }]), false);
  assert.equal(actionsHighlight(['notify']), false); // no highlight tweak at all: false
  assert.equal(actionsHighlight([{ set_tweak: 'highlight', value: 'yes' }]), false);
  assert.equal(actionsSound([{ set_tweak: 'sound', value: 'default' }]), 'default');
  assert.equal(actionsSound(['notify']), null);
  assert.deepEqual(
    tweaksFromActions(['notify', { set_tweak: 'sound', value: 'ring' }, { set_tweak: 'highlight' }, { set_tweak: 'org.example.led', value: 'blue' }]),
    { sound: 'ring', highlight: true, 'org.example.led': 'blue' },
  );
  // The push_ruleset.yaml example spells "no highlight" as value false.
  assert.deepEqual(tweaksFromActions([{ set_tweak: 'highlight', value: false }]), { highlight: false });
  assert.deepEqual(stripHistoricalActions(['dont_notify']), []);
  assert.deepEqual(stripHistoricalActions(['notify', 'coalesce', { set_tweak: 'sound', value: 'x' }]), ['notify', { set_tweak: 'sound', value: 'x' }]);
  // Evaluation strips them too.
  const rs = emptyRuleset();
  rs.override.push(rule('legacy', ['notify', 'coalesce'], { conditions: [] }));
  assert.deepEqual(evaluatePushRules(rs, message('x'), ctx())?.actions, ['notify']);
});
