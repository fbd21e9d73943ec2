// The push rules API over HTTP (pushrules.yaml) and what the rules do to unread counts and
// GET /notifications: muted rooms and senders stay at zero, mentions highlight.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { startTestServer, type TestServer } from '../../testing.ts';
import { TestUser, type Json } from '../../sync/test-client.ts';

let server: TestServer;
let n = 0;
const user = (name: string) => TestUser.register(server.baseUrl, `${name}${++n}`);
const enc = encodeURIComponent;

before(async () => {
  server = await startTestServer();
});
after(async () => {
  await server?.stop();
});

const counts = (s: Json, roomId: string) => s.rooms.join[roomId]?.unread_notifications;

describe('push rules API', () => {
  test('GET returns the predefined rules in the spec order', async () => {
    const u = await user('pr');
    const all = await u.ok('GET', '/pushrules/');
    assert.deepEqual(
      all.global.override.map((r: Json) => r.rule_id),
      ['.m.rule.master', '.m.rule.suppress_notices', '.m.rule.invite_for_me', '.m.rule.member_event', '.m.rule.is_user_mention', '.m.rule.is_room_mention', '.m.rule.tombstone', '.m.rule.reaction', '.m.rule.room.server_acl', '.m.rule.suppress_edits'],
    );
    assert.deepEqual(all.global.content, []);
    assert.deepEqual(
      all.global.underride.map((r: Json) => r.rule_id),
      ['.m.rule.call', '.m.rule.encrypted_room_one_to_one', '.m.rule.room_one_to_one', '.m.rule.message', '.m.rule.encrypted'],
    );
    assert.deepEqual(await u.ok('GET', '/pushrules/global/'), all.global);
    const master = await u.ok('GET', '/pushrules/global/override/.m.rule.master');
    assert.equal(master.enabled, false);
    assert.equal((await u.call('GET', '/pushrules/global/override/nope')).status, 404);
    assert.equal((await u.call('GET', '/pushrules/global/sideways/x')).status, 400);
  });

  test('PUT places rules with before/after; enabled, actions and DELETE', async () => {
    const u = await user('pr');
    const put = (id: string, q = '') => u.call('PUT', `/pushrules/global/content/${id}${q}`, { pattern: id, actions: ['notify'] });
    assert.equal((await put('a')).status, 200);
    assert.equal((await put('b')).status, 200); // new rules go first
    assert.equal((await put('c', '?after=a')).status, 200);
    assert.equal((await put('d', '?before=b')).status, 200);
    const ids = async () => (await u.ok('GET', '/pushrules/global/')).content.map((r: Json) => r.rule_id);
    assert.deepEqual(await ids(), ['d', 'b', 'a', 'c']);
    assert.equal((await put('e', '?before=zzz')).status, 404);
    assert.equal((await u.call('PUT', '/pushrules/global/content/f?after=.m.rule.master', { pattern: 'f', actions: [] })).status, 400);
    assert.equal((await u.call('PUT', '/pushrules/global/content/g', { actions: ['notify'] })).status, 400, 'content rules need a pattern');
    assert.equal((await u.call('PUT', '/pushrules/global/override/.m.rule.master', { actions: [] })).status, 400, 'reserved ids');

    await u.ok('PUT', '/pushrules/global/content/a/enabled', { enabled: false });
    assert.deepEqual(await u.ok('GET', '/pushrules/global/content/a/enabled'), { enabled: false });
    await u.ok('PUT', '/pushrules/global/content/a/actions', { actions: ['notify', { set_tweak: 'highlight' }] });
    assert.deepEqual(await u.ok('GET', '/pushrules/global/content/a/actions'), { actions: ['notify', { set_tweak: 'highlight' }] });
    // Replacing a rule keeps its enabled flag and place.
    await put('a');
    const a = await u.ok('GET', '/pushrules/global/content/a');
    assert.equal(a.enabled, false);
    assert.deepEqual(await ids(), ['d', 'b', 'a', 'c']);
    // Default rules can be switched and given actions, not deleted.
    await u.ok('PUT', '/pushrules/global/override/.m.rule.suppress_notices/enabled', { enabled: false });
    assert.equal((await u.ok('GET', '/pushrules/global/override/.m.rule.suppress_notices')).enabled, false);
    assert.equal((await u.call('DELETE', '/pushrules/global/override/.m.rule.suppress_notices')).status, 400);
    await u.ok('DELETE', '/pushrules/global/content/b');
    assert.deepEqual(await ids(), ['d', 'a', 'c']);
    assert.equal((await u.call('DELETE', '/pushrules/global/content/b')).status, 404);
  });

  test('changes reach /sync as m.push_rules account data', async () => {
    const u = await user('pr');
    const s0 = await u.sync();
    await u.ok('PUT', '/pushrules/global/room/!abc:localhost', { actions: [] });
    const s1 = await u.sync({ since: s0.next_batch, timeout: 5000 });
    const rules = s1.account_data.events.find((e: Json) => e.type === 'm.push_rules');
    assert.ok(rules.content.global.room.some((r: Json) => r.rule_id === '!abc:localhost'));
  });
});

describe('unread counts follow the push rules', () => {
  test('a muted room and a muted sender give no counts; an @-mention highlights', async () => {
    const alice = await user('alice');
    const bob = await user('bob');
    const carol = await user('carol');
    const loud = await alice.createRoom({ preset: 'public_chat' });
    const muted = await alice.createRoom({ preset: 'public_chat' });
    for (const u of [bob, carol]) {
      await u.join(loud);
      await u.join(muted);
    }
    await bob.ok('PUT', `/pushrules/global/room/${enc(muted)}`, { actions: [] });
    await bob.ok('PUT', `/pushrules/global/sender/${enc(carol.id)}`, { actions: [] });
    const b0 = await bob.sync();

    await alice.send(muted, 'into the muted room');
    await carol.send(loud, 'from a muted sender');
    await alice.send(loud, 'hello all');
    await alice.send(loud, { msgtype: 'm.text', body: 'hey bob', 'm.mentions': { user_ids: [bob.id] } });

    const b1 = await bob.sync();
    assert.deepEqual(counts(b1, muted), { notification_count: 0, highlight_count: 0 });
    assert.deepEqual(counts(b1, loud), { notification_count: 2, highlight_count: 1 });
    const inc = await bob.sync({ since: b0.next_batch });
    assert.deepEqual(counts(inc, loud), { notification_count: 2, highlight_count: 1 });

    // Carol (no rules) counts everything in the 3-member room except her own message.
    const c = await carol.sync();
    assert.deepEqual(counts(c, loud), { notification_count: 2, highlight_count: 0 });

    // GET /notifications: newest first, only=highlight, pagination.
    const all = await bob.ok('GET', '/notifications');
    assert.deepEqual(all.notifications.map((x: Json) => x.event.content.body), ['hey bob', 'hello all']);
    assert.equal(all.notifications[0].room_id, loud);
    assert.equal(all.notifications[0].read, false);
    const hl = await bob.ok('GET', '/notifications?only=highlight');
    assert.deepEqual(hl.notifications.map((x: Json) => x.event.content.body), ['hey bob']);
    const p1 = await bob.ok('GET', '/notifications?limit=1');
    assert.equal(p1.notifications.length, 1);
    assert.equal(typeof p1.next_token, 'string');
    const p2 = await bob.ok('GET', `/notifications?limit=1&from=${p1.next_token}`);
    assert.deepEqual(p2.notifications.map((x: Json) => x.event.content.body), ['hello all']);
    const last = all.notifications[0].event.event_id;
    await bob.ok('POST', `/rooms/${enc(loud)}/receipt/m.read/${enc(last)}`, {});
    assert.equal((await bob.ok('GET', '/notifications')).notifications[0].read, true);
    assert.deepEqual(counts(await bob.sync(), loud), { notification_count: 0, highlight_count: 0 });
  });

  test('master rule off switch silences everything; ignored users do not notify', async () => {
    const alice = await user('alice');
    const bob = await user('bob');
    const dave = await user('dave');
    const roomId = await alice.createRoom({ preset: 'public_chat' });
    await bob.join(roomId);
    await dave.join(roomId);
    await bob.ok('PUT', `/user/${enc(bob.id)}/account_data/m.ignored_user_list`, { ignored_users: { [dave.id]: {} } });
    await dave.send(roomId, 'ignored');
    await alice.send(roomId, 'counted');
    assert.deepEqual(counts(await bob.sync(), roomId), { notification_count: 1, highlight_count: 0 });
    await bob.ok('PUT', '/pushrules/global/override/.m.rule.master/enabled', { enabled: true });
    await alice.send(roomId, 'silenced');
    assert.deepEqual(counts(await bob.sync(), roomId), { notification_count: 1, highlight_count: 0 });
  });

  test('push actions are written with their event: committed when the send returns', async () => {
    const alice = await user('alice');
    const bob = await user('bob');
    const carol = await user('carol');
    const roomId = await alice.createRoom({ preset: 'public_chat' });
    await bob.join(roomId);
    await carol.join(roomId);
    // An ignore list of someone else changes nothing for alice's events.
    await carol.ok('PUT', `/user/${enc(carol.id)}/account_data/m.ignored_user_list`, { ignored_users: { '@someone:elsewhere': {} } });
    const eventId = await alice.send(roomId, 'at once');
    // No waiting: the rows are in the database as soon as the event is.
    const { rows } = await sql<{ user_id: string; stream_ordering: string }>`select user_id, stream_ordering from event_push_actions where event_id = ${eventId}`.execute(server.hs.db);
    assert.deepEqual(rows.map((r) => r.user_id).sort(), [bob.id, carol.id].sort());
    const { rows: ev } = await sql<{ stream_ordering: string }>`select stream_ordering from events where event_id = ${eventId}`.execute(server.hs.db);
    assert.equal(String(rows[0]!.stream_ordering), String(ev[0]!.stream_ordering));
    // A sync right after the send has the event and its count together.
    const b = await bob.sync();
    assert.equal(b.rooms.join[roomId].timeline.events.at(-1).event_id, eventId);
    assert.deepEqual(counts(b, roomId), { notification_count: 1, highlight_count: 0 });
  });
});
