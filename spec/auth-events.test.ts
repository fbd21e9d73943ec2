// server-server-api "Auth events selection".

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { authEventTypesFor, selectAuthEvents } from './auth-events.ts';
import { stateKey } from './events.ts';
import { getRoomVersion } from './room-versions.ts';
import type { RoomVersion } from './room-versions.ts';
import { ALICE, ALL_VERSIONS, BOB, CAROL, TestRoom, versionsBefore, versionsFrom } from './auth-rules.test-room.ts';

const rv = (id: string): RoomVersion => getRoomVersion(id)!;
const create: Array<[string, string]> = [['m.room.create', '']];
const withCreate = (v: string): Array<[string, string]> => (v === '12' ? [] : create);

describe('authEventTypesFor', () => {
  for (const v of ALL_VERSIONS) {
    it(`v${v}: create event, power levels, sender's membership`, () => {
      assert.deepEqual(authEventTypesFor(rv(v), { type: 'm.room.create', sender: ALICE, state_key: '', content: {} }), []);
      assert.deepEqual(authEventTypesFor(rv(v), { type: 'm.room.message', sender: BOB, content: { body: 'x' } }), [
        ...withCreate(v),
        ['m.room.power_levels', ''],
        ['m.room.member', BOB],
      ]);
    });

    it(`v${v}: memberships add the target and, for join/invite/knock, the join rules`, () => {
      const r = rv(v);
      const m = (sender: string, target: string, content: Record<string, unknown>) =>
        authEventTypesFor(r, { type: 'm.room.member', sender, state_key: target, content: content as never });
      const base = [...withCreate(v), ['m.room.power_levels', '']];
      assert.deepEqual(m(BOB, BOB, { membership: 'join' }), [...base, ['m.room.member', BOB], ['m.room.join_rules', '']]);
      assert.deepEqual(m(ALICE, BOB, { membership: 'invite' }), [...base, ['m.room.member', ALICE], ['m.room.member', BOB], ['m.room.join_rules', '']]);
      assert.deepEqual(m(BOB, BOB, { membership: 'knock' }), [...base, ['m.room.member', BOB], ['m.room.join_rules', '']]);
      assert.deepEqual(m(ALICE, BOB, { membership: 'ban' }), [...base, ['m.room.member', ALICE], ['m.room.member', BOB]]);
      assert.deepEqual(m(BOB, BOB, { membership: 'leave' }), [...base, ['m.room.member', BOB]]);
      assert.deepEqual(
        m(ALICE, BOB, { membership: 'invite', third_party_invite: { signed: { token: 'tok', mxid: BOB } } }),
        [...base, ['m.room.member', ALICE], ['m.room.member', BOB], ['m.room.join_rules', ''], ['m.room.third_party_invite', 'tok']],
      );
      assert.deepEqual(
        m(ALICE, BOB, { membership: 'invite', third_party_invite: { signed: 'nope' } }),
        [...base, ['m.room.member', ALICE], ['m.room.member', BOB], ['m.room.join_rules', '']],
      );
    });
  }

  for (const v of versionsFrom(8)) {
    it(`v${v}: a join with join_authorised_via_users_server adds that user's membership`, () => {
      const types = authEventTypesFor(rv(v), { type: 'm.room.member', sender: BOB, state_key: BOB, content: { membership: 'join', join_authorised_via_users_server: CAROL } });
      assert.deepEqual(types.at(-1), ['m.room.member', CAROL]);
      const leave = authEventTypesFor(rv(v), { type: 'm.room.member', sender: BOB, state_key: BOB, content: { membership: 'leave', join_authorised_via_users_server: CAROL } });
      assert.ok(!leave.some(([, k]) => k === CAROL), 'only for joins');
    });
  }
  for (const v of versionsBefore(8)) {
    it(`v${v}: join_authorised_via_users_server is not selected (no restricted rooms)`, () => {
      const types = authEventTypesFor(rv(v), { type: 'm.room.member', sender: BOB, state_key: BOB, content: { membership: 'join', join_authorised_via_users_server: CAROL } });
      assert.ok(!types.some(([, k]) => k === CAROL));
    });
  }
});

describe('selectAuthEvents', () => {
  for (const v of ALL_VERSIONS) {
    it(`v${v}: picks the ids present in the state, without duplicates`, () => {
      const room = new TestRoom(v, { joinRule: 'public' });
      const id = (t: string, k: string) => room.state.get(stateKey(t, k))!.eventId;
      const selfJoin = selectAuthEvents(room.rv, { type: 'm.room.member', sender: BOB, state_key: BOB, content: { membership: 'join' } }, room.state);
      assert.deepEqual(selfJoin, [...(v === '12' ? [] : [room.create.eventId]), id('m.room.power_levels', ''), id('m.room.join_rules', '')]);
      const aliceMsg = selectAuthEvents(room.rv, { type: 'm.room.member', sender: ALICE, state_key: ALICE, content: { membership: 'join' } }, room.state);
      assert.equal(new Set(aliceMsg).size, aliceMsg.length);
      assert.ok(aliceMsg.includes(id('m.room.member', ALICE)));
    });
  }
});
