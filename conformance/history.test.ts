// History, discovery and search journeys with matrix-js-sdk clients (issue 6): scrolling back through
// 500 messages, jumping to an event with /context, edits, threads, reactions and redactions as the
// client sees them, the room directory, the user directory, server-side search with highlights, and a
// walk through a space. Every response is validated against the spec's OpenAPI definitions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Direction,
  EventTimeline,
  MsgType,
  Preset,
  ThreadFilterType,
  Visibility,
  type IRoomEvent,
  type MatrixClient,
  type MatrixEvent,
  type Room,
} from 'matrix-js-sdk';
import { withHarness, type Harness } from './harness.ts';
import { registerWithDummy, startSyncing, waitUntil } from './journey-kit.ts';

const T = { timeout: 240_000 };

interface User {
  client: MatrixClient;
  userId: string;
  token: string;
}

/** Registers a user; the client is not started (see `start`). */
async function register(h: Harness, username: string): Promise<User> {
  const r = await registerWithDummy(h.newClient(), username);
  const client = h.newClient(r.userId, r.accessToken, r.deviceId);
  // getEventTimeline (/context) needs timeline support.
  client.timelineSupport = true;
  return { client, userId: r.userId, token: r.accessToken };
}

const start = (u: User, initialSyncLimit = 20): Promise<MatrixClient> => startSyncing(u.client, initialSyncLimit);

const room = (c: MatrixClient, roomId: string) => waitUntil(`${c.getUserId()} to have ${roomId}`, () => c.getRoom(roomId));
const messages = (r: Room) => r.getLiveTimeline().getEvents().filter((e: MatrixEvent) => e.getType() === 'm.room.message');

/** Sends many messages over plain HTTP, several at a time (the order among them is the server's). */
async function seed(h: Harness, token: string, roomId: string, bodies: string[], parallel = 16): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < bodies.length) {
      const i = next++;
      const res = await h.fetch(`${h.baseUrl}/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/seed${i}`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ msgtype: MsgType.Text, body: bodies[i] }),
      });
      assert.equal(res.status, 200, await res.text());
    }
  };
  await Promise.all(Array.from({ length: parallel }, lane));
}

/** The bundled aggregations of an event as served (client-server-api "Aggregations of child events"). */
const relationsOf = (e: Partial<IRoomEvent> | IRoomEvent) => (e.unsigned as Record<string, any> | undefined)?.['m.relations'] as Record<string, any> | undefined;

test('scroll back through 500 messages in pages, then jump to an event with its context', T, async () => {
  await withHarness(async (h) => {
    const alice = await register(h, 'alice');
    const { room_id: roomId } = await alice.client.createRoom({ preset: Preset.PrivateChat, name: 'Long history' });
    const sent = Array.from({ length: 500 }, (_, i) => `message ${i}`);
    await seed(h, alice.token, roomId, sent);

    const c = await start(alice, 20);
    const r = await room(c, roomId);
    await waitUntil('the newest messages', () => messages(r).length >= 20);
    let pages = 0;
    while (r.getLiveTimeline().getPaginationToken(Direction.Backward) !== null) {
      await c.scrollback(r, 50);
      pages++;
      assert.ok(pages < 40, 'scrollback ends');
    }
    assert.ok(pages >= 10, `500 messages took ${pages} pages of 50`);
    const timeline = r.getLiveTimeline().getEvents();
    assert.equal(timeline[0]!.getType(), 'm.room.create', 'scrolled back to the start of the room');
    const got = messages(r).map((e) => e.getContent().body as string);
    assert.equal(got.length, 500, 'every message once');
    assert.deepEqual([...got].sort(), [...sent].sort());

    // Forward pagination from the start yields the same order the client assembled backwards.
    const forward: string[] = [];
    let from: string | null = null;
    for (let i = 0; i < 20; i++) {
      const page = await c.createMessagesRequest(roomId, from, 100, Direction.Forward);
      forward.push(...page.chunk.filter((e) => e.type === 'm.room.message').map((e) => e.content.body as string));
      if (!page.end || page.chunk.length === 0) break;
      from = page.end;
    }
    assert.deepEqual(forward, got);

    // Jump to an event in the middle from a second device that has only the newest messages: the client
    // loads a timeline around it with /context and pages on from there.
    const target = messages(r)[250]!;
    const second = h.newClient(alice.userId, alice.token, 'SECOND');
    second.timelineSupport = true;
    await start({ client: second, userId: alice.userId, token: alice.token }, 5);
    const r2 = await room(second, roomId);
    assert.equal(r2.findEventById(target.getId()!), undefined, 'not loaded yet');
    const tl = (await second.getEventTimeline(r2.getUnfilteredTimelineSet(), target.getId()!)) as EventTimeline;
    assert.ok(tl, 'a timeline around the event');
    assert.notEqual(tl, r2.getLiveTimeline());
    const around = tl.getEvents().map((e) => e.getContent().body as string);
    assert.ok(around.includes('message 0') === false && around.includes(target.getContent().body), 'the event itself, not the whole room');
    const before = tl.getEvents().length;
    assert.equal(await second.paginateEventTimeline(tl, { backwards: true, limit: 20 }), true);
    assert.ok(tl.getEvents().length > before, 'more events loaded before the jump');
    await second.paginateEventTimeline(tl, { backwards: false, limit: 20 });
    const tlBodies = tl.getEvents().filter((e) => e.getType() === 'm.room.message').map((e) => e.getContent().body as string);
    const at = got.indexOf(tlBodies[0]!);
    assert.deepEqual(tlBodies, got.slice(at, at + tlBodies.length), 'a contiguous slice of the room');
    const ctx = await h.fetch(`${h.baseUrl}/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/context/${encodeURIComponent(target.getId()!)}?limit=10`, {
      headers: { authorization: `Bearer ${alice.token}` },
    });
    const body = (await ctx.json()) as { events_before: IRoomEvent[]; events_after: IRoomEvent[]; event: IRoomEvent; start: string; end: string; state: IRoomEvent[] };
    assert.equal(body.event.event_id, target.getId());
    assert.deepEqual(body.events_before.map((e) => e.content.body), got.slice(245, 250).reverse());
    assert.deepEqual(body.events_after.map((e) => e.content.body), got.slice(251, 256));
    assert.ok(body.state.some((e) => e.type === 'm.room.create'), 'state at the event');
    // Paginating on from the context's tokens continues without gaps.
    const back = await c.createMessagesRequest(roomId, body.start, 3, Direction.Backward);
    assert.deepEqual(back.chunk.map((e) => e.content.body), got.slice(242, 245).reverse());
    const fwd = await c.createMessagesRequest(roomId, body.end, 3, Direction.Forward);
    assert.deepEqual(fwd.chunk.map((e) => e.content.body), got.slice(256, 259));

    // /timestamp_to_event lands on an event at or after the time asked.
    const ts = target.getTs();
    const found = await c.timestampToEvent(roomId, ts, Direction.Forward);
    assert.ok(found.origin_server_ts >= ts);
  });
});

test('edit a message and see the edit bundled; reply in a thread and list threads; react and count', T, async () => {
  await withHarness(async (h) => {
    const alice = await register(h, 'alice');
    const bob = await register(h, 'bob');
    const carol = await register(h, 'carol');
    const a = await start(alice);
    const b = await start(bob);
    const c = await start(carol);
    const { room_id: roomId } = await a.createRoom({ preset: Preset.PublicChat });
    await b.joinRoom(roomId);
    await c.joinRoom(roomId);

    // Edit: the original is served with the latest replacement bundled (m.replace).
    const { event_id: original } = await a.sendMessage(roomId, { msgtype: MsgType.Text, body: 'Meeting at 3' });
    const edit = await a.sendMessage(roomId, {
      msgtype: MsgType.Text,
      body: '* Meeting at 4',
      'm.new_content': { msgtype: MsgType.Text, body: 'Meeting at 4' },
      'm.relates_to': { rel_type: 'm.replace', event_id: original },
    } as never);
    const fetched = await b.fetchRoomEvent(roomId, original);
    assert.equal(fetched.content!['body'], 'Meeting at 3', 'the original content is unchanged');
    assert.equal(relationsOf(fetched)?.['m.replace']?.event_id, edit.event_id);
    // Bob's synced client applies the edit.
    const bobRoom = await room(b, roomId);
    await waitUntil('bob sees the edit applied', () => bobRoom.findEventById(original)?.getContent().body === 'Meeting at 4');
    // /messages bundles it too.
    const page = await b.createMessagesRequest(roomId, null, 20, Direction.Backward);
    const inPage = page.chunk.find((e) => e.event_id === original)!;
    assert.equal(relationsOf(inPage)?.['m.replace']?.event_id, edit.event_id);

    // Thread: bob and alice reply; the root carries the summary and /threads lists it.
    const { event_id: root } = await a.sendMessage(roomId, { msgtype: MsgType.Text, body: 'Who brings snacks?' });
    const inThread = (body: string) =>
      ({ msgtype: MsgType.Text, body, 'm.relates_to': { rel_type: 'm.thread', event_id: root, is_falling_back: true, 'm.in_reply_to': { event_id: root } } }) as never;
    await b.sendMessage(roomId, inThread('I will'));
    const { event_id: lastReply } = await a.sendMessage(roomId, inThread('Thanks!'));
    const rootEvent = await c.fetchRoomEvent(roomId, root);
    const summary = relationsOf(rootEvent)?.['m.thread'];
    assert.equal(summary?.count, 2);
    assert.equal(summary?.latest_event?.event_id, lastReply);
    assert.equal(summary?.current_user_participated, false, 'carol did not take part');
    assert.equal(relationsOf(await b.fetchRoomEvent(roomId, root))?.['m.thread']?.current_user_participated, true);
    const all = await c.createThreadListMessagesRequest(roomId, null, 10, Direction.Backward, ThreadFilterType.All);
    assert.deepEqual(all.chunk.map((e) => e.event_id), [root]);
    assert.equal(relationsOf(all.chunk[0]!)?.['m.thread']?.count, 2);
    const mine = await c.createThreadListMessagesRequest(roomId, null, 10, Direction.Backward, ThreadFilterType.My);
    assert.deepEqual(mine.chunk, [], 'carol has no threads of her own');
    const bobs = await b.createThreadListMessagesRequest(roomId, null, 10, Direction.Backward, ThreadFilterType.My);
    assert.deepEqual(bobs.chunk.map((e) => e.event_id), [root]);
    const replies = await a.relations(roomId, root, 'm.thread');
    assert.deepEqual(replies.events.map((e) => e.getContent().body), ['Thanks!', 'I will']);

    // Reactions: three thumbs up and a party popper, counted by key.
    const { event_id: target } = await a.sendMessage(roomId, { msgtype: MsgType.Text, body: 'Cake is ready' });
    const react = (cl: MatrixClient, key: string) => cl.sendEvent(roomId, 'm.reaction' as never, { 'm.relates_to': { rel_type: 'm.annotation', event_id: target, key } } as never);
    await react(a, '👍');
    await react(b, '👍');
    const { event_id: carolsThumb } = await react(c, '👍');
    await react(b, '🎉');
    const count = async () => {
      const r = await a.relations(roomId, target, 'm.annotation', 'm.reaction');
      const by: Record<string, number> = {};
      for (const e of r.events) {
        const key = e.getContent()['m.relates_to']?.key as string;
        by[key] = (by[key] ?? 0) + 1;
      }
      return by;
    };
    assert.deepEqual(await count(), { '👍': 3, '🎉': 1 });
    // A redacted reaction no longer counts.
    await c.redactEvent(roomId, carolsThumb);
    assert.deepEqual(await count(), { '👍': 2, '🎉': 1 });
    // Paging through relations one at a time finds them all.
    const seen: string[] = [];
    let from: string | undefined;
    for (let i = 0; i < 10; i++) {
      const r = await a.relations(roomId, target, 'm.annotation', null, { limit: 1, ...(from ? { from } : {}) });
      seen.push(...r.events.map((e) => e.getId()!));
      if (!r.nextBatch) break;
      from = r.nextBatch;
    }
    assert.equal(new Set(seen).size, 3);
  });
});

test('redact a message and see its content vanish everywhere', T, async () => {
  await withHarness(async (h) => {
    const alice = await register(h, 'alice');
    const bob = await register(h, 'bob');
    const a = await start(alice);
    const b = await start(bob);
    const { room_id: roomId } = await a.createRoom({ preset: Preset.PublicChat });
    await b.joinRoom(roomId);
    const { event_id: secret } = await b.sendMessage(roomId, { msgtype: MsgType.Text, body: 'the launch codes are zebra' });
    const { event_id: reply } = await a.sendMessage(roomId, {
      msgtype: MsgType.Text,
      body: 'noted',
      'm.relates_to': { rel_type: 'm.thread', event_id: secret, is_falling_back: true, 'm.in_reply_to': { event_id: secret } },
    } as never);
    await a.sendMessage(roomId, { msgtype: MsgType.Text, body: 'after' });
    const search = async () => (await a.search({ body: { search_categories: { room_events: { search_term: 'zebra' } } } })).search_categories.room_events;
    assert.equal((await search()).results?.length, 1, 'searchable before');

    await b.redactEvent(roomId, secret, undefined, { reason: 'oops' });
    // /event
    const ev = await a.fetchRoomEvent(roomId, secret);
    assert.deepEqual(ev.content, {});
    assert.equal((ev.unsigned as Record<string, any>)?.['redacted_because']?.type, 'm.room.redaction');
    // /messages
    const page = await a.createMessagesRequest(roomId, null, 20, Direction.Backward);
    assert.deepEqual(page.chunk.find((e) => e.event_id === secret)!.content, {});
    // /context, both as the event and as a neighbour
    const ctxRes = await h.fetch(`${h.baseUrl}/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/context/${encodeURIComponent(reply)}?limit=4`, {
      headers: { authorization: `Bearer ${alice.token}` },
    });
    const ctx = (await ctxRes.json()) as { events_before: IRoomEvent[] };
    assert.deepEqual(ctx.events_before.find((e) => e.event_id === secret)!.content, {});
    // search
    assert.equal((await search()).results?.length ?? 0, 0, 'gone from search');
    // relations: the thread reply still points at it, but its own content is gone when served
    const threads = await a.createThreadListMessagesRequest(roomId, null, 10, Direction.Backward, ThreadFilterType.All);
    for (const t of threads.chunk) if (t.event_id === secret) assert.deepEqual(t.content, {});
    // sync: bob's and alice's clients see it redacted; a client starting afresh gets it redacted
    for (const cl of [a, b]) {
      const r = await room(cl, roomId);
      await waitUntil(`${cl.getUserId()} sees the redaction`, () => r.findEventById(secret)?.isRedacted());
      assert.equal(r.findEventById(secret)!.getContent().body, undefined);
    }
    const fresh = h.newClient(alice.userId, alice.token, 'FRESH');
    const initial = await fresh.http.authedRequest<{ rooms: { join: Record<string, { timeline: { events: IRoomEvent[] } }> } }>('GET' as never, '/sync', { timeout: '0' });
    const synced = initial.rooms.join[roomId]!.timeline.events.find((e) => e.event_id === secret);
    if (synced) assert.deepEqual(synced.content, {});
  });
});

test('publish a room and find it by a word of its topic; find a user by part of their display name', T, async () => {
  await withHarness(async (h) => {
    const alice = await register(h, 'alice');
    const bob = await register(h, 'bob');
    const carol = await register(h, 'carol');
    const a = alice.client;
    const { room_id: garden } = await a.createRoom({ preset: Preset.PublicChat, name: 'Gardening club', topic: 'Tomatoes, courgettes and compost' });
    const { room_id: other } = await a.createRoom({ preset: Preset.PublicChat, name: 'Chess', topic: 'Openings and endgames' });
    await a.setRoomDirectoryVisibility(garden, Visibility.Public);
    await a.setRoomDirectoryVisibility(other, Visibility.Public);
    assert.equal((await a.getRoomDirectoryVisibility(garden)).visibility, Visibility.Public);
    await bob.client.joinRoom(garden);

    const found = await carol.client.publicRooms({ filter: { generic_search_term: 'COURGETTES' } });
    assert.deepEqual(found.chunk.map((r) => r.room_id), [garden]);
    assert.equal(found.chunk[0]!.num_joined_members, 2);
    assert.equal(found.chunk[0]!.name, 'Gardening club');
    assert.equal((await carol.client.publicRooms({ filter: { generic_search_term: 'zebra' } })).chunk.length, 0);
    // Both rooms, a page at a time.
    const first = await carol.client.publicRooms({ limit: 1 });
    assert.equal(first.chunk.length, 1);
    assert.ok(first.next_batch);
    const second = await carol.client.publicRooms({ limit: 1, since: first.next_batch! });
    assert.deepEqual(new Set([first.chunk[0]!.room_id, second.chunk[0]!.room_id]), new Set([garden, other]));
    // Unpublished rooms leave the list.
    await a.setRoomDirectoryVisibility(other, Visibility.Private);
    assert.deepEqual((await carol.client.publicRooms({})).chunk.map((r) => r.room_id), [garden]);

    // User directory: bob is in a public room, so anyone finds him by part of his name, accents aside.
    await bob.client.setDisplayName('Bartholomew Éclair');
    const byName = await carol.client.searchUserDirectory({ term: 'eclai' });
    assert.deepEqual(byName.results.map((u) => u.user_id), [bob.userId]);
    assert.equal(byName.results[0]!.display_name, 'Bartholomew Éclair');
    assert.equal(byName.limited, false);
    assert.deepEqual((await carol.client.searchUserDirectory({ term: 'BARTH' })).results.map((u) => u.user_id), [bob.userId]);
    // Carol shares no room with anyone and is in no public room: nobody finds her.
    await carol.client.setDisplayName('Caroline Hidden');
    assert.deepEqual((await a.searchUserDirectory({ term: 'caroline' })).results, []);
  });
});

test('search a word and get the message with highlights, context and pages', T, async () => {
  await withHarness(async (h) => {
    const alice = await register(h, 'alice');
    const bob = await register(h, 'bob');
    const a = await start(alice);
    const b = bob.client;
    const { room_id: roomId } = await a.createRoom({ preset: Preset.PublicChat, name: 'Wildlife' });
    await b.joinRoom(roomId);
    await a.sendMessage(roomId, { msgtype: MsgType.Text, body: 'Before the sighting' });
    const { event_id: hit } = await b.sendMessage(roomId, { msgtype: MsgType.Text, body: 'I saw three foxes in the garden' });
    await a.sendMessage(roomId, { msgtype: MsgType.Text, body: 'After the sighting' });
    for (let i = 0; i < 5; i++) await a.sendMessage(roomId, { msgtype: MsgType.Text, body: `another fox ${i}` });
    // A room alice is not in never shows up.
    const { room_id: secret } = await b.createRoom({ preset: Preset.PrivateChat });
    await b.sendMessage(secret, { msgtype: MsgType.Text, body: 'a private fox' });

    await room(a, roomId);
    const results = await a.searchRoomEvents({ term: 'foxes' });
    assert.equal(results.results.length, 6, 'every fox, by stem');
    assert.ok(results.highlights.some((w) => /fox/i.test(w)), `highlights ${JSON.stringify(results.highlights)}`);
    const mine = results.results.find((r) => r.context.getEvent().getId() === hit)!;
    assert.ok(mine, 'the message with foxes');
    // event_context: one before and one after.
    const around = mine.context.getTimeline().map((e) => e.getContent().body);
    assert.deepEqual(around, ['Before the sighting', 'I saw three foxes in the garden', 'After the sighting']);
    assert.ok(results.results.every((r) => r.context.getEvent().getRoomId() === roomId), 'nothing from rooms alice is not in');

    // Pages of two by rank.
    const ids = new Set<string>();
    let next: string | undefined;
    for (let i = 0; i < 10; i++) {
      const res = await a.search({ body: { search_categories: { room_events: { search_term: 'fox', filter: { limit: 2 } } } }, ...(next ? { next_batch: next } : {}) });
      const re = res.search_categories.room_events;
      for (const r of re.results ?? []) ids.add(r.result.event_id);
      assert.equal(re.count, 6);
      if (!re.next_batch) break;
      next = re.next_batch;
    }
    assert.equal(ids.size, 6);
  });
});

test('walk a space with child rooms', T, async () => {
  await withHarness(async (h) => {
    const alice = await register(h, 'alice');
    const bob = await register(h, 'bob');
    const a = alice.client;
    const via = { via: [h.serverName] };
    const { room_id: space } = await a.createRoom({ preset: Preset.PublicChat, name: 'Company', creation_content: { type: 'm.space' } });
    const child = async (parent: string, name: string, opts: Record<string, unknown> = {}, content: Record<string, unknown> = {}) => {
      const { room_id } = await a.createRoom({ preset: Preset.PublicChat, name, ...opts });
      await a.sendStateEvent(parent, 'm.space.child' as never, { ...via, ...content } as never, room_id);
      await a.sendStateEvent(room_id, 'm.space.parent' as never, { ...via, canonical: true } as never, parent);
      return room_id;
    };
    const general = await child(space, 'General', {}, { suggested: true, order: 'a' });
    const random = await child(space, 'Random', {}, { order: 'b' });
    const team = await child(space, 'Team space', { creation_content: { type: 'm.space' } }, { order: 'c' });
    const standup = await child(team, 'Standup', {}, { suggested: true });
    const hidden = await child(space, 'Board', { preset: Preset.PrivateChat }, { order: 'd' });

    const walk = await bob.client.getRoomHierarchy(space);
    const names = walk.rooms.map((r) => r.name);
    assert.deepEqual(names, ['Company', 'General', 'Random', 'Team space', 'Standup'], 'depth first, in order; the private room is left out');
    const top = walk.rooms[0]!;
    assert.equal(top.room_type, 'm.space');
    assert.deepEqual(top.children_state.map((c) => c.state_key).sort(), [general, random, team, hidden].sort());
    assert.equal(walk.rooms.find((r) => r.room_id === team)!.children_state[0]!.state_key, standup);

    // max_depth 1 stops below the top space; suggested_only keeps suggested children.
    assert.deepEqual((await bob.client.getRoomHierarchy(space, undefined, 1)).rooms.map((r) => r.name), ['Company', 'General', 'Random', 'Team space']);
    assert.deepEqual((await bob.client.getRoomHierarchy(space, undefined, undefined, true)).rooms.map((r) => r.name), ['Company', 'General']);

    // Two at a time gives the same walk.
    const paged: string[] = [];
    let from: string | undefined;
    for (let i = 0; i < 10; i++) {
      const p = await bob.client.getRoomHierarchy(space, 2, undefined, false, from);
      assert.ok(p.rooms.length <= 2);
      paged.push(...p.rooms.map((r) => r.name!));
      if (!p.next_batch) break;
      from = p.next_batch;
    }
    assert.deepEqual(paged, names);
    assert.equal(random.length > 0, true);
  });
});
