// Auth rules for m.room.member (rooms/vN.md rule "If type is m.room.member"), in every room version.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { JsonObject } from './events.ts';
import type { AuthOptions } from './auth-rules.ts';
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

const joinSpec = (u: string, extra: JsonObject = {}) => ({
  type: 'm.room.member',
  sender: u,
  state_key: u,
  content: { membership: 'join', ...extra },
});

describe('m.room.member: malformed', () => {
  for (const v of ALL_VERSIONS) {
    it(`v${v}: no state_key or no membership is rejected; unknown membership is rejected`, () => {
      const room = new TestRoom(v, { joinRule: 'public' });
      assertRejected(room.try({ type: 'm.room.member', sender: BOB, content: { membership: 'join' } }), 'member.malformed');
      assertRejected(room.try({ type: 'm.room.member', sender: BOB, state_key: BOB, content: {} }), 'member.malformed');
      assertRejected(room.try(room.member(ALICE, BOB, 'dance')), 'member.unknown_membership');
      assertRejected(room.try(room.member(ALICE, BOB, 'Join')), 'member.unknown_membership');
    });
  }
});

describe('m.room.member: join', () => {
  for (const v of ALL_VERSIONS) {
    it(`v${v}: the creator's first join after the create event only`, () => {
      const room = new TestRoom(v, { joinRule: null, powerLevels: null });
      // Alice's join was allowed by "only previous event is m.room.create" (no join rules event exists).
      assert.equal(room.state.size, 2);
      // Someone else joining right after the create event is not covered by that rule.
      const other = room.make({ ...joinSpec(BOB), prev_events: [room.create.eventId] });
      assertRejected(room.check(other), 'member.join.join_rule');
      // "the only previous event": the create event plus another prev event does not qualify.
      const twoPrev = room.make({ ...joinSpec(ALICE), prev_events: [room.create.eventId, room.state.get(`m.room.member\u0000${ALICE}`)!.eventId] });
      assertRejected(room.check(twoPrev), 'member.join.join_rule');
      // The creator joining again with more than the create event as prev_events has no join rule to pass.
      room.force(ALICE, 'leave');
      assertRejected(room.try(joinSpec(ALICE)), 'member.join.join_rule');
    });

    it(`v${v}: public rooms let anyone join; sender must be the target; banned users cannot join`, () => {
      const room = new TestRoom(v, { joinRule: 'public' });
      assertAllowed(room.try(joinSpec(BOB)));
      assertRejected(room.try({ ...joinSpec(BOB), sender: ALICE }), 'member.join.other_user');
      room.force(BOB, 'ban', ALICE);
      assertRejected(room.try(joinSpec(BOB)), 'member.join.banned');
    });

    it(`v${v}: invite rooms need an invite (or an existing join)`, () => {
      const room = new TestRoom(v, { joinRule: 'invite' });
      assertRejected(room.try(joinSpec(BOB)), 'member.join.not_invited');
      room.send(room.member(ALICE, BOB, 'invite'));
      assertAllowed(room.try(joinSpec(BOB)));
      room.join(BOB);
      assertAllowed(room.try(joinSpec(BOB, { displayname: 'Bob' })), 're-join (profile change) while joined');
    });

    it(`v${v}: no join rules event, or an unknown join rule: reject`, () => {
      assertRejected(new TestRoom(v, { joinRule: null }).try(joinSpec(BOB)), 'member.join.join_rule');
      assertRejected(new TestRoom(v, { joinRule: 'private' }).try(joinSpec(BOB)), 'member.join.join_rule');
    });
  }

  for (const v of versionsFrom(7)) {
    it(`v${v}: join rule knock behaves like invite for joins`, () => {
      const room = new TestRoom(v, { joinRule: 'knock' });
      assertRejected(room.try(joinSpec(BOB)), 'member.join.not_invited');
      room.send(room.member(ALICE, BOB, 'invite'));
      assertAllowed(room.try(joinSpec(BOB)));
    });
  }
  for (const v of versionsBefore(7)) {
    it(`v${v}: join rule knock is unknown, so even invited users cannot join`, () => {
      const room = new TestRoom(v, { joinRule: 'knock' });
      room.send(room.member(ALICE, BOB, 'invite'));
      assertRejected(room.try(joinSpec(BOB)), 'member.join.join_rule');
    });
  }
});

describe('m.room.member: restricted joins (v8+)', () => {
  const rules = (v: string): string[] => (Number(v) >= 10 ? ['restricted', 'knock_restricted'] : ['restricted']);
  for (const v of versionsFrom(8)) {
    for (const rule of rules(v)) {
      it(`v${v} ${rule}: allowed when authorised by a joined user with invite power`, () => {
        const room = new TestRoom(v, { joinRule: rule, powerLevels: { users: v === '12' ? {} : { [ALICE]: 100 }, invite: 50 } });
        const ev = room.make(joinSpec(BOB, { join_authorised_via_users_server: ALICE }));
        assertAllowed(room.check(ev));
        assertAllowed(room.checkAgainstAuthEvents(ev), 'the authoriser membership is among the auth events');
        assert.ok(ev.pdu.auth_events.includes(room.state.get(`m.room.member\u0000${ALICE}`)!.eventId));
      });

      it(`v${v} ${rule}: rejected without an authoriser, or with one lacking power or membership`, () => {
        const room = new TestRoom(v, { joinRule: rule, powerLevels: { users: v === '12' ? {} : { [ALICE]: 100 }, invite: 50 } });
        room.setJoinRule({ join_rule: 'public' });
        room.join(CAROL);
        room.setJoinRule({ join_rule: rule });
        assertRejected(room.try(joinSpec(BOB)), 'member.join.restricted.no_authoriser');
        assertRejected(
          room.try(joinSpec(BOB, { join_authorised_via_users_server: CAROL })),
          'member.join.restricted.authoriser_power',
          'Carol (0) is below the invite level (50)',
        );
        assertRejected(
          room.try(joinSpec(BOB, { join_authorised_via_users_server: DAVE })),
          'member.join.restricted.authoriser_not_joined',
        );
        assertRejected(
          room.try(joinSpec(BOB, { join_authorised_via_users_server: 12 as unknown as string })),
          'member.join_authorised_via.invalid',
        );
      });

      it(`v${v} ${rule}: invited or joined users need no authoriser; banned users are still rejected`, () => {
        const room = new TestRoom(v, { joinRule: rule });
        room.send(room.member(ALICE, BOB, 'invite'));
        assertAllowed(room.try(joinSpec(BOB)));
        room.force(CAROL, 'ban', ALICE);
        assertRejected(room.try(joinSpec(CAROL, { join_authorised_via_users_server: ALICE })), 'member.join.banned');
      });

      it(`v${v} ${rule}: join_authorised_via_users_server must be signed by that user's server`, () => {
        const room = new TestRoom(v, { joinRule: rule });
        const ev = room.make(joinSpec(BOB, { join_authorised_via_users_server: ALICE }));
        const seen: string[] = [];
        const opts = (ok: boolean): AuthOptions => ({ isSignedBy: (_e, server) => (seen.push(server), ok) });
        assertRejected(room.check(ev, opts(false)), 'member.join_authorised_via.signature');
        assertAllowed(room.check(ev, opts(true)));
        assert.deepEqual(seen, ['example.org', 'example.org']);
        // The signature rule applies to any membership carrying the key, not only joins.
        const leave = room.make(room.member(BOB, BOB, 'leave', { join_authorised_via_users_server: ALICE }));
        assertRejected(room.check(leave, opts(false)), 'member.join_authorised_via.signature');
      });
    }
  }

  for (const v of versionsBefore(8)) {
    it(`v${v}: the restricted join rule does not exist (reject), and join_authorised_via_users_server is ignored`, () => {
      const room = new TestRoom(v, { joinRule: 'restricted' });
      assertRejected(room.try(joinSpec(BOB, { join_authorised_via_users_server: ALICE })), 'member.join.join_rule');
      const pub = new TestRoom(v, { joinRule: 'public' });
      assertAllowed(pub.check(pub.make(joinSpec(BOB, { join_authorised_via_users_server: 5 as unknown as string })), { isSignedBy: () => false }));
    });
  }
  for (const v of ['8', '9']) {
    it(`v${v}: knock_restricted does not exist yet (reject)`, () => {
      const room = new TestRoom(v, { joinRule: 'knock_restricted' });
      assertRejected(room.try(joinSpec(BOB, { join_authorised_via_users_server: ALICE })), 'member.join.join_rule');
    });
  }
});

describe('m.room.member: invite', () => {
  for (const v of ALL_VERSIONS) {
    it(`v${v}: joined sender with invite power may invite; not a joined or banned target`, () => {
      const room = new TestRoom(v);
      assertAllowed(room.try(room.member(ALICE, BOB, 'invite')));
      assertRejected(room.try(room.member(CAROL, BOB, 'invite')), 'member.invite.sender_not_joined');
      room.setJoinRule({ join_rule: 'public' });
      room.join(BOB);
      assertRejected(room.try(room.member(ALICE, BOB, 'invite')), 'member.invite.target_join', "can't invite a joined user");
      room.force(CAROL, 'ban', ALICE);
      assertRejected(room.try(room.member(ALICE, CAROL, 'invite')), 'member.invite.target_ban');
    });

    it(`v${v}: the invite level applies`, () => {
      const users: JsonObject = v === '12' ? { [BOB]: 10 } : { [ALICE]: 100, [BOB]: 10 };
      const room = new TestRoom(v, { joinRule: 'public', powerLevels: { users, invite: 11 } });
      room.join(BOB);
      assertRejected(room.try(room.member(BOB, CAROL, 'invite')), 'member.invite.power');
      room.setPowerLevels({ users, invite: 10 });
      assertAllowed(room.try(room.member(BOB, CAROL, 'invite')));
    });
  }
});

describe('m.room.member: leave, kick, unban', () => {
  for (const v of ALL_VERSIONS) {
    it(`v${v}: self-leave from join or invite; not from leave or ban`, () => {
      const room = new TestRoom(v);
      assertRejected(room.try(room.member(BOB, BOB, 'leave')), 'member.leave.self', 'never in the room');
      room.send(room.member(ALICE, BOB, 'invite'));
      assertAllowed(room.try(room.member(BOB, BOB, 'leave')), 'rejecting an invite');
      room.join(BOB);
      assertAllowed(room.try(room.member(BOB, BOB, 'leave')));
      room.force(BOB, 'ban', ALICE);
      assertRejected(room.try(room.member(BOB, BOB, 'leave')), 'member.leave.self', 'banned users cannot leave');
    });

    it(`v${v}: kick needs the kick level and power above the target`, () => {
      const users = { ...(v === '12' ? {} : { [ALICE]: 100 }), [BOB]: 50, [CAROL]: 50, '@erin:example.org': 49 };
      const room = new TestRoom(v, { joinRule: 'public', powerLevels: { users } });
      room.join(BOB);
      room.join(CAROL);
      room.join(DAVE);
      room.join('@erin:example.org');
      assertRejected(room.try(room.member('@erin:example.org', DAVE, 'leave')), 'member.leave.kick_power', 'one below the kick level');
      assertRejected(room.try(room.member(BOB, CAROL, 'leave')), 'member.leave.kick_power', 'equal power');
      assertAllowed(room.try(room.member(BOB, DAVE, 'leave')), '50 >= kick 50 and 0 < 50');
      assertAllowed(room.try(room.member(ALICE, BOB, 'leave')));
      assertRejected(room.try(room.member(DAVE, BOB, 'leave')), 'member.leave.kick_power');
      room.force(DAVE, 'leave', DAVE);
      assertRejected(room.try(room.member(DAVE, BOB, 'leave')), 'member.leave.sender_not_joined');
    });

    it(`v${v}: unbanning needs the ban level as well as the kick level`, () => {
      const users = { ...(v === '12' ? {} : { [ALICE]: 100 }), [BOB]: 50 };
      const room = new TestRoom(v, { joinRule: 'public', powerLevels: { users, ban: 60, kick: 50 } });
      room.join(BOB);
      room.force(CAROL, 'ban', ALICE);
      assertRejected(room.try(room.member(BOB, CAROL, 'leave')), 'member.leave.unban_power');
      assertAllowed(room.try(room.member(ALICE, CAROL, 'leave')));
    });
  }
});

describe('m.room.member: ban', () => {
  for (const v of ALL_VERSIONS) {
    it(`v${v}: ban needs a joined sender, the ban level, and power above the target`, () => {
      const users = { ...(v === '12' ? {} : { [ALICE]: 100 }), [BOB]: 50, '@erin:example.org': 50 };
      const room = new TestRoom(v, { joinRule: 'public', powerLevels: { users, ban: 50 } });
      room.join(BOB);
      room.join(CAROL);
      assertAllowed(room.try(room.member(BOB, CAROL, 'ban')));
      assertAllowed(room.try(room.member(BOB, DAVE, 'ban')), 'banning a user who never joined');
      assertRejected(room.try(room.member(BOB, ALICE, 'ban')), 'member.ban.power');
      assertRejected(room.try(room.member(BOB, '@erin:example.org', 'ban')), 'member.ban.power', 'equal power');
      room.join('@erin:example.org');
      room.setPowerLevels({ users: { ...users, '@erin:example.org': 49 }, ban: 50 });
      assertRejected(room.try(room.member('@erin:example.org', CAROL, 'ban')), 'member.ban.power', 'one below the ban level');
      assertRejected(room.try(room.member(CAROL, BOB, 'ban')), 'member.ban.power');
      assertRejected(room.try(room.member(DAVE, CAROL, 'ban')), 'member.ban.sender_not_joined');
    });
  }
});

describe('m.room.member: knock', () => {
  for (const v of versionsFrom(7)) {
    it(`v${v}: knock is allowed only under the knock rule, for oneself, when not invited/joined/banned`, () => {
      const room = new TestRoom(v, { joinRule: 'knock' });
      assertAllowed(room.try(room.member(BOB, BOB, 'knock')));
      assertRejected(room.try(room.member(ALICE, BOB, 'knock')), 'member.knock.other_user');
      assertRejected(room.try(room.member(ALICE, ALICE, 'knock')), 'member.knock.membership', 'already joined');
      room.send(room.member(BOB, BOB, 'knock'));
      assertAllowed(room.try(room.member(BOB, BOB, 'knock')), 'knocking again');
      assertAllowed(room.try(room.member(BOB, BOB, 'leave')), 'v7+: a knock can be withdrawn');
      room.force(CAROL, 'ban', ALICE);
      assertRejected(room.try(room.member(CAROL, CAROL, 'knock')), 'member.knock.membership');
      assertRejected(new TestRoom(v, { joinRule: 'public' }).try(room.member(BOB, BOB, 'knock')), 'member.knock.join_rule');
      assertRejected(new TestRoom(v, { joinRule: 'invite' }).try(room.member(BOB, BOB, 'knock')), 'member.knock.join_rule');
    });
  }
  for (const v of versionsBefore(7)) {
    it(`v${v}: knock is an unknown membership, and a knock cannot be withdrawn with leave`, () => {
      const room = new TestRoom(v, { joinRule: 'knock' });
      assertRejected(room.try(room.member(BOB, BOB, 'knock')), 'member.unknown_membership');
      room.force(BOB, 'knock');
      assertRejected(room.try(room.member(BOB, BOB, 'leave')), 'member.leave.self');
    });
  }
  for (const v of versionsFrom(10)) {
    it(`v${v}: knock_restricted allows knocking`, () => {
      assertAllowed(new TestRoom(v, { joinRule: 'knock_restricted' }).try({ type: 'm.room.member', sender: BOB, state_key: BOB, content: { membership: 'knock' } }));
    });
  }
  for (const v of ['7', '8', '9']) {
    it(`v${v}: knock_restricted is not a knock rule yet`, () => {
      assertRejected(
        new TestRoom(v, { joinRule: 'knock_restricted' }).try({ type: 'm.room.member', sender: BOB, state_key: BOB, content: { membership: 'knock' } }),
        'member.knock.join_rule',
      );
    });
  }
});

describe('m.room.member: third-party invites', () => {
  const token = 'abc123';
  const signedFor = (mxid: string, tok = token): JsonObject => ({
    mxid,
    token: tok,
    signatures: { 'id.example': { 'ed25519:0': 'GOOD' } },
  });
  // A fake verifier: "valid" when the signature value is GOOD and the key is one of the invite's keys.
  const calls: Array<[string, string]> = [];
  const verifySignature = (signed: JsonObject, publicKey: string): boolean => {
    const sig = (signed['signatures'] as Record<string, Record<string, string>>)['id.example']!['ed25519:0']!;
    calls.push([sig, publicKey]);
    return sig === 'GOOD' && (publicKey === 'KEY1' || publicKey === 'KEY2');
  };
  const inviteSpec = (sender: string, target: string, tpi: JsonObject) => ({
    type: 'm.room.member',
    sender,
    state_key: target,
    content: { membership: 'invite', third_party_invite: tpi },
  });

  for (const v of ALL_VERSIONS) {
    it(`v${v}: a signed third-party invite matching the m.room.third_party_invite is allowed`, () => {
      const room = new TestRoom(v);
      room.send({
        type: 'm.room.third_party_invite',
        sender: ALICE,
        state_key: token,
        content: { display_name: 'b...', key_validity_url: 'https://id.example/v', public_key: 'KEY0', public_keys: [{ public_key: 'KEY2' }] },
      });
      const ev = room.make(inviteSpec(ALICE, BOB, { display_name: 'b...', signed: signedFor(BOB) }));
      assert.ok(ev.pdu.auth_events.includes(room.state.get(`m.room.third_party_invite\u0000${token}`)!.eventId));
      calls.length = 0;
      assertAllowed(room.check(ev, { verifySignature }));
      assert.deepEqual(calls, [['GOOD', 'KEY0'], ['GOOD', 'KEY2']], 'both public_key and public_keys are tried');
      assertAllowed(room.checkAgainstAuthEvents(ev, { verifySignature }));
      // Without a verifier the default Ed25519 check runs: the fake 'GOOD' signature does not verify.
      assertRejected(room.check(ev), 'member.invite.third_party.signature');
      // A bad signature.
      const bad = { ...signedFor(BOB), signatures: { 'id.example': { 'ed25519:0': 'BAD' } } };
      assertRejected(room.check(room.make(inviteSpec(ALICE, BOB, { signed: bad })), { verifySignature }), 'member.invite.third_party.signature');
    });

    it(`v${v}: third-party invite failure modes, in rule order`, () => {
      const room = new TestRoom(v, { joinRule: 'public' });
      room.send({ type: 'm.room.third_party_invite', sender: ALICE, state_key: token, content: { display_name: 'x', key_validity_url: 'u', public_key: 'KEY1' } });
      room.join(CAROL);
      const o = { verifySignature };
      assertRejected(room.try(inviteSpec(ALICE, BOB, {}), o), 'member.invite.third_party.no_signed');
      assertRejected(room.try(inviteSpec(ALICE, BOB, { signed: { mxid: BOB } }), o), 'member.invite.third_party.no_mxid_token');
      assertRejected(room.try(inviteSpec(ALICE, BOB, { signed: signedFor(CAROL) }), o), 'member.invite.third_party.mxid');
      assertRejected(room.try(inviteSpec(ALICE, BOB, { signed: signedFor(BOB, 'other') }), o), 'member.invite.third_party.no_invite');
      assertRejected(room.try(inviteSpec(CAROL, BOB, { signed: signedFor(BOB) }), o), 'member.invite.third_party.sender');
      room.force(BOB, 'ban', ALICE);
      assertRejected(room.try(inviteSpec(ALICE, BOB, { signed: signedFor(BOB) }), o), 'member.invite.third_party.target_banned');
    });

    it(`v${v}: sending m.room.third_party_invite needs the invite level`, () => {
      const users: JsonObject = v === '12' ? { [BOB]: 9 } : { [ALICE]: 100, [BOB]: 9 };
      const room = new TestRoom(v, { joinRule: 'public', powerLevels: { users, invite: 10 } });
      room.join(BOB);
      const tpi = { type: 'm.room.third_party_invite', sender: BOB, state_key: 't', content: { display_name: 'x', key_validity_url: 'u', public_key: 'k' } };
      assertRejected(room.try(tpi), 'third_party_invite.power');
      assertRejected(room.try({ ...tpi, sender: CAROL }), 'sender.not_joined');
      assertAllowed(room.try({ ...tpi, sender: ALICE }));
    });
  }
});
