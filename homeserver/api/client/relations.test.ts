// Relations, threads, bundled aggregations and redactions, over HTTP.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../../testing.ts';
import { Client, enc, newClient } from './rooms-testkit.ts';

let s: TestServer;
let alice: Client;
let bob: Client;

before(async () => {
  s = await startTestServer();
  alice = await newClient(s, 'alice');
  bob = await newClient(s, 'bob');
});
after(async () => {
  await s.stop();
});

async function v1(c: Client, path: string): Promise<{ status: number; body: any }> {
  const r = await fetch(`${s.baseUrl}/_matrix/client/v1${path}`, { headers: { authorization: `Bearer ${c.user.accessToken}` } });
  return { status: r.status, body: await r.json() };
}

async function sharedRoom(): Promise<string> {
  const roomId = await alice.createRoom({ preset: 'public_chat' });
  await bob.ok('POST', `/join/${enc(roomId)}`, {});
  return roomId;
}

function edit(original: string, body: string) {
  return { msgtype: 'm.text', body: `* ${body}`, 'm.new_content': { msgtype: 'm.text', body }, 'm.relates_to': { rel_type: 'm.replace', event_id: original } };
}

async function getEvent(c: Client, roomId: string, eventId: string): Promise<any> {
  return c.ok('GET', `/rooms/${enc(roomId)}/event/${enc(eventId)}`);
}

test('edits: the latest valid edit is bundled; invalid ones, edits of edits and redacted edits are not', async () => {
  const roomId = await sharedRoom();
  const original = await alice.send(roomId, { msgtype: 'm.text', body: 'first' });
  assert.equal((await getEvent(alice, roomId, original)).unsigned['m.relations'], undefined);
  const e1 = await alice.send(roomId, edit(original, 'second'));
  // Bob may not edit Alice's message; an edit without m.new_content is no edit.
  await bob.send(roomId, edit(original, 'hijack'));
  await alice.send(roomId, { msgtype: 'm.text', body: 'no new content', 'm.relates_to': { rel_type: 'm.replace', event_id: original } });
  let bundled = (await getEvent(bob, roomId, original)).unsigned['m.relations']['m.replace'];
  assert.equal(bundled.event_id, e1);
  assert.equal(bundled.content['m.new_content'].body, 'second');
  // The original's content is left intact.
  assert.equal((await getEvent(bob, roomId, original)).content.body, 'first');
  const e2 = await alice.send(roomId, edit(original, 'third'));
  // An edit of an edit is ignored: the edit itself gets no bundle.
  await alice.send(roomId, edit(e2, 'edit of edit'));
  assert.equal((await getEvent(alice, roomId, e2)).unsigned['m.relations'], undefined);
  bundled = (await getEvent(alice, roomId, original)).unsigned['m.relations']['m.replace'];
  assert.equal(bundled.event_id, e2);
  // Redacting the latest edit reverts to the previous one.
  await alice.ok('PUT', `/rooms/${enc(roomId)}/redact/${enc(e2)}/r1`, {});
  bundled = (await getEvent(alice, roomId, original)).unsigned['m.relations']['m.replace'];
  assert.equal(bundled.event_id, e1);
  // In /messages too.
  const page = await alice.ok('GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=20`);
  const inPage = page.chunk.find((e: any) => e.event_id === original);
  assert.equal(inPage.unsigned['m.relations']['m.replace'].event_id, e1);
  // Redacting the original: content gone, no m.replace bundled.
  await alice.ok('PUT', `/rooms/${enc(roomId)}/redact/${enc(original)}/r2`, {});
  const redacted = await getEvent(alice, roomId, original);
  assert.deepEqual(redacted.content, {});
  assert.equal(redacted.unsigned['m.relations'], undefined);
  assert.ok(redacted.unsigned.redacted_because);
});

test('threads: summary with latest event, count and participation; /threads lists by activity; a thread cannot start from a relation', async () => {
  const roomId = await sharedRoom();
  const root1 = await alice.send(roomId, { msgtype: 'm.text', body: 'root one' });
  const root2 = await alice.send(roomId, { msgtype: 'm.text', body: 'root two' });
  const reply = (root: string, body: string) => ({ msgtype: 'm.text', body, 'm.relates_to': { rel_type: 'm.thread', event_id: root, is_falling_back: true, 'm.in_reply_to': { event_id: root } } });
  await alice.send(roomId, reply(root1, 'r1 a'));
  const last1 = await alice.send(roomId, reply(root1, 'r1 b'));
  const r2 = await bob.send(roomId, reply(root2, 'r2 a'));
  const summary = (await getEvent(alice, roomId, root1)).unsigned['m.relations']['m.thread'];
  assert.equal(summary.count, 2);
  assert.equal(summary.latest_event.event_id, last1);
  assert.equal(summary.current_user_participated, true);
  const bobView = (await getEvent(bob, roomId, root1)).unsigned['m.relations']['m.thread'];
  assert.equal(bobView.current_user_participated, false);
  // The latest event carries its own edit.
  const e = await alice.send(roomId, { ...edit(last1, 'r1 b edited'), 'm.relates_to': { rel_type: 'm.replace', event_id: last1 } });
  const withEdit = (await getEvent(alice, roomId, root1)).unsigned['m.relations']['m.thread'];
  assert.equal(withEdit.latest_event.unsigned['m.relations']['m.replace'].event_id, e);

  // Most recently active first: root2's thread got a reply after root1's last reply.
  const all = await v1(alice, `/rooms/${enc(roomId)}/threads`);
  assert.equal(all.status, 200);
  assert.deepEqual(all.body.chunk.map((x: any) => x.event_id), [root2, root1]);
  assert.equal(all.body.chunk[1].unsigned['m.relations']['m.thread'].count, 2);
  const paged = await v1(alice, `/rooms/${enc(roomId)}/threads?limit=1`);
  assert.deepEqual(paged.body.chunk.map((x: any) => x.event_id), [root2]);
  const next = await v1(alice, `/rooms/${enc(roomId)}/threads?limit=1&from=${enc(paged.body.next_batch)}`);
  assert.deepEqual(next.body.chunk.map((x: any) => x.event_id), [root1]);
  assert.equal(next.body.next_batch, undefined);
  const mine = await v1(bob, `/rooms/${enc(roomId)}/threads?include=participated`);
  assert.deepEqual(mine.body.chunk.map((x: any) => x.event_id), [root2]);

  // threading.md: no thread off an event that has a relation.
  const bad = await alice.call('PUT', `/rooms/${enc(roomId)}/send/m.room.message/bad1`, reply(r2, 'nested'));
  assert.equal(bad.status, 400);
  assert.equal(bad.body.errcode, 'M_UNKNOWN');

  // Redacting a reply takes it out of the count.
  await alice.ok('PUT', `/rooms/${enc(roomId)}/redact/${enc(last1)}/rr`, {});
  const after = (await getEvent(alice, roomId, root1)).unsigned['m.relations']['m.thread'];
  assert.equal(after.count, 1);
  assert.notEqual(after.latest_event.event_id, last1);
});

test('/relations: filters by type, pages, recurses; annotations are counted by clients and not duplicated', async () => {
  const roomId = await sharedRoom();
  const target = await alice.send(roomId, { msgtype: 'm.text', body: 'react to me' });
  const react = (key: string) => ({ 'm.relates_to': { rel_type: 'm.annotation', event_id: target, key } });
  const r1 = (await alice.ok('PUT', `/rooms/${enc(roomId)}/send/m.reaction/a1`, react('👍'))).event_id;
  await bob.ok('PUT', `/rooms/${enc(roomId)}/send/m.reaction/b1`, react('👍'));
  await bob.ok('PUT', `/rooms/${enc(roomId)}/send/m.reaction/b2`, react('🎉'));
  // The same annotation twice: M_DUPLICATE_ANNOTATION; retrying the same transaction is fine.
  const dup = await alice.call('PUT', `/rooms/${enc(roomId)}/send/m.reaction/a2`, react('👍'));
  assert.equal(dup.status, 400);
  assert.equal(dup.body.errcode, 'M_DUPLICATE_ANNOTATION');
  const again = await alice.ok('PUT', `/rooms/${enc(roomId)}/send/m.reaction/a1`, react('👍'));
  assert.equal(again.event_id, r1);
  const ref = await bob.send(roomId, { msgtype: 'm.text', body: 'see above', 'm.relates_to': { rel_type: 'm.reference', event_id: target } });
  // A reaction to the reference (second level).
  const deep = (await alice.ok('PUT', `/rooms/${enc(roomId)}/send/m.reaction/a3`, { 'm.relates_to': { rel_type: 'm.annotation', event_id: ref, key: '👀' } })).event_id;

  const annotations = await v1(alice, `/rooms/${enc(roomId)}/relations/${enc(target)}/m.annotation/m.reaction`);
  assert.equal(annotations.status, 200);
  const counts: Record<string, number> = {};
  for (const e of annotations.body.chunk) counts[e.content['m.relates_to'].key] = (counts[e.content['m.relates_to'].key] ?? 0) + 1;
  assert.deepEqual(counts, { '👍': 2, '🎉': 1 });
  assert.equal(annotations.body.recursion_depth, undefined);
  // Newest first by default; pages of 2.
  const p1 = await v1(alice, `/rooms/${enc(roomId)}/relations/${enc(target)}?limit=2`);
  assert.equal(p1.body.chunk[0].event_id, ref);
  assert.ok(p1.body.next_batch);
  const p2 = await v1(alice, `/rooms/${enc(roomId)}/relations/${enc(target)}?limit=2&from=${enc(p1.body.next_batch)}`);
  const p3 = p2.body.next_batch ? await v1(alice, `/rooms/${enc(roomId)}/relations/${enc(target)}?limit=2&from=${enc(p2.body.next_batch)}`) : { body: { chunk: [] } };
  assert.equal(p1.body.chunk.length + p2.body.chunk.length + p3.body.chunk.length, 4);
  const fwd = await v1(alice, `/rooms/${enc(roomId)}/relations/${enc(target)}?dir=f`);
  assert.equal(fwd.body.chunk[0].event_id, r1);
  // recurse reaches the reaction to the reference.
  const rec = await v1(alice, `/rooms/${enc(roomId)}/relations/${enc(target)}?recurse=true`);
  assert.ok(rec.body.chunk.some((e: any) => e.event_id === deep));
  assert.equal(typeof rec.body.recursion_depth, 'number');
  const flat = await v1(alice, `/rooms/${enc(roomId)}/relations/${enc(target)}`);
  assert.ok(!flat.body.chunk.some((e: any) => e.event_id === deep));
  // m.reference is bundled; annotations are not (event_annotations.md).
  const bundled = (await getEvent(alice, roomId, target)).unsigned['m.relations'];
  assert.deepEqual(bundled['m.reference'], { chunk: [{ event_id: ref }] });
  assert.equal(bundled['m.annotation'], undefined);
  // A redacted reaction leaves the relations.
  await alice.ok('PUT', `/rooms/${enc(roomId)}/redact/${enc(r1)}/x1`, {});
  const afterRedact = await v1(alice, `/rooms/${enc(roomId)}/relations/${enc(target)}/m.annotation`);
  assert.equal(afterRedact.body.chunk.length, 2);
  // And then the annotation can be sent again.
  await alice.ok('PUT', `/rooms/${enc(roomId)}/send/m.reaction/a4`, react('👍'));
  // Outsiders: 403; unknown event: 404.
  const carol = await newClient(s, 'carol');
  const privateRoom = await alice.createRoom({ preset: 'private_chat' });
  const secret = await alice.send(privateRoom, { msgtype: 'm.text', body: 'x' });
  assert.equal((await v1(carol, `/rooms/${enc(privateRoom)}/relations/${enc(secret)}`)).status, 403);
  assert.equal((await v1(carol, `/rooms/${enc(privateRoom)}/threads`)).status, 403);
  assert.equal((await v1(alice, `/rooms/${enc(roomId)}/relations/${enc('$missing')}`)).status, 404);
});

test('ignored users are left out of aggregations', async () => {
  const roomId = await sharedRoom();
  const root = await alice.send(roomId, { msgtype: 'm.text', body: 'root' });
  await bob.send(roomId, { msgtype: 'm.text', body: 'from bob', 'm.relates_to': { rel_type: 'm.thread', event_id: root } });
  const mine = await alice.send(roomId, { msgtype: 'm.text', body: 'from alice', 'm.relates_to': { rel_type: 'm.thread', event_id: root } });
  await alice.ok('PUT', `/user/${enc(alice.userId)}/account_data/m.ignored_user_list`, { ignored_users: { [bob.userId]: {} } });
  const t = (await getEvent(alice, roomId, root)).unsigned['m.relations']['m.thread'];
  assert.equal(t.count, 1);
  assert.equal(t.latest_event.event_id, mine);
});
