// Sync journeys with matrix-js-sdk clients (two to four users): message order, typing, read receipts
// and unread counts, private receipts, presence visibility, muted rooms and senders, mentions,
// invites with stripped state, and kicks, bans and leaves as the others see them. Every response is
// validated against the spec's OpenAPI definitions by the harness.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NotificationCountType, PushRuleKind, ReceiptType, type MatrixClient, type MatrixEvent, type Room } from 'matrix-js-sdk';
import { withHarness, type Harness } from './harness.ts';
import { registerWithDummy, startSyncing, waitUntil } from './journey-kit.ts';

async function startUser(h: Harness, username: string): Promise<MatrixClient> {
  const r = await registerWithDummy(h.newClient(), username);
  return startSyncing(h.newClient(r.userId, r.accessToken, r.deviceId));
}

const room = (c: MatrixClient, roomId: string) => waitUntil(`${c.getUserId()} to have ${roomId}`, () => c.getRoom(roomId));
const bodies = (r: Room | null) =>
  (r?.getLiveTimeline().getEvents() ?? []).filter((e: MatrixEvent) => e.getType() === 'm.room.message').map((e: MatrixEvent) => e.getContent().body as string);

async function joinedTogether(owner: MatrixClient, others: MatrixClient[], opts: Record<string, unknown> = {}): Promise<string> {
  const { room_id: roomId } = await owner.createRoom({ preset: 'public_chat' as never, ...opts });
  for (const o of others) {
    await o.joinRoom(roomId);
    await waitUntil(`${o.getUserId()} joined`, () => o.getRoom(roomId)?.getMyMembership() === 'join');
  }
  for (const c of [owner, ...others]) {
    await waitUntil('everyone sees everyone', () => c.getRoom(roomId)?.getJoinedMemberCount() === others.length + 1);
  }
  return roomId;
}

test('messages arrive in order, typing starts and stops, m.read moves and resets counts, private receipts stay private', async () => {
  await withHarness(async (h) => {
    const alice = await startUser(h, 'alice');
    const bob = await startUser(h, 'bob');
    const carol = await startUser(h, 'carol');
    const roomId = await joinedTogether(alice, [bob, carol]);

    const sent: string[] = [];
    for (let i = 0; i < 5; i++) {
      const body = `message ${i}`;
      sent.push(body);
      await (i % 2 === 0 ? alice : carol).sendTextMessage(roomId, body);
    }
    for (const c of [alice, bob, carol]) {
      await waitUntil(`${c.getUserId()} has all messages`, () => bodies(c.getRoom(roomId)).length === 5);
    }
    // Bob sent nothing, so his timeline is exactly the server's order (the senders' clients place
    // their own local echoes as they send them).
    assert.deepEqual(bodies(bob.getRoom(roomId)), sent);
    for (const c of [alice, carol]) assert.deepEqual([...bodies(c.getRoom(roomId))].sort(), [...sent].sort());

    // Typing.
    await alice.sendTyping(roomId, true, 30_000);
    await waitUntil('bob sees alice typing', () => bob.getRoom(roomId)?.getMember(alice.getUserId()!)?.typing === true);
    await alice.sendTyping(roomId, false, 0);
    await waitUntil('bob sees alice stop', () => bob.getRoom(roomId)?.getMember(alice.getUserId()!)?.typing === false);

    // Counts: bob has 5 unread; reading up to the 3rd leaves 2, reading the last leaves 0.
    const bobRoom = await room(bob, roomId);
    await waitUntil('bob counts 5', () => bobRoom.getUnreadNotificationCount(NotificationCountType.Total) === 5);
    const events = bobRoom.getLiveTimeline().getEvents().filter((e) => e.getType() === 'm.room.message');
    await bob.sendReadReceipt(events[2]!, ReceiptType.Read);
    await waitUntil('alice sees bob read message 2', () => alice.getRoom(roomId)?.getEventReadUpTo(bob.getUserId()!) === events[2]!.getId());
    await waitUntil('bob counts 2', () => bobRoom.getUnreadNotificationCount(NotificationCountType.Total) === 2);
    await bob.sendReadReceipt(events[4]!, ReceiptType.Read);
    await waitUntil('alice sees the receipt move', () => alice.getRoom(roomId)?.getEventReadUpTo(bob.getUserId()!) === events[4]!.getId());
    await waitUntil('bob counts 0', () => bobRoom.getUnreadNotificationCount(NotificationCountType.Total) === 0);

    // Carol reads privately: her own client knows, the others never see it.
    await alice.sendTextMessage(roomId, 'after');
    const carolRoom = await room(carol, roomId);
    const last = await waitUntil('carol has "after"', () => carolRoom.getLiveTimeline().getEvents().find((e) => e.getContent().body === 'after'));
    await carol.sendReadReceipt(last, ReceiptType.ReadPrivate);
    await waitUntil('carol sees her private receipt', () => carolRoom.getReceiptsForEvent(last).some((r) => r.userId === carol.getUserId() && r.type === ReceiptType.ReadPrivate));
    // A public receipt from bob afterwards proves alice's client is up to date; carol's is absent.
    const lastForBob = await waitUntil('bob has "after"', () => bobRoom.getLiveTimeline().getEvents().find((e) => e.getContent().body === 'after'));
    await bob.sendReadReceipt(lastForBob, ReceiptType.Read);
    await waitUntil('alice sees bob read "after"', () => alice.getRoom(roomId)?.getEventReadUpTo(bob.getUserId()!) === last.getId());
    const aliceView = alice.getRoom(roomId)!.getReceiptsForEvent(alice.getRoom(roomId)!.findEventById(last.getId()!)!);
    assert.ok(!aliceView.some((r) => r.userId === carol.getUserId()), 'private receipt visible to alice');
  });
});

test('presence changes reach room-mates and not strangers', async () => {
  await withHarness(async (h) => {
    const alice = await startUser(h, 'alice');
    const bob = await startUser(h, 'bob');
    const stranger = await startUser(h, 'stranger');
    await joinedTogether(alice, [bob]);
    await alice.setPresence({ presence: 'unavailable', status_msg: 'out for lunch' });
    await waitUntil('bob sees alice unavailable', () => {
      const u = bob.getUser(alice.getUserId()!);
      return u?.presence === 'unavailable' && u.presenceStatusMsg === 'out for lunch';
    });
    // A marker the stranger does see (their own presence) shows their sync has moved past alice's change.
    await stranger.setPresence({ presence: 'online', status_msg: 'here' });
    await waitUntil('stranger sees own presence', () => stranger.getUser(stranger.getUserId()!)?.presenceStatusMsg === 'here');
    assert.notEqual(stranger.getUser(alice.getUserId()!)?.presenceStatusMsg, 'out for lunch');
    await assert.rejects(stranger.getPresence(alice.getUserId()!), (e: { httpStatus?: number }) => e.httpStatus === 403);
  });
});

test('a muted room and a muted sender produce no counts; an @-mention raises highlight_count', async () => {
  await withHarness(async (h) => {
    const alice = await startUser(h, 'alice');
    const bob = await startUser(h, 'bob');
    const carol = await startUser(h, 'carol');
    const loud = await joinedTogether(alice, [bob, carol]);
    const quiet = await joinedTogether(alice, [bob, carol]);
    await bob.addPushRule('global', PushRuleKind.RoomSpecific, quiet, { actions: [] });
    await bob.addPushRule('global', PushRuleKind.SenderSpecific, carol.getUserId()!, { actions: [] });

    await alice.sendTextMessage(quiet, 'shh');
    await carol.sendTextMessage(loud, 'muted sender');
    await alice.sendMessage(loud, { msgtype: 'm.text', body: `hi bob`, 'm.mentions': { user_ids: [bob.getUserId()!] } } as never);
    await alice.sendTextMessage(loud, 'marker');
    const bobLoud = await room(bob, loud);
    await waitUntil('bob has the marker', () => bodies(bobLoud).includes('marker') && bodies(bob.getRoom(quiet)).includes('shh'));
    await waitUntil('counts settle', () => bobLoud.getUnreadNotificationCount(NotificationCountType.Total) === 2);
    assert.equal(bobLoud.getUnreadNotificationCount(NotificationCountType.Highlight), 1);
    assert.equal(bob.getRoom(quiet)!.getUnreadNotificationCount(NotificationCountType.Total), 0);
    assert.equal(bob.getRoom(quiet)!.getUnreadNotificationCount(NotificationCountType.Highlight), 0);
  });
});

test('an invite shows with stripped state; kick, ban and leave show in the others\u2019 timelines', async () => {
  await withHarness(async (h) => {
    const alice = await startUser(h, 'alice');
    const bob = await startUser(h, 'bob');
    const carol = await startUser(h, 'carol');
    const dave = await startUser(h, 'dave');
    const { room_id: roomId } = await alice.createRoom({ preset: 'private_chat' as never, name: 'Book club', invite: [bob.getUserId()!] });
    const invited = await waitUntil('bob is invited', () => bob.getRoom(roomId)?.getMyMembership() === 'invite' && bob.getRoom(roomId));
    await waitUntil('stripped name', () => invited.name === 'Book club');
    await waitUntil('inviter known', () => invited.getDMInviter() === alice.getUserId() || invited.getMember(bob.getUserId()!)?.events.member?.getSender() === alice.getUserId());
    await bob.joinRoom(roomId);
    for (const u of [carol, dave]) {
      await alice.invite(roomId, u.getUserId()!);
      await waitUntil(`${u.getUserId()} invited`, () => u.getRoom(roomId)?.getMyMembership() === 'invite');
      await u.joinRoom(roomId);
    }
    await waitUntil('four members', () => alice.getRoom(roomId)?.getJoinedMemberCount() === 4);

    await alice.kick(roomId, bob.getUserId()!, 'spoilers');
    await alice.ban(roomId, carol.getUserId()!, 'more spoilers');
    await dave.leave(roomId);
    await waitUntil('bob knows he was kicked', () => bob.getRoom(roomId)?.getMyMembership() === 'leave');
    await waitUntil('carol knows she was banned', () => carol.getRoom(roomId)?.getMyMembership() === 'ban');
    const memberChanges = (c: MatrixClient) =>
      (c.getRoom(roomId)?.getLiveTimeline().getEvents() ?? [])
        .filter((e) => e.getType() === 'm.room.member' && e.getContent().membership !== 'join' && e.getContent().membership !== 'invite')
        .map((e) => `${e.getStateKey()}:${e.getContent().membership}`);
    const expected = [`${bob.getUserId()}:leave`, `${carol.getUserId()}:ban`, `${dave.getUserId()}:leave`];
    await waitUntil('alice sees kick, ban, leave', () => memberChanges(alice).join() === expected.join());
    const kick = alice.getRoom(roomId)!.getLiveTimeline().getEvents().find((e) => e.getStateKey() === bob.getUserId() && e.getContent().membership === 'leave')!;
    assert.equal(kick.getSender(), alice.getUserId());
    assert.equal(kick.getContent().reason, 'spoilers');
    const bobsView = bob.getRoom(roomId)!.getLiveTimeline().getEvents().find((e) => e.getStateKey() === bob.getUserId() && e.getContent().membership === 'leave');
    assert.equal(bobsView?.getSender(), alice.getUserId());
  });
});

test('m.ignored_user_list: an ignored user\u2019s messages and invites never reach the ignorer', async () => {
  await withHarness(async (h) => {
    const alice = await startUser(h, 'alice');
    const bob = await startUser(h, 'bob');
    const carol = await startUser(h, 'carol');
    const roomId = await joinedTogether(carol, [alice, bob]);
    await alice.setIgnoredUsers([bob.getUserId()!]);
    await waitUntil('alice\u2019s client knows', () => alice.isUserIgnored(bob.getUserId()!));
    await bob.sendTextMessage(roomId, 'you will not see this');
    const { room_id: bobsRoom } = await bob.createRoom({ invite: [alice.getUserId()!] });
    await carol.sendTextMessage(roomId, 'marker');
    await waitUntil('alice has the marker', () => bodies(alice.getRoom(roomId)).includes('marker'));
    await waitUntil('carol has both', () => bodies(carol.getRoom(roomId)).includes('you will not see this'));
    assert.ok(!bodies(alice.getRoom(roomId)).includes('you will not see this'));
    assert.equal(alice.getRoom(bobsRoom), null, 'invite from an ignored user');
  });
});
