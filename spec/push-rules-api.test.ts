// Validation helpers for the push rules API (pushrules.yaml).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isValidRuleId, upsertUserRule, validateActions, validateCondition, validateRuleBody } from './push-rules.ts';
import type { PushRule } from './push-rules.ts';

test('validateRuleBody: the spec\'s example bodies are valid', () => {
  assert.equal(validateRuleBody('room', { actions: [] }, '!dj234r78wl45Gh4D:matrix.org'), null);
  assert.equal(validateRuleBody('sender', { actions: [] }, '@spambot:matrix.org'), null);
  assert.equal(
    validateRuleBody('content', { pattern: 'cake', actions: ['notify', { set_tweak: 'sound', value: 'cakealarm.wav' }] }, 'SSByZWFsbHkgbGlrZSBjYWtl'),
    null,
  );
  assert.equal(validateRuleBody('content', { pattern: 'cake*lie', actions: ['notify'] }, 'U3BvbmdlIGNha2UgaXMgYmVzdA'), null);
  assert.equal(
    validateRuleBody(
      'override',
      {
        conditions: [
          { kind: 'event_match', key: 'content.body', pattern: 'beer' },
          { kind: 'room_member_count', is: '<=10' },
        ],
        actions: ['notify', { set_tweak: 'sound', value: 'beeroclock.wav' }],
      },
      'U2VlIHlvdSBpbiBUaGUgRHVrZQ',
    ),
    null,
  );
  assert.equal(validateRuleBody('underride', { actions: ['notify'] }), null); // no conditions: always matches
});

test('validateRuleBody: actions must be an array of known actions', () => {
  assert.match(validateRuleBody('room', {}) ?? '', /actions/);
  assert.match(validateRuleBody('room', { actions: 'notify' }) ?? '', /actions/);
  assert.match(validateRuleBody('room', { actions: ['notify', 'explode'] }) ?? '', /unknown action/);
  assert.notEqual(validateRuleBody('room', { actions: [42] }), null);
  assert.notEqual(validateRuleBody('room', { actions: [{ sound: 'x' }] }), null);
  assert.notEqual(validateRuleBody('room', { actions: [{ set_tweak: 5 }] }), null);
  assert.notEqual(validateRuleBody('room', { actions: [null] }), null);
  // Historical actions are accepted (and ignored when evaluating).
  assert.equal(validateRuleBody('room', { actions: ['dont_notify'] }), null);
  assert.equal(validateRuleBody('room', { actions: ['coalesce', 'notify'] }), null);
  // Custom tweaks pass through.
  assert.equal(validateRuleBody('room', { actions: ['notify', { set_tweak: 'org.example.led', value: { colour: 'red' } }] }), null);
  assert.notEqual(validateRuleBody('room', null), null);
  assert.notEqual(validateRuleBody('room', []), null);
  assert.equal(validateActions(['notify', { set_tweak: 'highlight' }]), null);
  assert.notEqual(validateActions('notify'), null);
  assert.notEqual(validateActions(['nope']), null);
});

test('validateRuleBody: pattern required for content (and only there); conditions only for override/underride', () => {
  assert.match(validateRuleBody('content', { actions: [] }) ?? '', /pattern/);
  assert.match(validateRuleBody('content', { actions: [], pattern: 5 }) ?? '', /pattern/);
  assert.match(validateRuleBody('override', { actions: [], pattern: 'x' }) ?? '', /pattern/);
  for (const kind of ['content', 'room', 'sender'] as const) {
    const body: Record<string, unknown> = { actions: [], conditions: [] };
    if (kind === 'content') body.pattern = 'x';
    assert.match(validateRuleBody(kind, body) ?? '', /conditions/, kind);
  }
  assert.equal(validateRuleBody('override', { actions: [], conditions: [] }), null);
  assert.equal(validateRuleBody('underride', { actions: [], conditions: [] }), null);
  assert.match(validateRuleBody('override', { actions: [], conditions: {} }) ?? '', /conditions/);
  assert.notEqual(validateRuleBody('nonsense' as never, { actions: [] }), null);
});

test('validateRuleBody: conditions are checked by kind; unknown kinds are stored as-is', () => {
  const ok = (c: unknown) => validateRuleBody('override', { actions: [], conditions: [c] });
  assert.equal(ok({ kind: 'event_match', key: 'type', pattern: 'm.room.message' }), null);
  assert.notEqual(ok({ kind: 'event_match', key: 'type' }), null);
  assert.notEqual(ok({ kind: 'event_match', pattern: 'x' }), null);
  assert.equal(ok({ kind: 'event_property_is', key: 'content.m\\.federate', value: true }), null);
  assert.equal(ok({ kind: 'event_property_is', key: 'content.x', value: null }), null);
  assert.notEqual(ok({ kind: 'event_property_is', key: 'content.x' }), null); // value missing
  assert.notEqual(ok({ kind: 'event_property_is', key: 'content.x', value: 1.5 }), null);
  assert.notEqual(ok({ kind: 'event_property_is', key: 'content.x', value: 2 ** 53 }), null);
  assert.notEqual(ok({ kind: 'event_property_contains', key: 'content.x', value: ['a'] }), null);
  assert.equal(ok({ kind: 'event_property_contains', key: 'content.alt_aliases', value: '#a:b' }), null);
  assert.equal(ok({ kind: 'room_member_count', is: '>=3' }), null);
  assert.notEqual(ok({ kind: 'room_member_count', is: 'lots' }), null);
  assert.notEqual(ok({ kind: 'room_member_count', is: 2 }), null);
  assert.equal(ok({ kind: 'sender_notification_permission', key: 'room' }), null);
  assert.notEqual(ok({ kind: 'sender_notification_permission' }), null);
  assert.equal(ok({ kind: 'contains_display_name' }), null);
  assert.equal(ok({ kind: 'org.example.future', whatever: 1 }), null);
  assert.notEqual(ok({ key: 'type' }), null);
  assert.notEqual(ok('event_match'), null);
  assert.equal(validateCondition({ kind: 'event_match', key: 'type', pattern: '*' }), null);
});

test('isValidRuleId: leading "." reserved; "/" and "\\" refused; room/sender ids are room/user ids', () => {
  assert.equal(isValidRuleId('override', 'nocake'), true);
  assert.equal(isValidRuleId('content', 'SSByZWFsbHkgbGlrZSBjYWtl'), true);
  assert.equal(isValidRuleId('override', '.m.rule.master'), false);
  assert.equal(isValidRuleId('underride', '.custom'), false);
  assert.equal(isValidRuleId('override', 'a/b'), false);
  assert.equal(isValidRuleId('override', 'a\\b'), false);
  assert.equal(isValidRuleId('override', ''), false);

  assert.equal(isValidRuleId('room', '!dj234r78wl45Gh4D:matrix.org'), true);
  assert.equal(isValidRuleId('room', '!31hneApxJ_1o-63DmFrpeqnkFfWppnzWso1JvH3ogLM'), true); // v12-style room id
  assert.equal(isValidRuleId('room', 'nocake'), false);
  assert.equal(isValidRuleId('room', '@spambot:matrix.org'), false);
  assert.equal(isValidRuleId('room', '!'), false);
  assert.equal(isValidRuleId('room', '!a b:example.org'), false);
  assert.equal(isValidRuleId('room', `!${'a'.repeat(255)}`), false);

  assert.equal(isValidRuleId('sender', '@spambot:matrix.org'), true);
  assert.equal(isValidRuleId('sender', '@a/b:example.org'), true); // "/" is in the user id grammar
  assert.equal(isValidRuleId('sender', '@bob:[::1]:8448'), true);
  assert.equal(isValidRuleId('sender', 'spambot'), false);
  assert.equal(isValidRuleId('sender', '@spambot'), false);
  assert.equal(isValidRuleId('sender', '@:matrix.org'), false);
  assert.equal(isValidRuleId('sender', '!room:matrix.org'), false);

  assert.match(validateRuleBody('room', { actions: [] }, '.m.rule.master') ?? '', /reserved/);
  assert.match(validateRuleBody('room', { actions: [] }, 'nocake') ?? '', /room id/);
  assert.match(validateRuleBody('sender', { actions: [] }, '!x:y') ?? '', /user id/);
  assert.match(validateRuleBody('override', { actions: [] }, 'a/b') ?? '', /rule_id/);
});

test('upsertUserRule: new rules go first; before/after place; updates keep place and enabled', () => {
  const r = (id: string, enabled = true): PushRule => ({ rule_id: id, default: false, enabled, actions: [], pattern: id });
  const list = [r('a'), r('b', false), r('c')];
  const ids = (x: PushRule[] | { error: string }) => {
    assert.ok(Array.isArray(x), JSON.stringify(x));
    return x.map((y) => y.rule_id);
  };
  // Created with neither: the most important user rule of its kind, enabled.
  const created = upsertUserRule(list, { rule_id: 'new', actions: ['notify'], pattern: 'n' });
  assert.deepEqual(ids(created), ['new', 'a', 'b', 'c']);
  assert.equal((created as PushRule[])[0]!.enabled, true);
  assert.equal((created as PushRule[])[0]!.default, false);
  // before: next-most important relative to it; after: next-less important.
  assert.deepEqual(ids(upsertUserRule(list, { rule_id: 'new', actions: [] }, { before: 'c' })), ['a', 'b', 'new', 'c']);
  assert.deepEqual(ids(upsertUserRule(list, { rule_id: 'new', actions: [] }, { after: 'a' })), ['a', 'new', 'b', 'c']);
  assert.deepEqual(ids(upsertUserRule(list, { rule_id: 'new', actions: [] }, { after: 'c' })), ['a', 'b', 'c', 'new']);
  // Both: positioned by before.
  assert.deepEqual(ids(upsertUserRule(list, { rule_id: 'new', actions: [] }, { before: 'b', after: 'c' })), ['a', 'new', 'b', 'c']);
  // Updating keeps position and enabled state, replaces parameters.
  const updated = upsertUserRule(list, { rule_id: 'b', actions: ['notify'], pattern: 'bb' });
  assert.deepEqual(ids(updated), ['a', 'b', 'c']);
  assert.equal((updated as PushRule[])[1]!.enabled, false);
  assert.equal((updated as PushRule[])[1]!.pattern, 'bb');
  assert.deepEqual((updated as PushRule[])[1]!.actions, ['notify']);
  // Moving an existing rule.
  assert.deepEqual(ids(upsertUserRule(list, { rule_id: 'a', actions: [] }, { after: 'c' })), ['b', 'c', 'a']);
  // Unknown anchors and server-default anchors are errors.
  assert.deepEqual(upsertUserRule(list, { rule_id: 'new', actions: [] }, { before: 'someRuleId' }), { error: 'before/after rule not found: someRuleId' });
  assert.ok('error' in (upsertUserRule(list, { rule_id: 'new', actions: [] }, { after: '.m.rule.message' }) as object));
  // The input list is untouched.
  assert.deepEqual(list.map((x) => x.rule_id), ['a', 'b', 'c']);
});
