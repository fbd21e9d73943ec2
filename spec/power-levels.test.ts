// Power levels: value formats per room version, defaults, creators, helpers, and the auth rules for
// changing m.room.power_levels (rule "If type is m.room.power_levels").

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { IdentifiedPdu, JsonObject, StateMap } from './events.ts';
import { stateKey } from './events.ts';
import {
  canBan,
  canInvite,
  canKick,
  canNotify,
  canRedact,
  canSendEvent,
  canUnban,
  getNotificationPowerLevel,
  getPowerLevelsContent,
  getRequiredPowerLevel,
  getRoomCreators,
  getUserPowerLevel,
  isValidServerName,
  isValidUserId,
  parsePowerLevelValue,
} from './power-levels.ts';
import { getRoomVersion } from './room-versions.ts';
import type { RoomVersion } from './room-versions.ts';
import {
  ALICE,
  ALL_VERSIONS,
  BOB,
  CAROL,
  DAVE,
  TestRoom,
  assertAllowed,
  assertRejected,
  versionsBefore,
  versionsFrom,
} from './auth-rules.test-room.ts';

const rv = (id: string): RoomVersion => getRoomVersion(id)!;
const plSpec = (sender: string, content: JsonObject) => ({ type: 'm.room.power_levels', sender, state_key: '', content });
/** Alice's own entry: creators are never listed in v12. */
const admin = (v: string): JsonObject => (v === '12' ? {} : { [ALICE]: 100 });

describe('parsePowerLevelValue', () => {
  it('v1–v5: integers, integer strings (whitespace, sign, leading zeroes) and truncated floats', () => {
    for (const v of versionsBefore(6)) {
      const r = rv(v);
      assert.equal(parsePowerLevelValue(r, 50), 50);
      assert.equal(parsePowerLevelValue(r, '100'), 100);
      assert.equal(parsePowerLevelValue(r, '000100'), 100);
      assert.equal(parsePowerLevelValue(r, ' +100 '), 100);
      assert.equal(parsePowerLevelValue(r, ' -0100\t'), -100);
      assert.equal(parsePowerLevelValue(r, 50.57), 50);
      assert.equal(parsePowerLevelValue(r, -1.5), -1);
      assert.equal(parsePowerLevelValue(r, 5.114698e4), 51146);
      for (const bad of ['1.5', '1e3', '0x10', '', ' ', '+-1', '10 0', null, true, [], {}, Infinity, NaN]) {
        assert.equal(parsePowerLevelValue(r, bad), undefined, `v${v}: ${JSON.stringify(bad)}`);
      }
    }
  });
  it('v6–v9: integers and integer strings, no floats', () => {
    for (const v of ['6', '7', '8', '9']) {
      const r = rv(v);
      assert.equal(parsePowerLevelValue(r, '42'), 42);
      assert.equal(parsePowerLevelValue(r, 42), 42);
      assert.equal(parsePowerLevelValue(r, 42.5), undefined);
      assert.equal(parsePowerLevelValue(r, 2 ** 53), undefined, 'outside the canonical JSON range');
    }
  });
  it('v10+: integers only', () => {
    for (const v of versionsFrom(10)) {
      const r = rv(v);
      assert.equal(parsePowerLevelValue(r, 42), 42);
      assert.equal(parsePowerLevelValue(r, -42), -42);
      assert.equal(parsePowerLevelValue(r, '42'), undefined);
      assert.equal(parsePowerLevelValue(r, 42.5), undefined);
    }
  });
});

describe('user ids and server names', () => {
  it('accepts historical localparts and server names with ports / IP literals', () => {
    for (const ok of ['@a:example.org', '@:example.org', '@Ünï:example.org', '@a:1.2.3.4:8448', '@a:[::1]', '@a:[1234:5678::abcd]:5678', '@a b:localhost']) {
      assert.ok(isValidUserId(ok), ok);
    }
    for (const bad of ['a:example.org', '@a', '@a:', '@a:exa_mple.org', '@a:example.org:', '@a:example.org:123456', '@a\u0000:x', '@a:[zz]', 5, null]) {
      assert.ok(!isValidUserId(bad), String(bad));
    }
    assert.ok(isValidServerName('matrix.org:8888'));
    assert.ok(!isValidServerName('[::1'));
  });
});

describe('defaults and creators', () => {
  for (const v of ALL_VERSIONS) {
    it(`v${v}: defaults without m.room.power_levels`, () => {
      const room = new TestRoom(v, { powerLevels: null });
      const r = room.rv;
      assert.equal(getUserPowerLevel(r, room.state, ALICE), v === '12' ? Infinity : 100);
      assert.equal(getUserPowerLevel(r, room.state, BOB), 0);
      assert.equal(getRequiredPowerLevel(r, room.state, 'm.room.topic', true), 50);
      assert.equal(getRequiredPowerLevel(r, room.state, 'm.room.message', false), 0);
      const pl = getPowerLevelsContent(r, room.state);
      assert.deepEqual(
        [pl.ban, pl.kick, pl.redact, pl.invite, pl.users_default, pl.events_default, pl.state_default, pl.present],
        [50, 50, 50, 0, 0, 0, 50, false],
      );
      assert.equal(getNotificationPowerLevel(r, room.state, 'room'), 50);
      assert.equal(getNotificationPowerLevel(r, room.state, 'other'), undefined);
    });

    it(`v${v}: with m.room.power_levels, users and users_default decide; the creator gets no default`, () => {
      const room = new TestRoom(v, { joinRule: null, powerLevels: { users: { [BOB]: 30 }, users_default: 5, events: { 'm.room.topic': 7 }, notifications: { room: 20 } } });
      const r = room.rv;
      assert.equal(getUserPowerLevel(r, room.state, ALICE), v === '12' ? Infinity : 5);
      assert.equal(getUserPowerLevel(r, room.state, BOB), 30);
      assert.equal(getUserPowerLevel(r, room.state, CAROL), 5);
      assert.equal(getRequiredPowerLevel(r, room.state, 'm.room.topic', true), 7);
      assert.equal(getRequiredPowerLevel(r, room.state, 'm.room.topic', false), 7, 'events applies whatever the kind');
      assert.equal(getNotificationPowerLevel(r, room.state, 'room'), 20);
    });
  }

  it('getRoomCreators per version', () => {
    const mk = (content: JsonObject): IdentifiedPdu => ({
      eventId: '$c',
      pdu: { type: 'm.room.create', state_key: '', sender: ALICE, content, prev_events: [], auth_events: [], origin_server_ts: 0, depth: 1 },
    });
    assert.deepEqual(getRoomCreators(rv('10'), mk({ creator: BOB })), [BOB]);
    assert.deepEqual(getRoomCreators(rv('11'), mk({ creator: BOB, additional_creators: [CAROL] })), [ALICE]);
    assert.deepEqual(getRoomCreators(rv('12'), mk({ additional_creators: [CAROL, ALICE] })), [ALICE, CAROL]);
    assert.deepEqual(getRoomCreators(rv('12'), undefined), []);
  });
});

describe('helpers', () => {
  for (const v of ALL_VERSIONS) {
    it(`v${v}: canSendEvent / canInvite / canKick / canBan / canUnban / canRedact / canNotify`, () => {
      const room = new TestRoom(v, {
        powerLevels: { users: { ...admin(v), [BOB]: 50, [CAROL]: 10 }, invite: 10, kick: 40, ban: 60, redact: 50, events: { 'm.room.redaction': 10 }, notifications: { room: 40 } },
      });
      const r = room.rv;
      const s = room.state;
      assert.ok(canSendEvent(r, s, BOB, 'm.room.topic', true));
      assert.ok(!canSendEvent(r, s, CAROL, 'm.room.topic', true));
      assert.ok(canSendEvent(r, s, CAROL, 'm.room.message', false));
      assert.ok(canInvite(r, s, CAROL));
      assert.ok(!canInvite(r, s, DAVE));
      assert.ok(canKick(r, s, BOB, CAROL));
      assert.ok(!canKick(r, s, CAROL, DAVE), 'below the kick level');
      assert.ok(!canKick(r, s, BOB, ALICE));
      assert.ok(!canBan(r, s, BOB, CAROL), 'below the ban level');
      assert.ok(canBan(r, s, ALICE, BOB));
      assert.ok(!canUnban(r, s, BOB, CAROL));
      assert.ok(canUnban(r, s, ALICE, CAROL));
      assert.ok(canRedact(r, s, CAROL, CAROL), 'own event: the m.room.redaction level only');
      assert.ok(!canRedact(r, s, CAROL, BOB), "another's event needs the redact level");
      assert.ok(canRedact(r, s, BOB, CAROL));
      assert.ok(!canRedact(r, s, DAVE, DAVE), 'below the m.room.redaction level');
      assert.ok(canNotify(r, s, BOB, 'room'));
      assert.ok(!canNotify(r, s, CAROL, 'room'));
      assert.ok(!canNotify(r, s, BOB, 'unknown'));
    });
  }
});

describe('m.room.power_levels: value formats', () => {
  for (const v of versionsBefore(10)) {
    it(`v${v}: string values are accepted`, () => {
      const room = new TestRoom(v, { powerLevels: null });
      const content = { ban: '50', events: { 'm.room.name': '100' }, events_default: '0', state_default: ' 50 ', users: { [ALICE]: '100' }, users_default: '0' };
      assertAllowed(room.try(plSpec(ALICE, content)));
      room.send(plSpec(ALICE, content));
      assert.equal(getUserPowerLevel(room.rv, room.state, ALICE), 100);
      assert.equal(getRequiredPowerLevel(room.rv, room.state, 'm.room.name', true), 100);
      assertRejected(room.try(plSpec(ALICE, { users: { [ALICE]: 'lots' } })), 'power_levels.users');
      assertRejected(room.try(plSpec(ALICE, { users: { [ALICE]: 100 }, ban: 'x' })), 'power_levels.invalid_value');
      assertRejected(room.try(plSpec(ALICE, { users: { [ALICE]: 100 }, events: { a: 'x' } })), 'power_levels.invalid_value');
      assertRejected(room.try(plSpec(ALICE, { users: { [ALICE]: 100 }, events: 5 })), 'power_levels.invalid_value');
    });
  }
  for (const v of versionsFrom(10)) {
    it(`v${v}: only integers — string values are rejected`, () => {
      const room = new TestRoom(v, { powerLevels: null });
      const users = admin(v);
      assertAllowed(room.try(plSpec(ALICE, { users, ban: 50 })));
      assertRejected(room.try(plSpec(ALICE, { users, ban: '50' })), 'power_levels.not_integer');
      for (const k of ['users_default', 'events_default', 'state_default', 'ban', 'redact', 'kick', 'invite']) {
        assertRejected(room.try(plSpec(ALICE, { users, [k]: '0' })), 'power_levels.not_integer', k);
        assertRejected(room.try(plSpec(ALICE, { users, [k]: null })), 'power_levels.not_integer', `${k} null`);
      }
      assertRejected(room.try(plSpec(ALICE, { users, events: { 'm.room.name': '100' } })), 'power_levels.not_integer');
      assertRejected(room.try(plSpec(ALICE, { users, events: [] })), 'power_levels.not_integer');
      assertRejected(room.try(plSpec(ALICE, { users, notifications: { room: '50' } })), 'power_levels.not_integer');
      assertRejected(room.try(plSpec(ALICE, { users: { ...users, [BOB]: '10' } })), 'power_levels.users');
      assertRejected(room.try(plSpec(ALICE, { users: { ...users, [BOB]: 10.5 } })), 'power_levels.users');
    });
  }
  for (const v of versionsBefore(6)) {
    it(`v${v}: floats are truncated`, () => {
      const room = new TestRoom(v, { powerLevels: null, joinRule: 'public' });
      room.send(plSpec(ALICE, { users: { [ALICE]: 100, [BOB]: 50.57 } }));
      assert.equal(getUserPowerLevel(room.rv, room.state, BOB), 50);
    });
  }
  for (const v of ['6', '7', '8', '9']) {
    it(`v${v}: floats are not valid levels`, () => {
      const room = new TestRoom(v, { powerLevels: null });
      assertRejected(room.try(plSpec(ALICE, { users: { [ALICE]: 100, [BOB]: 50.5 } })), 'power_levels.users');
    });
  }
  for (const v of ALL_VERSIONS) {
    it(`v${v}: users must be an object keyed by valid user ids`, () => {
      const room = new TestRoom(v, { powerLevels: null });
      assertRejected(room.try(plSpec(ALICE, { users: [] })), 'power_levels.users');
      assertRejected(room.try(plSpec(ALICE, { users: { 'bob:example.org': 10 } })), 'power_levels.users');
      assertRejected(room.try(plSpec(ALICE, { users: { '@bob': 10 } })), 'power_levels.users');
      assertAllowed(room.try(plSpec(ALICE, {})), 'users may be absent');
    });
  }
});

describe('m.room.power_levels: changes', () => {
  for (const v of ALL_VERSIONS) {
    it(`v${v}: the first power levels event is allowed (after the value checks)`, () => {
      const room = new TestRoom(v, { powerLevels: null, joinRule: 'public' });
      room.join(BOB);
      assertRejected(room.try(plSpec(BOB, { users: { [BOB]: 100 } })), 'power.required_level', 'state_default 50 without power levels');
      assertAllowed(room.try(plSpec(ALICE, { users: { ...admin(v), [BOB]: 100 }, ban: 1000 })), 'no previous event: anything goes');
    });

    it(`v${v}: scalar properties cannot be changed from or to above the sender's level`, () => {
      const base = { users: { ...admin(v), [BOB]: 50 }, ban: 50, kick: 60 };
      const room = new TestRoom(v, { powerLevels: base, joinRule: 'public' });
      room.join(BOB);
      const bob = (c: JsonObject) => room.try(plSpec(BOB, { ...base, state_default: 50, ...c }));
      room.setPowerLevels({ ...base, state_default: 50 });
      assertAllowed(bob({ ban: 40 }), 'lowering a value at own level');
      assertAllowed(bob({ invite: 50 }), 'adding at own level');
      assertRejected(bob({ invite: 51 }), 'power_levels.raise_above_own');
      assertRejected(bob({ ban: 51 }), 'power_levels.raise_above_own');
      assertRejected(bob({ kick: 50 }), 'power_levels.change_above_own', 'kick is 60 now');
      const { kick: _, ...withoutKick } = { ...base, state_default: 50 };
      assertRejected(room.try(plSpec(BOB, withoutKick)), 'power_levels.change_above_own', 'removing kick 60');
      assertAllowed(bob({ kick: 60 }), 'unchanged values above own level are fine');
    });

    it(`v${v}: events entries`, () => {
      const base = { users: { ...admin(v), [BOB]: 50 }, events: { 'm.room.name': 50, 'm.room.tombstone': 100 } };
      const room = new TestRoom(v, { powerLevels: base, joinRule: 'public' });
      room.join(BOB);
      const bob = (events: JsonObject) => room.try(plSpec(BOB, { ...base, events }));
      assertAllowed(bob({ ...base.events, 'm.room.name': 0, 'm.room.topic': 50 }));
      assertRejected(bob({ ...base.events, 'm.room.topic': 51 }), 'power_levels.raise_above_own');
      assertRejected(bob({ 'm.room.name': 50 }), 'power_levels.change_above_own', 'removing tombstone 100');
      assertRejected(bob({ ...base.events, 'm.room.tombstone': 50 }), 'power_levels.change_above_own');
    });

    it(`v${v}: users entries — no raising above own level, no changing users at or above own level`, () => {
      const base = { users: { ...admin(v), [BOB]: 50, [CAROL]: 50, [DAVE]: 10 } };
      const room = new TestRoom(v, { powerLevels: base, joinRule: 'public' });
      room.join(BOB);
      const bob = (users: JsonObject) => room.try(plSpec(BOB, { users: { ...base.users, ...users } }));
      assertAllowed(bob({ [DAVE]: 50 }), 'raising another to own level');
      assertRejected(bob({ [DAVE]: 51 }), 'power_levels.raise_above_own');
      assertRejected(bob({ [BOB]: 51 }), 'power_levels.raise_above_own', "can't raise above own level");
      assertAllowed(bob({ [BOB]: 10 }), 'demoting oneself');
      assertRejected(bob({ [CAROL]: 10 }), 'power_levels.user_at_or_above_own', 'peer at the same level');
      assertAllowed(bob({ '@new:example.org': 20 }));
      const { [DAVE]: _, ...withoutDave } = base.users;
      assertAllowed(room.try(plSpec(BOB, { users: withoutDave })), 'removing a lower user');
      const { [CAROL]: __, ...withoutCarol } = base.users;
      assertRejected(room.try(plSpec(BOB, { users: withoutCarol })), 'power_levels.user_at_or_above_own');
      if (v !== '12') assertRejected(bob({ [ALICE]: 0 }), 'power_levels.user_at_or_above_own', 'demoting the admin');
    });
  }

  for (const v of versionsFrom(6)) {
    it(`v${v}: notifications entries follow the events rules`, () => {
      const base = { users: { ...admin(v), [BOB]: 50 }, notifications: { room: 50, other: 70 } };
      const room = new TestRoom(v, { powerLevels: base, joinRule: 'public' });
      room.join(BOB);
      const bob = (notifications: JsonObject) => room.try(plSpec(BOB, { ...base, notifications }));
      assertAllowed(bob({ room: 20, other: 70 }));
      assertRejected(bob({ room: 51, other: 70 }), 'power_levels.raise_above_own');
      assertRejected(bob({ room: 50, other: 50 }), 'power_levels.change_above_own');
      assertRejected(bob({ room: 50 }), 'power_levels.change_above_own', 'removing other (70)');
    });
  }
  for (const v of versionsBefore(6)) {
    it(`v${v}: notifications changes are not restricted`, () => {
      const base = { users: { [ALICE]: 100, [BOB]: 50 }, notifications: { room: 50, other: 70 } };
      const room = new TestRoom(v, { powerLevels: base, joinRule: 'public' });
      room.join(BOB);
      assertAllowed(room.try(plSpec(BOB, { ...base, notifications: { room: 99 } })));
    });
  }
});

describe('state maps are read, not changed', () => {
  it('getUserPowerLevel does not mutate the state', () => {
    const room = new TestRoom('10');
    const before = JSON.stringify([...room.state.entries()]);
    const s: StateMap<IdentifiedPdu> = room.state;
    getUserPowerLevel(room.rv, s, ALICE);
    getPowerLevelsContent(room.rv, s);
    assert.equal(JSON.stringify([...room.state.entries()]), before);
    assert.ok(s.has(stateKey('m.room.power_levels', '')));
  });
});
