// Rooms: (b) event persistence throughput into one busy room and across 1,000 rooms, and (c) the
// latency of creating a room. Runs a real homeserver on PostgreSQL (AXON_BENCH_DATABASE_URL, else
// postgres://postgres@127.0.0.1:5432/test when it answers; a fresh schema each run), else on in-memory
// PGlite. The whole server runs: every event is also evaluated against the push rules of every local
// member (50 in the busy room), as in production.
//
// (b) drives the rooms service directly (RoomService.sendMessage: build, sign, authorise, persist in
//     one transaction per batch), with 50 concurrent senders, and also over HTTP (PUT /send) so the
//     cost of the HTTP layer and token lookups shows.
// (c) is POST /createRoom over HTTP (private_chat, room version 12: 6 events), sequential.
import { performance } from 'node:perf_hooks';
import { loadavg } from 'node:os';
import { pathToFileURL } from 'node:url';
import type { Requester } from '../../homeserver/http/api.ts';
import type { TestServer } from '../../homeserver/testing.ts';
import { LOCAL_PG_URL, localPostgresAnswers } from './_db.ts';

const CONCURRENCY = 50;

function cpuMsPer1000(u: NodeJS.CpuUsage, events: number): string {
  return (((u.user + u.system) / 1000 / events) * 1000).toFixed(0);
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function pool<T>(items: T[], concurrency: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

/** AXON_BENCH_DATABASE_URL, else the local development PostgreSQL when it answers, else none (PGlite). */
async function postgresUrl(): Promise<string | undefined> {
  if (process.env.AXON_BENCH_DATABASE_URL) return process.env.AXON_BENCH_DATABASE_URL;
  return (await localPostgresAnswers()) ? LOCAL_PG_URL : undefined;
}

export default async function bench(): Promise<void> {
  const pgUrl = await postgresUrl();
  if (pgUrl) process.env.AXON_TEST_DATABASE_URL = pgUrl;
  else delete process.env.AXON_TEST_DATABASE_URL;
  delete process.env.AXON_TEST_REDIS_URL;
  const { startTestServer } = await import('../../homeserver/testing.ts');
  const { registerUser } = await import('../../homeserver/testing-users.ts');
  const db = pgUrl ? `PostgreSQL (${pgUrl.replace(/\/\/[^@/]*@/, '//…@')})` : 'PGlite (in memory; PostgreSQL not reachable)';
  // The production default pool (config.sample.yaml database.pool_size: 10), not the tests' 5.
  const load0 = loadavg()[0]!;
  const s: TestServer = await startTestServer({ config: { database: { pool_size: 10 } } });
  try {
    const rooms = s.hs.services.rooms;
    const alice = await registerUser(s.baseUrl, 'alice');
    const aliceReq: Requester = { userId: alice.userId, deviceId: alice.deviceId, isGuest: false, sessionId: 'bench' };
    const users: Requester[] = Array.from({ length: CONCURRENCY }, (_, i) => ({ userId: `@u${i}:${s.serverName}`, deviceId: 'D', isGuest: false, sessionId: `s${i}` }));
    const http = (token: string, method: string, path: string, body: unknown) =>
      fetch(`${s.baseUrl}/_matrix/client/v3${path}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) }).then(async (r) => {
        if (r.status !== 200) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
        return r.json() as Promise<Record<string, string>>;
      });

    // (c) createRoom p50 over HTTP. Warm up first.
    for (let i = 0; i < 5; i++) await http(alice.accessToken, 'POST', '/createRoom', {});
    const createTimes: number[] = [];
    for (let i = 0; i < 100; i++) {
      const t = performance.now();
      await http(alice.accessToken, 'POST', '/createRoom', { preset: 'private_chat' });
      createTimes.push(performance.now() - t);
    }
    createTimes.sort((a, b) => a - b);

    // (b1) one busy room: 50 members sending concurrently.
    const { roomId: busy } = await rooms.createRoom(aliceReq, { preset: 'public_chat' });
    for (const u of users) await rooms.join(u, busy);
    const perUser = pgUrl ? 100 : 40;
    let txn = 0;
    const t1 = performance.now();
    const cpu1 = process.cpuUsage();
    await Promise.all(users.map(async (u) => {
      for (let i = 0; i < perUser; i++) await rooms.sendMessage(u, busy, 'm.room.message', { msgtype: 'm.text', body: `message ${i}` }, `b${txn++}`);
    }));
    const busyRate = (users.length * perUser) / ((performance.now() - t1) / 1000);
    const busyCpu = cpuMsPer1000(process.cpuUsage(cpu1), users.length * perUser);

    // (b1') the same room with push-rule evaluation (for the 50 members, written with the events) and the
    // persistence listeners (E2EE bookkeeping, presence) detached: what the event persister itself sustains.
    const listeners = rooms.writer.persistListeners.splice(0);
    const pushActionsOf = rooms.writer.pushActionsOf;
    rooms.writer.pushActionsOf = null;
    const t1b = performance.now();
    await Promise.all(users.map(async (u) => {
      for (let i = 0; i < perUser; i++) await rooms.sendMessage(u, busy, 'm.room.message', { msgtype: 'm.text', body: `again ${i}` }, `c${txn++}`);
    }));
    const busyBareRate = (users.length * perUser) / ((performance.now() - t1b) / 1000);
    rooms.writer.persistListeners.push(...listeners);
    rooms.writer.pushActionsOf = pushActionsOf;

    // (b2) 1,000 rooms, messages spread across them.
    const roomCount = 1000;
    const many: string[] = [];
    const tCreate = performance.now();
    await pool(Array.from({ length: roomCount }, (_, i) => i), 10, async () => {
      many.push((await rooms.createRoom(aliceReq, { preset: 'private_chat' })).roomId);
    });
    const createRate = roomCount / ((performance.now() - tCreate) / 1000);
    const perRoom = pgUrl ? 5 : 2;
    const sends = many.flatMap((r) => Array.from({ length: perRoom }, (_, i) => [r, i] as const));
    for (let i = sends.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [sends[i], sends[j]] = [sends[j]!, sends[i]!];
    }
    const t2 = performance.now();
    const cpu2 = process.cpuUsage();
    await pool(sends, CONCURRENCY, async ([r, i]) => {
      await rooms.sendMessage(aliceReq, r, 'm.room.message', { msgtype: 'm.text', body: `m${i}` }, `m${txn++}`);
    });
    const manyRate = sends.length / ((performance.now() - t2) / 1000);
    const manyCpu = cpuMsPer1000(process.cpuUsage(cpu2), sends.length);

    // (b3) the busy room over HTTP (one token per sender).
    const tokens = await Promise.all(Array.from({ length: 20 }, (_, i) => registerUser(s.baseUrl, `h${i}`)));
    for (const t of tokens) await http(t.accessToken, 'POST', `/rooms/${encodeURIComponent(busy)}/join`, {});
    const perHttp = pgUrl ? 100 : 40;
    const t3 = performance.now();
    await Promise.all(tokens.map(async (t) => {
      for (let i = 0; i < perHttp; i++) await http(t.accessToken, 'PUT', `/rooms/${encodeURIComponent(busy)}/send/m.room.message/h${i}`, { msgtype: 'm.text', body: 'x' });
    }));
    const httpRate = (tokens.length * perHttp) / ((performance.now() - t3) / 1000);

    const rows = await s.hs.db.selectFrom('events').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow();
    console.log(`database: ${db}; load average (1 min) at start ${load0.toFixed(1)}, at end ${loadavg()[0]!.toFixed(1)} (figures drop when other work shares the CPUs)`);
    console.log(`(b) persistence, one busy room, ${users.length} concurrent senders: ${busyRate.toFixed(0)} events/s (target ≥ 1,500 on PostgreSQL); this process's CPU: ${busyCpu} ms per 1,000 events`);
    console.log(`    same busy room, persistence only (push-rule evaluation detached): ${busyBareRate.toFixed(0)} events/s`);
    console.log(`(b) persistence, ${roomCount} rooms, ${CONCURRENCY} concurrent senders: ${manyRate.toFixed(0)} events/s (target ≥ 1,500 on PostgreSQL); this process's CPU: ${manyCpu} ms per 1,000 events`);
    console.log(`    same busy room over HTTP (PUT /send, ${tokens.length} clients): ${httpRate.toFixed(0)} events/s`);
    console.log(`    createRoom through the service, 10 concurrent: ${createRate.toFixed(0)} rooms/s`);
    console.log(`(c) POST /createRoom (HTTP, v12 private_chat, sequential, n=100): p50 ${pct(createTimes, 50).toFixed(1)} ms, p90 ${pct(createTimes, 90).toFixed(1)} ms, p99 ${pct(createTimes, 99).toFixed(1)} ms (target p50 < 30 ms)`);
    console.log(`    events stored: ${Number(rows.n)}, stream position ${await rooms.currentStreamPosition()}`);
  } finally {
    await s.stop();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]!).href) await bench();
