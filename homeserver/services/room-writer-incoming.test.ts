// Events received from other servers (RoomWriter.persistIncoming): server-server-api "Checks performed
// on receipt of a PDU" steps 4–6. Rejected and soft-failed events are stored but never served as
// accepted — not by GET /event, /messages, /context, /sync or /state — and never change the current
// state or the forward extremities; accepted events on a fork make the current state the resolution
// of the forward extremities' states.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { IdentifiedPdu, JsonObject } from '../../spec/events.ts';
import { refIds, stateKey } from '../../spec/events.ts';
import { generateSigningKey } from '../../spec/signing.ts';
import { startTestServer, type TestServer } from '../testing.ts';
import { Client, enc, newClient } from '../api/client/rooms-testkit.ts';
import { buildEvent, type EventDraft } from './event-builder.ts';
import { MissingEventsError } from './room-writer.ts';

const REMOTE = 'remote.example';
const EVE = `@eve:${REMOTE}`;
const remoteKey = generateSigningKey();

let s: TestServer;
let alice: Client;

before(async () => {
  s = await startTestServer();
  alice = await newClient(s, 'alice');
});
after(async () => {
  await s.stop();
});

const writer = () => s.hs.services.rooms.writer;

/** A remote event built on `prevs`, citing `auths` (event ids of stored events). */
async function remoteEvent(roomId: string, draft: EventDraft, prevs: string[], auths: string[], ts = Date.now()): Promise<IdentifiedPdu> {
  const rv = (await s.hs.services.rooms.getRoomVersion(roomId))!;
  const pdus = await writer().getPdus([...prevs, ...auths]);
  return buildEvent({
    rv,
    roomId,
    draft,
    prevEvents: prevs.map((id) => pdus.get(id)!),
    authEvents: auths.map((id) => pdus.get(id)!),
    serverName: REMOTE,
    key: remoteKey,
    now: ts,
  }).event;
}

async function stateId(roomId: string, type: string, sk = ''): Promise<string> {
  return (await s.hs.services.rooms.getCurrentStateIds(roomId))!.get(stateKey(type, sk))!;
}

async function extremities(roomId: string): Promise<string[]> {
  return (await writer().head(roomId))!.extremities.map((x) => x.eventId).sort();
}

/** Eve (remote) joins a public room; returns the room id and her join's id. */
async function roomWithEve(version: string): Promise<{ roomId: string; eveJoin: string }> {
  const roomId = await alice.createRoom({ room_version: version, preset: 'public_chat' });
  const ids = (await s.hs.services.rooms.getCurrentStateIds(roomId))!;
  const auths = [ids.get(stateKey('m.room.power_levels', ''))!, ids.get(stateKey('m.room.join_rules', ''))!];
  if (version !== '12') auths.unshift(ids.get(stateKey('m.room.create', ''))!);
  const join = await remoteEvent(roomId, { type: 'm.room.member', sender: EVE, state_key: EVE, content: { membership: 'join' } }, await extremities(roomId), auths);
  const r = await writer().persistIncoming(roomId, join);
  assert.equal(r.outcome, 'accepted', r.reason);
  await r.persisted;
  return { roomId, eveJoin: join.eventId };
}

/** Auth events for a message or state event by eve: create (not in v12), power levels, her membership. */
async function eveAuth(roomId: string, version: string, memberId?: string): Promise<string[]> {
  const a = [await stateId(roomId, 'm.room.power_levels'), memberId ?? (await stateId(roomId, 'm.room.member', EVE))];
  if (version !== '12') a.unshift(await stateId(roomId, 'm.room.create'));
  return a;
}

/** Whether alice's client sees the event: in all of GET /event, /messages, /context and /sync, or in none. */
async function served(roomId: string, eventId: string): Promise<boolean> {
  const r = `/rooms/${enc(roomId)}`;
  const ev = await alice.call('GET', `${r}/event/${enc(eventId)}`);
  const messages = await alice.ok('GET', `${r}/messages?dir=b&limit=100`);
  const context = await alice.call('GET', `${r}/context/${enc(eventId)}`);
  const sync = await alice.ok('GET', '/sync?filter=' + enc(JSON.stringify({ room: { timeline: { limit: 100 } } })));
  const timeline = sync.rooms?.join?.[roomId]?.timeline?.events ?? [];
  const seen = [
    ev.status === 200,
    messages.chunk.some((e: JsonObject) => e['event_id'] === eventId),
    context.status === 200,
    timeline.some((e: JsonObject) => e['event_id'] === eventId),
  ];
  if (seen.some(Boolean) && !seen.every(Boolean)) assert.fail(`served by some endpoints only: ${JSON.stringify(seen)}`);
  // State events: GET /state lists only the current state's.
  const state = await alice.ok('GET', `${r}/state`);
  const inState = state.some((e: JsonObject) => e['event_id'] === eventId);
  if (inState) assert.ok(seen[0], 'in /state but not served');
  return seen[0]!;
}

for (const version of ['1', '10', '12']) {
  test(`v${version}: an accepted remote join and message are served; the message extends the DAG`, async () => {
    const { roomId, eveJoin } = await roomWithEve(version);
    assert.equal((await s.hs.services.rooms.getMembership(roomId, EVE))?.membership, 'join');
    assert.deepEqual(await extremities(roomId), [eveJoin]);
    const msg = await remoteEvent(roomId, { type: 'm.room.message', sender: EVE, content: { msgtype: 'm.text', body: 'hello from afar' } }, [eveJoin], await eveAuth(roomId, version));
    const r = await writer().persistIncoming(roomId, msg);
    assert.equal(r.outcome, 'accepted');
    await r.persisted;
    assert.ok(await served(roomId, msg.eventId));
    // Alice's next event cites it; a second delivery is a duplicate and writes nothing.
    const next = await alice.send(roomId);
    assert.deepEqual(refIds((await s.hs.services.rooms.getPdu(next))!.prev_events), [msg.eventId]);
    const again = await writer().persistIncoming(roomId, msg);
    assert.equal(again.duplicate, true);
    assert.equal(again.outcome, 'accepted');
  });

  test(`v${version}: rejected events (auth events, state before) are kept but never served and change nothing`, async () => {
    const { roomId, eveJoin } = await roomWithEve(version);
    const stateBefore = new Map((await s.hs.services.rooms.getCurrentStateIds(roomId))!);
    const extremsBefore = await extremities(roomId);
    // Step 4: a topic at power 0 (state_default is 50).
    const topic = await remoteEvent(roomId, { type: 'm.room.topic', sender: EVE, state_key: '', content: { topic: 'hijacked' } }, [eveJoin], await eveAuth(roomId, version));
    const r1 = await writer().persistIncoming(roomId, topic);
    assert.equal(r1.outcome, 'rejected');
    assert.match(r1.reason!, /power|level/i);
    // Step 4: a message citing no membership at all.
    const auths = (await eveAuth(roomId, version)).filter((id) => id !== eveJoin);
    const noMember = await remoteEvent(roomId, { type: 'm.room.message', sender: EVE, content: { body: 'x' } }, [eveJoin], auths);
    const r2 = await writer().persistIncoming(roomId, noMember);
    assert.equal(r2.outcome, 'rejected');
    await Promise.all([r1.persisted, r2.persisted]);
    for (const id of [topic.eventId, noMember.eventId]) {
      const stored = await s.hs.services.rooms.getEvent(id);
      assert.ok(stored, 'kept');
      assert.notEqual(stored.rejectedReason, null);
      assert.equal(await served(roomId, id), false);
    }
    assert.deepEqual(await s.hs.services.rooms.getCurrentStateIds(roomId), stateBefore);
    assert.deepEqual(await extremities(roomId), extremsBefore);
    // Redacting a rejected event: it does not exist as far as clients go.
    const red = await alice.call('PUT', `/rooms/${enc(roomId)}/redact/${enc(noMember.eventId)}/t1`, {});
    assert.equal(red.status, 404);
    // An event citing a rejected event as an auth event is rejected too (auth_events rule).
    const citing = await remoteEvent(roomId, { type: 'm.room.message', sender: EVE, content: { body: 'y' } }, [eveJoin], [...(await eveAuth(roomId, version)).filter((id) => id !== eveJoin), topic.eventId, eveJoin]);
    const r3 = await writer().persistIncoming(roomId, citing);
    assert.equal(r3.outcome, 'rejected');
    await r3.persisted;
    // After all that, local sends still work and cite the unchanged extremities.
    const next = await alice.send(roomId);
    assert.deepEqual(refIds((await s.hs.services.rooms.getPdu(next))!.prev_events).slice().sort(), extremsBefore);
  });

  test(`v${version}: a message from a banned user citing pre-ban state is soft-failed: stored, never served, not an extremity`, async () => {
    const { roomId, eveJoin } = await roomWithEve(version);
    const preBanAuth = await eveAuth(roomId, version);
    await alice.ok('POST', `/rooms/${enc(roomId)}/ban`, { user_id: EVE, reason: 'spam' });
    const banExtremities = await extremities(roomId);
    const stateBefore = new Map((await s.hs.services.rooms.getCurrentStateIds(roomId))!);
    const msg = await remoteEvent(roomId, { type: 'm.room.message', sender: EVE, content: { body: 'evading the ban' } }, [eveJoin], preBanAuth);
    const r = await writer().persistIncoming(roomId, msg);
    assert.equal(r.outcome, 'soft_failed');
    await r.persisted;
    const stored = await s.hs.services.rooms.getEvent(msg.eventId);
    assert.equal(stored?.softFailed, true);
    assert.equal(stored?.rejectedReason, null);
    assert.equal(await served(roomId, msg.eventId), false);
    assert.deepEqual(await extremities(roomId), banExtremities);
    assert.deepEqual(await s.hs.services.rooms.getCurrentStateIds(roomId), stateBefore);
    // A soft-failed state event is kept with its own state (for later resolution) but changes nothing now.
    const rename = await remoteEvent(roomId, { type: 'm.room.member', sender: EVE, state_key: EVE, content: { membership: 'join', displayname: 'still here' } }, [eveJoin], [...preBanAuth, await stateId(roomId, 'm.room.join_rules')]);
    const r2 = await writer().persistIncoming(roomId, rename);
    assert.equal(r2.outcome, 'soft_failed', r2.reason);
    await r2.persisted;
    const renamed = await s.hs.services.rooms.getEvent(rename.eventId);
    assert.equal((await s.hs.services.rooms.getStateIdsAtEvent(rename.eventId))?.get(stateKey('m.room.member', EVE)), rename.eventId);
    assert.equal(renamed?.softFailed, true);
    assert.equal((await s.hs.services.rooms.getMembership(roomId, EVE))?.membership, 'ban');
    assert.equal(await served(roomId, rename.eventId), false);
  });

  test(`v${version}: an accepted state event on a fork: two extremities, the current state is their resolution`, async () => {
    const { roomId, eveJoin } = await roomWithEve(version);
    const auth = await eveAuth(roomId, version);
    // Alice talks meanwhile (her server has not seen eve's next event yet).
    await alice.send(roomId);
    const aliceTip = await extremities(roomId);
    const rename = await remoteEvent(roomId, { type: 'm.room.member', sender: EVE, state_key: EVE, content: { membership: 'join', displayname: 'Eve' } }, [eveJoin], [...auth, await stateId(roomId, 'm.room.join_rules')]);
    const r = await writer().persistIncoming(roomId, rename);
    assert.equal(r.outcome, 'accepted', r.reason);
    await r.persisted;
    assert.deepEqual(await extremities(roomId), [...aliceTip, rename.eventId].sort());
    assert.equal(await stateId(roomId, 'm.room.member', EVE), rename.eventId);
    assert.ok(await served(roomId, rename.eventId));
    // The next local event merges the fork.
    const merge = await alice.send(roomId);
    assert.deepEqual(refIds((await s.hs.services.rooms.getPdu(merge))!.prev_events).slice().sort(), [...aliceTip, rename.eventId].sort());
    assert.deepEqual(await extremities(roomId), [merge]);
    // Unknown prev events: the caller must fetch them first.
    const orphan = await remoteEvent(roomId, { type: 'm.room.message', sender: EVE, content: { body: 'z' } }, [eveJoin], auth);
    orphan.pdu.prev_events = ['$missing'];
    await assert.rejects(writer().persistIncoming(roomId, orphan), (err: unknown) => err instanceof MissingEventsError && err.missing.includes('$missing'));
  });
}
