// The token safety property (DESIGN.md §3, issue 5): with two writers, one of them slow to commit an
// event that took the lower stream position, an incremental sync never hands out a token past the
// slow event before it is visible, so the event is never skipped. Runs on PGlite, and on PostgreSQL +
// Redis (the multi-writer path of storage/stream.ts) when the test environment provides them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer } from '../testing.ts';
import { TestUser, type Json } from './test-client.ts';

test('an incremental sync never misses an event whose commit was delayed behind a later one', async () => {
  const server = await startTestServer();
  try {
    const alice = await TestUser.register(server.baseUrl, 'alice');
    const bob = await TestUser.register(server.baseUrl, 'bob');
    const carol = await TestUser.register(server.baseUrl, 'carol');
    const roomA = await alice.createRoom({ preset: 'public_chat' });
    const roomB = await bob.createRoom({ preset: 'public_chat' });
    await carol.join(roomA);
    await carol.join(roomB);
    const s0 = await carol.sync();

    // Hold the next persist between taking its stream position and committing.
    const stream = server.hs.services.rooms.writer.stream;
    const allocate = stream.allocate.bind(stream);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let allocated!: () => void;
    const allocatedP = new Promise<void>((r) => (allocated = r));
    let armed = true;
    stream.allocate = async (count: number) => {
      const positions = await allocate(count);
      if (armed) {
        armed = false;
        allocated();
        await gate;
      }
      return positions;
    };

    const slow = alice.send(roomA, 'slow'); // lower position, commits last
    await allocatedP;
    await bob.send(roomB, 'fast'); // higher position, committed now

    const seen: string[] = [];
    const collect = (s: Json) => {
      for (const room of Object.values(s.rooms.join) as Json[]) {
        for (const e of room.timeline.events) if (e.type === 'm.room.message') seen.push(e.content.body);
      }
    };
    // While the slow event is in flight, syncs may not move past it.
    const s1 = await carol.sync({ since: s0.next_batch });
    collect(s1);
    assert.ok(!seen.includes('fast') || seen.includes('slow'), 'a later event was delivered before an earlier one committed');

    release();
    await slow;
    let token = s1.next_batch;
    for (let i = 0; i < 10 && !(seen.includes('slow') && seen.includes('fast')); i++) {
      const s = await carol.sync({ since: token, timeout: 2000 });
      collect(s);
      token = s.next_batch;
    }
    assert.deepEqual([...seen].sort(), ['fast', 'slow']);
  } finally {
    await server.stop();
  }
});

test('a long-poll waiting during the delayed commit wakes for it', async () => {
  const server = await startTestServer();
  try {
    const alice = await TestUser.register(server.baseUrl, 'alice');
    const carol = await TestUser.register(server.baseUrl, 'carol');
    const roomA = await alice.createRoom({ preset: 'public_chat' });
    const roomB = await alice.createRoom({ preset: 'public_chat' });
    await carol.join(roomA);
    await carol.join(roomB);
    const s0 = await carol.sync();
    const stream = server.hs.services.rooms.writer.stream;
    const allocate = stream.allocate.bind(stream);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let allocated!: () => void;
    const allocatedP = new Promise<void>((r) => (allocated = r));
    let armed = true;
    stream.allocate = async (count: number) => {
      const positions = await allocate(count);
      if (armed) {
        armed = false;
        allocated();
        await gate;
      }
      return positions;
    };
    const slow = alice.send(roomA, 'slow');
    await allocatedP;
    await alice.send(roomB, 'fast');
    const poll = carol.sync({ since: s0.next_batch, timeout: 20_000 });
    release();
    await slow;
    // The first wake may carry only the unread count of 'fast' (its own stream, already committed);
    // the client then polls again. Every poll must be woken by news — a poll that ran to its
    // timeout would come back with no rooms at all — and 'slow' and 'fast' must both arrive.
    const bodies: string[] = [];
    let s1 = await poll;
    for (let polls = 1; ; polls++) {
      const rooms = Object.values(s1.rooms?.join ?? {}) as Json[];
      assert.ok(rooms.length > 0, `poll ${polls} came back empty: it was not woken`);
      bodies.push(...rooms.flatMap((r) => r.timeline.events.map((e: Json) => e.content.body)));
      if (bodies.includes('slow') || polls >= 3) break;
      s1 = await carol.sync({ since: s1.next_batch, timeout: 20_000 });
    }
    assert.ok(bodies.includes('slow'), 'woken with the delayed event');
    assert.ok(bodies.includes('fast'), 'the later event arrives too');
  } finally {
    await server.stop();
  }
});
