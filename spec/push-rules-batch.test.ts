// The batched evaluator (push-rules-batch.ts) gives exactly what evaluatePushRules gives per member.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { evaluatePushRules, mergeWithDefaults, type Ruleset, type UserRules } from './push-rules.ts';
import { evaluatePushRulesForTargets, type PushTarget, type SharedPushContext } from './push-rules-batch.ts';

const ROOM = '!room:hs';
const OTHER_ROOM = '!other:hs';

function users(): Array<{ userId: string; displayName: string | null; rules: UserRules }> {
  const list: Array<{ userId: string; displayName: string | null; rules: UserRules }> = [];
  // Plain defaults: these share one template.
  for (let i = 0; i < 6; i++) list.push({ userId: `@u${i}:hs`, displayName: i % 2 ? `User ${i}` : null, rules: {} });
  list.push({ userId: '@star*?:hs', displayName: 'Star', rules: {} }); // historical id with glob characters
  list.push({ userId: '@bob:hs', displayName: 'Bob', rules: {} });
  // Muted room (room rule without notify), muted sender, muted everything (master enabled).
  list.push({ userId: '@mute-room:hs', displayName: 'MR', rules: { room: [{ rule_id: ROOM, actions: [] }] } });
  list.push({ userId: '@mute-sender:hs', displayName: null, rules: { sender: [{ rule_id: '@loud:hs', actions: [] }] } });
  list.push({ userId: '@master:hs', displayName: null, rules: { override: [{ rule_id: '.m.rule.master', enabled: true }] } });
  // Overridden defaults: messages silent, mentions without highlight, tombstone disabled.
  list.push({
    userId: '@quiet:hs',
    displayName: 'Quiet',
    rules: {
      underride: [{ rule_id: '.m.rule.message', actions: [] }],
      override: [
        { rule_id: '.m.rule.is_user_mention', actions: ['notify', 'dont_notify'] },
        { rule_id: '.m.rule.tombstone', enabled: false },
      ],
    },
  });
  // Own rules: a keyword, a display-name rule, a rule naming the user's own id and one naming someone else's.
  list.push({
    userId: '@keen:hs',
    displayName: 'Keen One',
    rules: {
      content: [{ rule_id: 'cake', pattern: 'cake*', actions: ['notify', { set_tweak: 'sound', value: 'cake.wav' }] }],
      override: [
        { rule_id: 'dn', conditions: [{ kind: 'contains_display_name' }], actions: ['notify', { set_tweak: 'highlight' }] },
        { rule_id: 'self-state', conditions: [{ kind: 'event_match', key: 'state_key', pattern: '@keen:hs' }, { kind: 'event_match', key: 'type', pattern: 'm.room.topic' }], actions: ['notify'] },
        { rule_id: 'bob-mention', conditions: [{ kind: 'event_property_contains', key: 'content.m\\.mentions.user_ids', value: '@bob:hs' }], actions: ['notify'] },
        { rule_id: 'broken', conditions: 'nope' as never, actions: ['notify'] },
        { rule_id: 'unknown', conditions: [{ kind: 'future_condition' }], actions: ['notify'] },
      ],
      underride: [{ rule_id: 'big', conditions: [{ kind: 'room_member_count', is: '>10' }, { kind: 'event_match', key: 'type', pattern: 'm.room.topic' }], actions: ['notify'] }],
    },
  });
  // The same own rules as a plain-defaults user would get, but with the user id in it: shares no template with @keen.
  list.push({
    userId: '@twin:hs',
    displayName: 'Keen One',
    rules: { override: [{ rule_id: 'self', conditions: [{ kind: 'event_property_is', key: 'content.target', value: '@twin:hs' }], actions: ['notify'] }] },
  });
  list.push({ userId: '@disabled-rule:hs', displayName: 'x', rules: { override: [{ rule_id: 'off', enabled: false, conditions: [], actions: ['notify'] }] } });
  return list;
}

function events(): object[] {
  const msg = (sender: string, content: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
    event_id: `$e${Math.random()}`,
    room_id: ROOM,
    type: 'm.room.message',
    sender,
    content: { msgtype: 'm.text', ...content },
    origin_server_ts: 1,
    ...extra,
  });
  const list: object[] = [
    msg('@loud:hs', { body: 'hello' }),
    msg('@loud:hs', { body: 'hello' }, { room_id: OTHER_ROOM }),
    msg('@other:hs', { body: 'I like cakes, User 1 and Bob and Keen One and Star' }),
    msg('@other:hs', { body: 'bob?', 'm.mentions': { user_ids: ['@bob:hs', '@u3:hs', '@quiet:hs', '@star*?:hs', 7] } }),
    msg('@other:hs', { body: 'everyone', 'm.mentions': { room: true } }),
    msg('@other:hs', { body: 'everyone', 'm.mentions': { room: 'true' } }),
    msg('@other:hs', { body: 'notice', msgtype: 'm.notice' }),
    msg('@other:hs', { body: 'edit', 'm.relates_to': { rel_type: 'm.replace', event_id: '$x' } }),
    msg('@other:hs', { body: 'no mentions', 'm.mentions': {} }),
    msg('@other:hs', { target: '@twin:hs', body: '' }),
    { event_id: '$enc', room_id: ROOM, type: 'm.room.encrypted', sender: '@other:hs', content: { algorithm: 'x' } },
    { event_id: '$call', room_id: ROOM, type: 'm.call.invite', sender: '@other:hs', content: {} },
    { event_id: '$react', room_id: ROOM, type: 'm.reaction', sender: '@other:hs', content: {} },
    { event_id: '$tomb', room_id: ROOM, type: 'm.room.tombstone', state_key: '', sender: '@other:hs', content: {} },
    { event_id: '$topic', room_id: ROOM, type: 'm.room.topic', state_key: '@keen:hs', sender: '@other:hs', content: { topic: 'x' } },
    { event_id: '$acl', room_id: ROOM, type: 'm.room.server_acl', state_key: '', sender: '@other:hs', content: {} },
    { event_id: '$other', room_id: ROOM, type: 'org.example', sender: '@other:hs', content: { body: 'Bob' } },
  ];
  for (const u of ['@u0:hs', '@bob:hs', '@keen:hs', '@star*?:hs', '@starXY:hs', '@u1:hs']) {
    list.push({ event_id: `$inv${u}`, room_id: ROOM, type: 'm.room.member', state_key: u, sender: '@other:hs', content: { membership: 'invite', displayname: 'D' } });
  }
  list.push({ event_id: '$join', room_id: ROOM, type: 'm.room.member', state_key: '@other:hs', sender: '@other:hs', content: { membership: 'join' } });
  return list;
}

const contexts: SharedPushContext[] = [
  { roomMemberCount: 2, senderPowerLevel: 0, notificationPowerLevels: { room: 50 } },
  { roomMemberCount: 50, senderPowerLevel: 50, notificationPowerLevels: { room: 50 } },
  { roomMemberCount: 50, senderPowerLevel: 100, notificationPowerLevels: { room: 100 } },
  { roomMemberCount: 11, senderPowerLevel: 0, notificationPowerLevels: {} },
];

test('batched push evaluation equals evaluatePushRules per member (defaults, overrides, mentions, display names, muting)', () => {
  const us = users();
  const targets: PushTarget[] = us.map((u) => ({ userId: u.userId, displayName: u.displayName, ruleset: mergeWithDefaults(u.rules, u.userId) }));
  let compared = 0;
  let notified = 0;
  for (let round = 0; round < 2; round++) {
    // Round two runs on the cached compilations.
    for (const shared of contexts) {
      for (const ev of events()) {
        const batched = evaluatePushRulesForTargets(ev, shared, targets);
        assert.equal(batched.length, targets.length);
        targets.forEach((t, i) => {
          const plain = evaluatePushRules(t.ruleset, ev, { ...shared, userId: t.userId, displayName: t.displayName });
          const got = batched[i]!;
          assert.deepEqual(got, plain, `${t.userId} on ${JSON.stringify(ev)} with ${JSON.stringify(shared)}`);
          // The very rule object of the user's ruleset, as evaluatePushRules returns.
          assert.equal(got?.rule, plain?.rule);
          compared++;
          if (got?.actions.includes('notify')) notified++;
        });
      }
    }
  }
  assert.ok(compared > 1000 && notified > 100, `compared ${compared}, notified ${notified}`);
});

test('batched push evaluation: an edited ruleset (a new object) takes effect at once; one target list may mix users sharing a ruleset shape', () => {
  const ev = { event_id: '$1', room_id: ROOM, type: 'm.room.message', sender: '@other:hs', content: { msgtype: 'm.text', body: 'hi' } };
  const shared: SharedPushContext = { roomMemberCount: 3, senderPowerLevel: 0, notificationPowerLevels: { room: 50 } };
  const before: Ruleset = mergeWithDefaults({}, '@a:hs');
  assert.deepEqual(evaluatePushRulesForTargets(ev, shared, [{ userId: '@a:hs', ruleset: before }])[0]?.actions, ['notify']);
  const after: Ruleset = mergeWithDefaults({ room: [{ rule_id: ROOM, actions: [] }] }, '@a:hs');
  const [a, b] = evaluatePushRulesForTargets(ev, shared, [
    { userId: '@a:hs', ruleset: after },
    { userId: '@b:hs', ruleset: mergeWithDefaults({}, '@b:hs') },
  ]);
  assert.deepEqual(a?.actions, []);
  assert.equal(a?.rule.rule_id, ROOM);
  assert.deepEqual(b?.actions, ['notify']);
  // A mention of @b only: the shared default template still tells the two apart.
  const mention = { ...ev, content: { ...ev.content, 'm.mentions': { user_ids: ['@b:hs'] } } };
  const r = evaluatePushRulesForTargets(mention, shared, [
    { userId: '@a:hs', ruleset: before },
    { userId: '@b:hs', ruleset: mergeWithDefaults({}, '@b:hs') },
  ]);
  assert.equal(r[0]?.rule.rule_id, '.m.rule.message');
  assert.equal(r[1]?.rule.rule_id, '.m.rule.is_user_mention');
});
