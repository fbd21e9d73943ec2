import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Pdu } from './events.ts';
import { redactEvent } from './redaction.ts';
import { getRoomVersion, type RoomVersion } from './room-versions.ts';

const rv = (id: string): RoomVersion => getRoomVersion(id)!;
const ALL = ['1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11', '12'];

function event(type: string, content: Record<string, unknown>, extra: Record<string, unknown> = {}): Pdu {
  return {
    event_id: '$ev:example.org',
    type,
    room_id: '!room:example.org',
    sender: '@alice:example.org',
    state_key: '',
    content: content as Pdu['content'],
    hashes: { sha256: 'aGFzaA' },
    signatures: { 'example.org': { 'ed25519:1': 'c2ln' } },
    depth: 5,
    prev_events: ['$p'],
    prev_state: [],
    auth_events: ['$a'],
    origin: 'example.org',
    origin_server_ts: 1234,
    membership: 'join',
    unsigned: { age: 5 },
    extra_top_level: 'gone',
    ...extra,
  } as Pdu;
}

test('top level: v1–v10 keep origin, membership, prev_state; v11+ do not; unsigned never kept', () => {
  const e = event('m.room.message', { body: 'hi' });
  for (const id of ALL) {
    const r = redactEvent(e, rv(id));
    const keys = Object.keys(r).sort();
    const common = ['auth_events', 'content', 'depth', 'event_id', 'hashes', 'origin_server_ts', 'prev_events', 'room_id', 'sender', 'signatures', 'state_key', 'type'];
    const expected = Number(id) <= 10 ? [...common, 'membership', 'origin', 'prev_state'].sort() : common;
    assert.deepEqual(keys, expected, `room v${id}`);
    assert.deepEqual(r.content, {}, `room v${id}`);
  }
});

test('redaction returns a new object and never mutates its input', () => {
  const e = event('m.room.member', { membership: 'join', displayname: 'Alice' });
  const before = structuredClone(e);
  const r = redactEvent(e, rv('11'));
  assert.notEqual(r, e);
  assert.notEqual(r.content, e.content);
  assert.deepEqual(e, before);
});

test('m.room.member: membership everywhere; join_authorised_via_users_server from v9; third_party_invite.signed from v11', () => {
  const content = {
    membership: 'join',
    displayname: 'Alice',
    avatar_url: 'mxc://x/y',
    join_authorised_via_users_server: '@bob:example.org',
    third_party_invite: { display_name: 'a***@e***', signed: { mxid: '@alice:example.org', token: 't', signatures: {} } },
  };
  const e = event('m.room.member', content, { state_key: '@alice:example.org' });
  for (const id of ['1', '5', '6', '7', '8']) assert.deepEqual(redactEvent(e, rv(id)).content, { membership: 'join' }, `v${id}`);
  for (const id of ['9', '10']) {
    assert.deepEqual(redactEvent(e, rv(id)).content, { membership: 'join', join_authorised_via_users_server: '@bob:example.org' }, `v${id}`);
  }
  for (const id of ['11', '12']) {
    assert.deepEqual(
      redactEvent(e, rv(id)).content,
      {
        membership: 'join',
        join_authorised_via_users_server: '@bob:example.org',
        third_party_invite: { signed: { mxid: '@alice:example.org', token: 't', signatures: {} } },
      },
      `v${id}`,
    );
  }
  // No `signed`: nothing of third_party_invite survives.
  const noSigned = event('m.room.member', { membership: 'invite', third_party_invite: { display_name: 'x' } });
  assert.deepEqual(redactEvent(noSigned, rv('11')).content, { membership: 'invite' });
});

test('m.room.create: only creator before v11, all content from v11', () => {
  const content = { creator: '@alice:example.org', room_version: '5', 'm.federate': false, predecessor: { room_id: '!old:x' } };
  const e = event('m.room.create', content);
  for (const id of ['1', '6', '9', '10']) assert.deepEqual(redactEvent(e, rv(id)).content, { creator: '@alice:example.org' }, `v${id}`);
  for (const id of ['11', '12']) assert.deepEqual(redactEvent(e, rv(id)).content, content, `v${id}`);
});

test('m.room.join_rules: allow kept from v8', () => {
  const content = { join_rule: 'restricted', allow: [{ type: 'm.room_membership', room_id: '!space:example.org' }], other: 1 };
  const e = event('m.room.join_rules', content);
  for (const id of ['1', '5', '6', '7']) assert.deepEqual(redactEvent(e, rv(id)).content, { join_rule: 'restricted' }, `v${id}`);
  for (const id of ['8', '9', '10', '11', '12']) {
    assert.deepEqual(redactEvent(e, rv(id)).content, { join_rule: 'restricted', allow: content.allow }, `v${id}`);
  }
});

test('m.room.power_levels: invite kept from v11', () => {
  const content = {
    ban: 50, events: { 'm.room.name': 50 }, events_default: 0, invite: 0, kick: 50, redact: 50,
    state_default: 50, users: { '@alice:example.org': 100 }, users_default: 0, notifications: { room: 50 },
  };
  const e = event('m.room.power_levels', content);
  const { invite: _i, notifications: _n, ...withoutInvite } = content;
  for (const id of ['1', '6', '8', '9', '10']) assert.deepEqual(redactEvent(e, rv(id)).content, withoutInvite, `v${id}`);
  const { notifications: _n2, ...withInvite } = content;
  for (const id of ['11', '12']) assert.deepEqual(redactEvent(e, rv(id)).content, withInvite, `v${id}`);
});

test('m.room.aliases: aliases kept only in rooms v1–v5 (v6 removed its special case)', () => {
  const e = event('m.room.aliases', { aliases: ['#a:example.org'] }, { state_key: 'example.org' });
  for (const id of ['1', '2', '3', '4', '5']) assert.deepEqual(redactEvent(e, rv(id)).content, { aliases: ['#a:example.org'] }, `v${id}`);
  for (const id of ['6', '7', '8', '9', '10', '11', '12']) assert.deepEqual(redactEvent(e, rv(id)).content, {}, `v${id}`);
});

test('m.room.history_visibility keeps history_visibility in every version', () => {
  const e = event('m.room.history_visibility', { history_visibility: 'shared', x: 1 });
  for (const id of ALL) assert.deepEqual(redactEvent(e, rv(id)).content, { history_visibility: 'shared' }, `v${id}`);
});

test('m.room.redaction: content.redacts kept from v11; top-level redacts never kept', () => {
  const e = event('m.room.redaction', { redacts: '$target', reason: 'spam' }, { redacts: '$target' });
  for (const id of ['1', '3', '9', '10']) {
    const r = redactEvent(e, rv(id));
    assert.deepEqual(r.content, {}, `v${id}`);
    assert.equal('redacts' in r, false, `v${id}`);
  }
  for (const id of ['11', '12']) {
    const r = redactEvent(e, rv(id));
    assert.deepEqual(r.content, { redacts: '$target' }, `v${id}`);
    assert.equal('redacts' in r, false, `v${id}`);
  }
});

test('keys kept only when present; malformed content becomes {}; absent content stays absent', () => {
  const r = redactEvent({ type: 'm.room.member', content: { displayname: 'x' }, sender: '@a:b' }, rv('10'));
  assert.deepEqual(r, { type: 'm.room.member', content: {}, sender: '@a:b' });
  assert.deepEqual(redactEvent({ type: 'm.room.create', content: 'nope' }, rv('11')), { type: 'm.room.create', content: {} });
  assert.deepEqual(redactEvent({ type: 'm.room.create' }, rv('11')), { type: 'm.room.create' });
  // Inherited properties are not "keys of the event".
  const proto = { membership: 'join' };
  const content = Object.create(proto) as Record<string, unknown>;
  assert.deepEqual(redactEvent({ type: 'm.room.member', content }, rv('1')).content, {});
});
