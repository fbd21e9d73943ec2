// Auth rules other than membership and power-level changes: m.room.create, the auth_events checks,
// m.federate, m.room.aliases (v1–v5), redactions (v1–v2), generic state/message events, v11 and v12 rules,
// and the state-resolution fixtures walked in order.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { IdentifiedPdu, JsonObject, Pdu, StateMap } from './events.ts';
import { refIds, stateKey } from './events.ts';
import {
  authEventsToStateMap,
  checkAuthEventsSelection,
  checkEventAuth,
  checkEventAuthWithAuthEvents,
  roomIdFromCreateEventId,
} from './auth-rules.ts';
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

function createEvent(v: string, over: Partial<Pdu> = {}, content: JsonObject = {}): IdentifiedPdu {
  const r = rv(v);
  const pdu: Pdu = {
    type: 'm.room.create',
    state_key: '',
    sender: ALICE,
    content: { room_version: v, ...(r.implicitRoomCreator ? {} : { creator: ALICE }), ...content },
    prev_events: [],
    auth_events: [],
    origin_server_ts: 0,
    depth: 1,
    ...(r.roomIdFromCreateEvent ? {} : { room_id: '!r:example.org' }),
    ...over,
  };
  return { eventId: r.eventIdFormat === 'v1' ? '$c:example.org' : '$c', pdu };
}

describe('m.room.create', () => {
  for (const v of ALL_VERSIONS) {
    const r = rv(v);
    it(`v${v}: a well-formed create event is allowed; prev_events reject it`, () => {
      assertAllowed(checkEventAuth(r, createEvent(v), new Map()));
      assertRejected(checkEventAuth(r, createEvent(v, { prev_events: ['$x'] }), new Map()), 'create.prev_events');
    });

    it(`v${v}: content.room_version must be a recognised version when present`, () => {
      assertRejected(checkEventAuth(r, createEvent(v, {}, { room_version: '99' }), new Map()), 'create.room_version');
      assertRejected(checkEventAuth(r, createEvent(v, {}, { room_version: 11 }), new Map()), 'create.room_version');
      const { room_version: _, ...noVersion } = createEvent(v).pdu.content;
      assertAllowed(checkEventAuth(r, createEvent(v, { content: noVersion }), new Map()), 'absent room_version is fine');
    });
  }

  for (const v of versionsBefore(12)) {
    it(`v${v}: the room id's domain must be the sender's`, () => {
      assertRejected(checkEventAuth(rv(v), createEvent(v, { room_id: '!r:other.example' }), new Map()), 'create.room_id_domain');
      assertRejected(checkEventAuth(rv(v), createEvent(v, { room_id: undefined }), new Map()), 'create.room_id_domain');
    });
  }

  for (const v of versionsBefore(11)) {
    it(`v${v}: content.creator is required`, () => {
      const { creator: _, ...noCreator } = createEvent(v).pdu.content;
      assertRejected(checkEventAuth(rv(v), createEvent(v, { content: noCreator }), new Map()), 'create.no_creator');
    });
  }

  for (const v of ['11', '12']) {
    it(`v${v}: no creator property is needed (the sender is the creator)`, () => {
      const ev = createEvent(v);
      assert.equal(Object.hasOwn(ev.pdu.content, 'creator'), false);
      assertAllowed(checkEventAuth(rv(v), ev, new Map()));
    });
  }

  it('v12: the create event must not have a room_id', () => {
    assertRejected(checkEventAuth(rv('12'), createEvent('12', { room_id: '!c' }), new Map()), 'create.room_id');
  });

  it('v12: additional_creators must be an array of valid user ids', () => {
    const r = rv('12');
    const check = (ac: unknown) => checkEventAuth(r, createEvent('12', {}, { additional_creators: ac as JsonObject }), new Map());
    assertAllowed(check([BOB, '@carol:example.org:8448', '@Historic_Ünicode:[::1]']));
    assertAllowed(check([]));
    assertRejected(check('@bob:example.org'), 'create.additional_creators');
    assertRejected(check([BOB, 7]), 'create.additional_creators');
    assertRejected(check(['bob:example.org']), 'create.additional_creators');
    assertRejected(check(['@bob']), 'create.additional_creators');
    assertRejected(check(['@bob:exa mple.org']), 'create.additional_creators');
    assertRejected(check([`@${'a'.repeat(250)}:example.org`]), 'create.additional_creators');
  });

  for (const v of versionsBefore(12)) {
    it(`v${v}: additional_creators is not validated`, () => {
      assertAllowed(checkEventAuth(rv(v), createEvent(v, {}, { additional_creators: 'nonsense' }), new Map()));
    });
  }
});

describe('auth_events checks (checkAuthEventsSelection)', () => {
  for (const v of ALL_VERSIONS) {
    it(`v${v}: exactly the selected auth events pass; duplicates, extras, rejected entries and other rooms fail`, () => {
      const room = new TestRoom(v, { joinRule: 'public' });
      room.join(BOB);
      const ev = room.make({ type: 'm.room.message', sender: BOB, content: { body: 'hi' } });
      const authOf = (ids: readonly string[]) => ids.map((id) => room.events.get(id)!);
      const good = authOf(ev.pdu.auth_events as string[]);
      assertAllowed(checkAuthEventsSelection(room.rv, ev, good));
      const pl = room.state.get(stateKey('m.room.power_levels', ''))!;
      const jr = room.state.get(stateKey('m.room.join_rules', ''))!;
      assertRejected(checkAuthEventsSelection(room.rv, ev, [...good, pl]), 'auth_events.duplicate');
      assertRejected(checkAuthEventsSelection(room.rv, ev, [...good, jr]), 'auth_events.unexpected', 'join rules are not selected for a message');
      const aliceJoin = room.state.get(stateKey('m.room.member', ALICE))!;
      assertRejected(checkAuthEventsSelection(room.rv, ev, [...good, aliceJoin]), 'auth_events.unexpected', "another user's membership");
      assertRejected(checkAuthEventsSelection(room.rv, ev, good, { isRejected: (id) => id === pl.eventId }), 'auth_events.rejected');
      assertAllowed(checkAuthEventsSelection(room.rv, ev, good, { isRejected: () => false }));
      const foreignPl: IdentifiedPdu = { eventId: '$foreign', pdu: { ...pl.pdu, room_id: '!elsewhere:example.org' } };
      assertRejected(
        checkAuthEventsSelection(room.rv, ev, good.map((e) => (e === pl ? foreignPl : e))),
        'auth_events.room_id',
      );
      const msg = room.make({ type: 'm.room.message', sender: BOB, content: {} });
      const notState: IdentifiedPdu = { eventId: '$m', pdu: { ...msg.pdu } };
      assertRejected(checkAuthEventsSelection(room.rv, ev, [...good, notState]), 'auth_events.unexpected');
    });
  }

  for (const v of versionsBefore(12)) {
    it(`v${v}: the create event must be among the auth events`, () => {
      const room = new TestRoom(v);
      const ev = room.make({ type: 'm.room.topic', sender: ALICE, state_key: '', content: { topic: 't' } });
      const auth = (ev.pdu.auth_events as string[]).map((id) => room.events.get(id)!);
      assert.ok(auth.some((e) => e.pdu.type === 'm.room.create'));
      const withoutCreate = auth.filter((e) => e.pdu.type !== 'm.room.create');
      assertRejected(checkAuthEventsSelection(room.rv, ev, withoutCreate), 'auth_events.no_create');
      assertRejected(checkEventAuth(room.rv, ev, authEventsToStateMap(withoutCreate)), 'auth_events.no_create');
    });
  }

  it('v12: the create event must NOT be among the auth events, but must be given as state', () => {
    const room = new TestRoom('12');
    const ev = room.make({ type: 'm.room.topic', sender: ALICE, state_key: '', content: { topic: 't' } });
    const auth = (ev.pdu.auth_events as string[]).map((id) => room.events.get(id)!);
    assert.ok(!auth.some((e) => e.pdu.type === 'm.room.create'));
    assertAllowed(checkAuthEventsSelection(room.rv, ev, auth));
    assertRejected(checkAuthEventsSelection(room.rv, ev, [...auth, room.create]), 'auth_events.unexpected');
    assertRejected(checkEventAuth(room.rv, ev, authEventsToStateMap(auth)), 'room_id.no_create');
    assertRejected(checkEventAuthWithAuthEvents(room.rv, ev, auth), 'room_id.no_create');
    assertAllowed(checkEventAuthWithAuthEvents(room.rv, ev, auth, { createEvent: room.create }));
  });

  it('the create event has no auth events', () => {
    const c = createEvent('10');
    assertAllowed(checkAuthEventsSelection(rv('10'), c, []));
    assertRejected(checkAuthEventsSelection(rv('10'), c, [c]), 'auth_events.unexpected');
  });

  for (const v of ALL_VERSIONS) {
    it(`v${v}: checkEventAuth rejects state from another room`, () => {
      const room = new TestRoom(v, { joinRule: 'public' });
      const ev = room.make({ type: 'm.room.message', sender: ALICE, content: {} });
      const state: StateMap<IdentifiedPdu> = new Map(room.state);
      const key = stateKey('m.room.member', ALICE);
      state.set(key, { ...state.get(key)!, pdu: { ...state.get(key)!.pdu, room_id: '!other:example.org' } });
      assertRejected(checkEventAuth(room.rv, ev, state), 'auth_events.room_id');
    });
  }
});

describe('m.federate', () => {
  for (const v of ALL_VERSIONS) {
    it(`v${v}: m.federate false keeps other servers' users out`, () => {
      const room = new TestRoom(v, { joinRule: 'public', createContent: { 'm.federate': false } });
      assertRejected(room.try({ type: 'm.room.member', sender: DAVE, state_key: DAVE, content: { membership: 'join' } }), 'federate');
      assertAllowed(room.try({ type: 'm.room.member', sender: BOB, state_key: BOB, content: { membership: 'join' } }));
      const open = new TestRoom(v, { joinRule: 'public', createContent: { 'm.federate': true } });
      assertAllowed(open.try({ type: 'm.room.member', sender: DAVE, state_key: DAVE, content: { membership: 'join' } }));
    });
  }
});

describe('m.room.aliases', () => {
  for (const v of versionsBefore(6)) {
    it(`v${v}: special case — any server may set its own aliases, members or not`, () => {
      const room = new TestRoom(v);
      assertAllowed(room.try({ type: 'm.room.aliases', sender: DAVE, state_key: 'other.example', content: { aliases: ['#a:other.example'] } }));
      assertRejected(room.try({ type: 'm.room.aliases', sender: DAVE, state_key: 'example.org', content: { aliases: [] } }), 'aliases.domain');
      assertRejected(room.try({ type: 'm.room.aliases', sender: ALICE, content: { aliases: [] } }), 'aliases.no_state_key');
    });
  }
  for (const v of versionsFrom(6)) {
    it(`v${v}: no special case — ordinary state event rules apply`, () => {
      const room = new TestRoom(v, { joinRule: 'public' });
      assertRejected(room.try({ type: 'm.room.aliases', sender: DAVE, state_key: 'other.example', content: { aliases: [] } }), 'sender.not_joined');
      room.join(BOB);
      assertRejected(room.try({ type: 'm.room.aliases', sender: BOB, state_key: 'example.org', content: { aliases: [] } }), 'power.required_level');
      assertAllowed(room.try({ type: 'm.room.aliases', sender: ALICE, state_key: 'other.example', content: { aliases: [] } }));
    });
  }
});

describe('other events: sender joined, required level, @ state keys', () => {
  for (const v of ALL_VERSIONS) {
    it(`v${v}: messages need a joined sender and events_default; state needs state_default`, () => {
      const users: JsonObject = v === '12' ? {} : { [ALICE]: 100 };
      const room = new TestRoom(v, { joinRule: 'public', powerLevels: { users, events_default: 0, state_default: 50, events: { 'm.room.name': 10, 'm.custom': 20 } } });
      assertRejected(room.try({ type: 'm.room.message', sender: BOB, content: {} }), 'sender.not_joined');
      room.join(BOB);
      assertAllowed(room.try({ type: 'm.room.message', sender: BOB, content: {} }));
      assertRejected(room.try({ type: 'm.room.topic', sender: BOB, state_key: '', content: {} }), 'power.required_level');
      assertRejected(room.try({ type: 'm.room.name', sender: BOB, state_key: '', content: {} }), 'power.required_level');
      assertRejected(room.try({ type: 'm.custom', sender: BOB, content: {} }), 'power.required_level', 'events overrides events_default');
      room.setPowerLevels({ users: { ...users, [BOB]: 10 }, events: { 'm.room.name': 10, 'm.custom': 20 } });
      assertAllowed(room.try({ type: 'm.room.name', sender: BOB, state_key: '', content: {} }));
      room.force(BOB, 'leave');
      assertRejected(room.try({ type: 'm.room.message', sender: BOB, content: {} }), 'sender.not_joined');
    });

    it(`v${v}: the required level is inclusive (level == required passes, one below fails)`, () => {
      const users: JsonObject = { ...(v === '12' ? {} : { [ALICE]: 100 }), [BOB]: 49, [CAROL]: 50 };
      const room = new TestRoom(v, { joinRule: 'public', powerLevels: { users } });
      room.join(BOB);
      room.join(CAROL);
      assertRejected(room.try({ type: 'm.room.topic', sender: BOB, state_key: '', content: {} }), 'power.required_level');
      assertAllowed(room.try({ type: 'm.room.topic', sender: CAROL, state_key: '', content: {} }));
    });

    it(`v${v}: state keys starting with @ belong to their user`, () => {
      const room = new TestRoom(v, { joinRule: 'public', powerLevels: { users: v === '12' ? {} : { [ALICE]: 100 }, state_default: 0 } });
      room.join(BOB);
      assertAllowed(room.try({ type: 'm.custom', sender: BOB, state_key: BOB, content: {} }));
      assertRejected(room.try({ type: 'm.custom', sender: BOB, state_key: ALICE, content: {} }), 'state_key.other_user');
      assertRejected(room.try({ type: 'm.custom', sender: ALICE, state_key: BOB, content: {} }), 'state_key.other_user', 'even for admins');
      assertAllowed(room.try({ type: 'm.custom', sender: BOB, state_key: 'x@y', content: {} }));
    });

    it(`v${v}: without m.room.power_levels the creator has 100 (v12: infinite), others 0`, () => {
      const room = new TestRoom(v, { joinRule: 'public', powerLevels: null });
      room.join(BOB);
      assertAllowed(room.try({ type: 'm.room.topic', sender: ALICE, state_key: '', content: {} }));
      assertRejected(room.try({ type: 'm.room.topic', sender: BOB, state_key: '', content: {} }), 'power.required_level');
      assertAllowed(room.try({ type: 'm.room.message', sender: BOB, content: {} }));
    });
  }
});

describe('redactions', () => {
  for (const v of ['1', '2']) {
    it(`v${v}: rule 11 — redact level, or the same domain as the redacted event id`, () => {
      const room = new TestRoom(v, { joinRule: 'public' });
      room.join(BOB);
      room.join(DAVE);
      const mine = room.send({ type: 'm.room.message', sender: BOB, content: {} });
      // BOB is on example.org; the redaction's own event id is $eN:example.org.
      assertAllowed(room.try({ type: 'm.room.redaction', sender: BOB, redacts: mine.eventId, content: {} }));
      assertRejected(room.try({ type: 'm.room.redaction', sender: BOB, redacts: '$x:other.example', content: {} }), 'redaction.power');
      assertAllowed(room.try({ type: 'm.room.redaction', sender: ALICE, redacts: '$x:other.example', content: {} }), 'admin has the redact level');
      const fromOther = room.make({ type: 'm.room.redaction', sender: DAVE, redacts: '$x:other.example', content: {} }, '$r:other.example');
      assertAllowed(room.check(fromOther));
      assertRejected(room.try({ type: 'm.room.redaction', sender: BOB, content: {} }), 'redaction.power', 'no redacts');
    });
  }
  for (const v of versionsFrom(3)) {
    it(`v${v}: the auth rules ignore the redact level (checked when the redaction is applied)`, () => {
      const room = new TestRoom(v, { joinRule: 'public' });
      room.join(BOB);
      const redacts = v === '11' || v === '12' ? undefined : '$someone-elses';
      const content: JsonObject = redacts === undefined ? { redacts: '$someone-elses' } : {};
      assertAllowed(room.try({ type: 'm.room.redaction', sender: BOB, content, ...(redacts ? { redacts } : {}) }));
      room.setPowerLevels({ users: v === '12' ? {} : { [ALICE]: 100 }, events: { 'm.room.redaction': 50 } });
      assertRejected(room.try({ type: 'm.room.redaction', sender: BOB, content }), 'power.required_level');
    });
  }
});

describe('v11: the create event sender is the creator', () => {
  it('a `creator` field naming someone else is ignored; the sender may do the first join', () => {
    const room = new TestRoom('11', { createContent: { creator: BOB }, powerLevels: null, joinRule: null });
    // Alice (sender) did the first join in the constructor, and has 100 without power levels.
    assertAllowed(room.try({ type: 'm.room.topic', sender: ALICE, state_key: '', content: {} }));
    const bobFirst = room.make({ type: 'm.room.member', sender: BOB, state_key: BOB, content: { membership: 'join' }, prev_events: [room.create.eventId] });
    assertRejected(room.check(bobFirst), 'member.join.join_rule');
  });
  it('v10 still uses content.creator', () => {
    const room = new TestRoom('10', { powerLevels: null, joinRule: null });
    const state = new Map(room.state);
    state.set(stateKey('m.room.create', ''), { ...room.create, pdu: { ...room.create.pdu, content: { creator: BOB, room_version: '10' } } });
    const bobFirst = room.make({ type: 'm.room.member', sender: BOB, state_key: BOB, content: { membership: 'join' }, prev_events: [room.create.eventId] });
    assertAllowed(checkEventAuth(room.rv, bobFirst, state));
  });
});

describe('v12: room creators and room ids', () => {
  const r12 = rv('12');

  it('the room id must be the create event id with ! for $', () => {
    const room = new TestRoom('12', { joinRule: 'public' });
    assert.equal(room.roomId, roomIdFromCreateEventId(room.create.eventId));
    assertAllowed(room.try({ type: 'm.room.member', sender: BOB, state_key: BOB, content: { membership: 'join' } }));
    assertRejected(
      room.try({ type: 'm.room.member', sender: BOB, state_key: BOB, content: { membership: 'join' }, room_id: '!other' }),
      'room_id.not_create_event',
    );
    const noRoomId = room.make({ type: 'm.room.message', sender: ALICE, content: {} });
    delete noRoomId.pdu.room_id;
    assertRejected(room.check(noRoomId), 'room_id.not_create_event');
  });

  it('creators have infinite power: not demotable, cannot be kicked or banned by anyone', () => {
    const room = new TestRoom('12', { joinRule: 'public', createContent: { additional_creators: [BOB] }, powerLevels: { users: { [CAROL]: 9007199254740991 } } });
    room.join(BOB);
    room.join(CAROL);
    assertRejected(room.try(room.member(CAROL, ALICE, 'ban')), 'member.ban.power', 'max integer is below infinity');
    assertRejected(room.try(room.member(BOB, ALICE, 'ban')), 'member.ban.power', 'creators are equal');
    assertRejected(room.try(room.member(ALICE, BOB, 'leave')), 'member.leave.kick_power');
    assertAllowed(room.try(room.member(BOB, CAROL, 'ban')), 'an additional creator outranks everyone else');
    assertAllowed(room.try({ type: 'm.room.power_levels', sender: BOB, state_key: '', content: { users: { [CAROL]: 0 } } }));
  });

  it('power levels must not list a creator (sender or additional creator), not even the first one', () => {
    const room = new TestRoom('12', { createContent: { additional_creators: [BOB] }, powerLevels: null });
    assertRejected(room.try({ type: 'm.room.power_levels', sender: ALICE, state_key: '', content: { users: { [ALICE]: 100 } } }), 'power_levels.creator_in_users');
    assertRejected(room.try({ type: 'm.room.power_levels', sender: ALICE, state_key: '', content: { users: { [BOB]: 100 } } }), 'power_levels.creator_in_users');
    assertAllowed(room.try({ type: 'm.room.power_levels', sender: ALICE, state_key: '', content: { users: { [CAROL]: 100 } } }));
    const r11 = new TestRoom('11', { powerLevels: null });
    assertAllowed(r11.try({ type: 'm.room.power_levels', sender: ALICE, state_key: '', content: { users: { [ALICE]: 100 } } }), 'v11 lists creators');
  });

  it('only the create sender gets the "first join" rule; additional creators join normally', () => {
    const room = new TestRoom('12', { createContent: { additional_creators: [BOB] }, joinRule: null, powerLevels: null });
    const bobFirst = room.make({ type: 'm.room.member', sender: BOB, state_key: BOB, content: { membership: 'join' }, prev_events: [room.create.eventId] });
    assertRejected(room.check(bobFirst), 'member.join.join_rule');
    assert.equal(r12.privilegedCreators, true);
  });
});

// ---------------------------------------------------------------------------------------------------
// The state-resolution fixtures: every event passes against its auth events, walked in order.

const FIXTURES = join(import.meta.dirname, '..', '..', 'shared', 'state-res-fixtures', 'fixtures');
const fixtureFiles = ['bootstrap-private-chat.json', 'bootstrap-public-chat.json'];

describe('state-resolution fixtures', () => {
  for (const file of fixtureFiles) {
    it(`${file}: every event is allowed against its auth events and against the state built so far`, () => {
      const pdus = JSON.parse(readFileSync(join(FIXTURES, file), 'utf8')) as Pdu[];
      assert.ok(pdus.length >= 6);
      const r = rv(String(pdus[0]!.content['room_version']));
      const byId = new Map<string, IdentifiedPdu>();
      const state: StateMap<IdentifiedPdu> = new Map();
      let checked = 0;
      for (const pdu of pdus) {
        const ev: IdentifiedPdu = { eventId: pdu.event_id!, pdu };
        const auth = refIds(pdu.auth_events).map((id) => {
          const a = byId.get(id);
          assert.ok(a, `${ev.eventId}: auth event ${id} comes earlier in the file`);
          return a;
        });
        const create = r.roomIdFromCreateEvent ? byId.get('$' + String(pdu.room_id).slice(1)) : undefined;
        assertAllowed(checkEventAuthWithAuthEvents(r, ev, auth, { createEvent: create }), `${ev.eventId} against its auth events`);
        assertAllowed(checkEventAuth(r, ev, authEventsToStateMap(auth)), `${ev.eventId} (checkEventAuth)`);
        if (pdu.type !== 'm.room.create') assertAllowed(checkEventAuth(r, ev, state), `${ev.eventId} against the state before it`);
        byId.set(ev.eventId, ev);
        if (typeof pdu.state_key === 'string') state.set(stateKey(pdu.type, pdu.state_key), ev);
        checked += 1;
      }
      assert.equal(checked, pdus.length);
    });
  }

  it('the fixtures can fail: a stranger posting to the private chat is rejected', () => {
    const pdus = JSON.parse(readFileSync(join(FIXTURES, 'bootstrap-private-chat.json'), 'utf8')) as Pdu[];
    const r = rv(String(pdus[0]!.content['room_version']));
    const state: StateMap<IdentifiedPdu> = new Map();
    for (const pdu of pdus) if (typeof pdu.state_key === 'string') state.set(stateKey(pdu.type, pdu.state_key), { eventId: pdu.event_id!, pdu });
    const last = pdus[pdus.length - 1]!;
    const carolJoin: IdentifiedPdu = {
      eventId: '$zz-join-carol',
      pdu: { ...last, type: 'm.room.member', sender: CAROL, state_key: CAROL, content: { membership: 'join' }, prev_events: [last.event_id!] },
    };
    assertRejected(checkEventAuth(r, carolJoin, state), 'member.join.not_invited');
  });
});
