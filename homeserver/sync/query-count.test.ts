// Database queries per incremental /sync (issue 5: a woken long-poll's rebuild must stay cheap, since a
// busy server rebuilds hundreds of syncs a second). Counts the statements the server sends while one
// idle incremental sync runs, and checks the count stays at or below a fixed budget. A count, not a
// timing: a stream hook that starts querying on every sync again shows up here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer } from '../testing.ts';
import { TestUser } from './test-client.ts';

/**
 * Statements an idle incremental sync of a user with a device, keys and one joined room may cost: one
 * (the positions, the to-device inbox, the ignore list and the memberships are read together, with the
 * timelines and unread counts read ahead) — plus, on PostgreSQL with several writers
 * (storage/stream.ts), the events position, which one process alone keeps in memory.
 */
const IDLE_SYNC_QUERY_BUDGET = 2;
/** The same sync when one new message is waiting in the room (what a woken long-poll rebuilds): the same statement reads it. */
const ONE_MESSAGE_SYNC_QUERY_BUDGET = 2;

test('an idle incremental sync stays within its query budget', async () => {
  const server = await startTestServer();
  // Every statement of every Kysely instance (transactions included) goes through the executor's
  // executeQuery; count them on the prototype while a request runs.
  const executor = Object.getPrototypeOf(server.hs.db.getExecutor()) as { executeQuery: (...a: unknown[]) => Promise<unknown> };
  const original = executor.executeQuery;
  let log: string[] | null = null;
  executor.executeQuery = function (this: unknown, ...a: unknown[]) {
    log?.push((a[0] as { sql: string }).sql);
    return original.apply(this, a);
  };
  const counted = async <T>(fn: () => Promise<T>): Promise<{ result: T; queries: string[] }> => {
    log = [];
    try {
      const result = await fn();
      return { result, queries: log };
    } finally {
      log = null;
    }
  };
  try {
    const alice = await TestUser.register(server.baseUrl, 'alice');
    const bob = await TestUser.register(server.baseUrl, 'bob');
    const roomId = await alice.createRoom({ preset: 'public_chat' });
    await bob.join(roomId);
    // A one-time key and a fallback key, so the counts in the response are not trivially empty.
    const key = (n: number) => Buffer.alloc(32, n).toString('base64').replace(/=+$/, '');
    await alice.ok('POST', '/keys/upload', { one_time_keys: { 'curve25519:AAAA': key(1) }, fallback_keys: { 'curve25519:BBBB': key(2) } });
    // A to-device message, delivered and then acknowledged by the syncs below.
    await bob.ok('PUT', `/sendToDevice/m.test/t1`, { messages: { [alice.id]: { [alice.user.deviceId]: { a: 1 } } } });
    const s0 = await alice.sync();
    assert.equal(s0.to_device?.events?.length, 1);
    const s1 = await alice.sync({ since: s0.next_batch, timeout: 0 });
    // Settled: nothing changes between the next two syncs.
    const s2 = await alice.sync({ since: s1.next_batch, timeout: 0 });
    const { result: s3, queries } = await counted(() => alice.sync({ since: s2.next_batch, timeout: 0 }));
    assert.deepEqual(s3.device_one_time_keys_count, { curve25519: 1, signed_curve25519: 0 });
    assert.deepEqual(s3.device_unused_fallback_key_types, ['curve25519']);
    assert.equal(s3.to_device, undefined);
    if (process.env.AXON_TEST_PRINT_QUERIES) console.log(queries.length, queries.map((q) => q.replace(/\s+/g, ' ').slice(0, 160)));
    assert.ok(queries.length <= IDLE_SYNC_QUERY_BUDGET, `an idle incremental sync ran ${queries.length} queries (budget ${IDLE_SYNC_QUERY_BUDGET}):\n${queries.join('\n')}`);

    // One new message: the rebuild a long-poll woken by it runs.
    await bob.send(roomId, 'hello');
    const woken = await counted(() => alice.sync({ since: s3.next_batch, timeout: 0 }));
    assert.equal(woken.result.rooms.join[roomId].timeline.events.at(-1).content.body, 'hello');
    if (process.env.AXON_TEST_PRINT_QUERIES) console.log(woken.queries.length, woken.queries.map((q) => q.replace(/\s+/g, ' ').slice(0, 160)));
    assert.ok(woken.queries.length <= ONE_MESSAGE_SYNC_QUERY_BUDGET, `a sync with one new message ran ${woken.queries.length} queries (budget ${ONE_MESSAGE_SYNC_QUERY_BUDGET}):\n${woken.queries.join('\n')}`);

    // The cached key counts follow uploads and claims.
    await alice.ok('POST', '/keys/upload', { one_time_keys: { 'curve25519:CCCC': key(3) } });
    const s4 = await alice.sync({ since: woken.result.next_batch, timeout: 0 });
    assert.deepEqual(s4.device_one_time_keys_count, { curve25519: 2, signed_curve25519: 0 });
    await bob.ok('POST', '/keys/claim', { one_time_keys: { [alice.id]: { [alice.user.deviceId]: 'curve25519' } } });
    await bob.ok('POST', '/keys/claim', { one_time_keys: { [alice.id]: { [alice.user.deviceId]: 'curve25519' } } });
    await bob.ok('POST', '/keys/claim', { one_time_keys: { [alice.id]: { [alice.user.deviceId]: 'curve25519' } } }); // the fallback key
    const s5 = await alice.sync({ since: s4.next_batch, timeout: 0 });
    assert.deepEqual(s5.device_one_time_keys_count, { signed_curve25519: 0 });
    assert.deepEqual(s5.device_unused_fallback_key_types, []);
  } finally {
    executor.executeQuery = original;
    await server.stop();
  }
});
