// Send-to-device over HTTP, delivered through the `to_device` sync stream (collect/acknowledge, the
// contract with the sync engine): one device, `*`, several users; idempotency per txn id; delivery
// after reconnect and re-delivery until acknowledged; the per-sync limit; the backlog policy.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../../testing.ts';
import { registerUser } from '../../testing-users.ts';
import { Client, newClient } from './rooms-testkit.ts';
import type { Requester } from '../../http/api.ts';
import type { SyncStream } from '../../sync/extensions.ts';

let s: TestServer;
let n = 0;
const fresh = async (name: string) => newClient(s, `${name}${n++}`);

before(async () => {
  s = await startTestServer();
});
after(async () => {
  await s.stop();
});

function toDevice(): SyncStream {
  return s.hs.services.syncStreams.streams.find((x) => x.name === 'to_device')!;
}
const req = (c: Client): Requester => ({ userId: c.userId, deviceId: c.user.deviceId, isGuest: false, sessionId: 'x' });

/** One "sync" of the device: acknowledge `since` (as the sync engine does first), then collect up to the current position. */
async function sync(c: Client, since: number | null): Promise<{ next: number; events: any[] }> {
  const st = toDevice();
  if (since !== null) await st.acknowledge!(req(c), since);
  const upTo = await st.currentPosition(req(c));
  const out = await st.collect({ requester: req(c), since, upTo, joinedRoomIds: [], fullState: false, filter: null });
  return { next: upTo, events: ((out.top?.to_device as { events?: any[] } | undefined)?.events ?? []) as any[] };
}

async function secondDevice(c: Client): Promise<Client> {
  const r = await fetch(`${s.baseUrl}/_matrix/client/v3/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ type: 'm.login.password', identifier: { type: 'm.id.user', user: c.userId }, password: 'correct horse battery staple' }),
  });
  const body = (await r.json()) as { access_token: string; device_id: string; user_id: string };
  return new Client(s, { userId: body.user_id, accessToken: body.access_token, deviceId: body.device_id });
}

test('to one device, to every device with *, to several users; in order; sender and type as sent', async () => {
  const alice = await fresh('alice');
  const bob = await fresh('bob');
  const bob2 = await secondDevice(bob);
  const carol = await fresh('carol');
  const b0 = await sync(bob, null);
  const b20 = await sync(bob2, null);
  assert.deepEqual(b0.events, []);

  await alice.ok('PUT', '/sendToDevice/m.test/t1', { messages: { [bob.userId]: { [bob.user.deviceId]: { n: 1 } } } });
  await alice.ok('PUT', '/sendToDevice/m.test/t2', { messages: { [bob.userId]: { '*': { n: 2 } }, [carol.userId]: { [carol.user.deviceId]: { n: 3 } } } });
  // An explicit device wins over * for that device; unknown devices and remote users are skipped.
  await alice.ok('PUT', '/sendToDevice/m.other/t3', {
    messages: { [bob.userId]: { '*': { n: 4 }, [bob2.user.deviceId]: { n: 5 }, NOSUCH: { n: 0 } }, '@far:remote.example': { X: { n: 0 } } },
  });

  const b1 = await sync(bob, b0.next);
  assert.deepEqual(b1.events, [
    { sender: alice.userId, type: 'm.test', content: { n: 1 } },
    { sender: alice.userId, type: 'm.test', content: { n: 2 } },
    { sender: alice.userId, type: 'm.other', content: { n: 4 } },
  ]);
  const b21 = await sync(bob2, b20.next);
  assert.deepEqual(b21.events.map((e) => e.content.n), [2, 5]);
  assert.deepEqual((await sync(carol, null)).events.map((e) => e.content.n), [3]);
});

test('idempotent per sending device and txn id', async () => {
  const alice = await fresh('alice');
  const alice2 = await secondDevice(alice);
  const bob = await fresh('bob');
  const body = { messages: { [bob.userId]: { [bob.user.deviceId]: { hello: true } } } };
  const replies = await Promise.all([1, 2, 3].map(() => alice.call('PUT', '/sendToDevice/m.test/same', body)));
  for (const r of replies) assert.equal(r.status, 200);
  await alice.ok('PUT', '/sendToDevice/m.test/same', body);
  // The same txn id from another device of the sender is another transaction.
  await alice2.ok('PUT', '/sendToDevice/m.test/same', body);
  const got = await sync(bob, null);
  assert.equal(got.events.length, 2);
});

test('delivery after reconnect: kept until acknowledged, re-delivered when a response was lost, then gone', async () => {
  const alice = await fresh('alice');
  const bob = await fresh('bob');
  const first = await sync(bob, null);
  // Bob is offline while these arrive.
  for (let i = 0; i < 3; i++) await alice.ok('PUT', `/sendToDevice/m.test/r${i}`, { messages: { [bob.userId]: { [bob.user.deviceId]: { i } } } });
  const r1 = await sync(bob, first.next);
  assert.deepEqual(r1.events.map((e) => e.content.i), [0, 1, 2]);
  // The response was lost: Bob syncs again with the old token and gets them again.
  const r1again = await sync(bob, first.next);
  assert.deepEqual(r1again.events.map((e) => e.content.i), [0, 1, 2]);
  // Syncing with the newer token acknowledges them: deleted.
  const r2 = await sync(bob, r1again.next);
  assert.deepEqual(r2.events, []);
  const left = await s.hs.db.selectFrom('to_device_messages').select('seq').where('user_id', '=', bob.userId).execute();
  assert.equal(left.length, 0);
  // A later message still arrives.
  await alice.ok('PUT', '/sendToDevice/m.test/r9', { messages: { [bob.userId]: { [bob.user.deviceId]: { i: 9 } } } });
  assert.deepEqual((await sync(bob, r2.next)).events.map((e) => e.content.i), [9]);
});

test('over GET /sync: a long-poll wakes for a message; a reconnect with the old token gets it again; the next token acknowledges it', async () => {
  const alice = await fresh('alice');
  const bob = await fresh('bob');
  const sync = async (since?: string, timeout = 0) => (await bob.ok('GET', `/sync?timeout=${timeout}${since ? `&since=${encodeURIComponent(since)}` : ''}`)) as { next_batch: string; to_device?: { events: any[] } };
  const t0 = (await sync()).next_batch;

  // Bob is long-polling when the message is sent (or just about to be: either way the message is after
  // his token). A poll may also return for something else, so he keeps polling until it arrives.
  const poll = (async () => {
    let since = t0;
    for (;;) {
      const r = await sync(since, 60_000);
      if (r.to_device?.events.length) return r;
      since = r.next_batch;
    }
  })();
  await alice.ok('PUT', '/sendToDevice/m.test/live', { messages: { [bob.userId]: { [bob.user.deviceId]: { n: 1 } } } });
  const live = await poll;
  assert.deepEqual(live.to_device?.events, [{ sender: alice.userId, type: 'm.test', content: { n: 1 } }]);

  // Bob goes offline; two more arrive. He reconnects with the token he has.
  await alice.ok('PUT', '/sendToDevice/m.test/off1', { messages: { [bob.userId]: { [bob.user.deviceId]: { n: 2 } } } });
  await alice.ok('PUT', '/sendToDevice/m.test/off2', { messages: { [bob.userId]: { '*': { n: 3 } } } });
  const r1 = await sync(live.next_batch);
  assert.deepEqual(r1.to_device?.events.map((e) => e.content.n), [2, 3]);
  // That response was lost: the same token again delivers the same messages.
  const r1again = await sync(live.next_batch);
  assert.deepEqual(r1again.to_device?.events.map((e) => e.content.n), [2, 3]);
  // The newer token acknowledges them: nothing more, and the server has deleted them.
  const r2 = await sync(r1again.next_batch);
  assert.equal(r2.to_device?.events.length ?? 0, 0);
  const left = await s.hs.db.selectFrom('to_device_messages').select('seq').where('user_id', '=', bob.userId).execute();
  assert.equal(left.length, 0);
  // An old token after acknowledgement gets nothing back (acknowledged messages are gone for good).
  const stale = await sync(t0);
  assert.equal(stale.to_device?.events.length ?? 0, 0);
});

test('at most 100 per sync; the rest on the next ones', async () => {
  const alice = await fresh('alice');
  const bob = await fresh('bob');
  for (let i = 0; i < 5; i++) {
    // 150 messages from 150 transactions (one message per device per transaction).
    await Promise.all(Array.from({ length: 30 }, (_, j) => alice.ok('PUT', `/sendToDevice/m.test/b${i}_${j}`, { messages: { [bob.userId]: { [bob.user.deviceId]: { i: i * 30 + j } } } })));
  }
  const a = await sync(bob, null);
  assert.equal(a.events.length, 100);
  const b = await sync(bob, a.next);
  assert.equal(b.events.length, 50);
  const all = [...a.events, ...b.events].map((e) => e.content.i).sort((x, y) => x - y);
  assert.deepEqual(all, Array.from({ length: 150 }, (_, i) => i));
  assert.deepEqual((await sync(bob, b.next)).events, []);
});

test('backlog policy: beyond the cap the oldest pending messages are dropped', async () => {
  const alice = await fresh('alice');
  const bob = await fresh('bob');
  const service = s.hs.services.e2ee.toDevice;
  const saved = service.maxPendingPerDevice;
  service.maxPendingPerDevice = 5;
  try {
    for (let i = 0; i < 8; i++) await alice.ok('PUT', `/sendToDevice/m.test/c${i}`, { messages: { [bob.userId]: { [bob.user.deviceId]: { i } } } });
  } finally {
    service.maxPendingPerDevice = saved;
  }
  assert.deepEqual((await sync(bob, null)).events.map((e) => e.content.i), [3, 4, 5, 6, 7]);
});

test('bad requests write nothing; deleted devices lose their inbox', async () => {
  const alice = await fresh('alice');
  const bob = await fresh('bob');
  let r = await alice.call('PUT', '/sendToDevice/m.test/x1', { messages: { [bob.userId]: { [bob.user.deviceId]: 'not an object' } } });
  assert.equal(r.status, 400);
  r = await alice.call('PUT', '/sendToDevice/m.test/x2', { messages: { 'not-a-user': { D: {} } } });
  assert.equal(r.status, 400);
  r = await alice.call('PUT', '/sendToDevice/m.test/x3', {});
  assert.equal(r.status, 400);
  assert.deepEqual((await sync(bob, null)).events, []);

  const temp = await registerUser(s.baseUrl, `temp${n++}`);
  const tempClient = new Client(s, temp);
  await alice.ok('PUT', '/sendToDevice/m.test/x4', { messages: { [temp.userId]: { [temp.deviceId]: { a: 1 } } } });
  await tempClient.ok('POST', '/logout', {});
  const left = await s.hs.db.selectFrom('to_device_messages').select('seq').where('user_id', '=', temp.userId).execute();
  assert.equal(left.length, 0);
});
