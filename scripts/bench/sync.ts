// /sync benchmarks (issue 5), each printed beside its target:
//  (a) delivery latency, send → the receiving client's long-poll returns, p50/p99, with USERS users
//      long-polling and RATE messages/s spread over ROOMS rooms (target p99 < 50 ms on PostgreSQL);
//  (b) initial sync of a user in BIG_ROOMS rooms with BIG_EVENTS events each (target < 1 s);
//  (c) server memory per idle long-poll, with CONNS connections held by a child process (target < 20 KB).
// The clients of (a) run in a child process (_sync-clients.ts), so the figures are the server's alone;
// AXON_BENCH_SYNC_DEBUG=1 prints when the slow deliveries (> 50 ms) were sent, by half-second, and when
// the server's major garbage collections ran.
// The full scale is the (1,000 users, 100 msg/s over 100 rooms; 500 × 50; 10,000 connections).
// On PGlite (no AXON_BENCH_DATABASE_URL) (a) and (b) run scaled down by default — the embedded database
// is single-threaded WASM sharing the cores with the clients — and say so; AXON_BENCH_SYNC_FULL=1 forces
// the full scale. Set AXON_BENCH_DATABASE_URL (and optionally AXON_BENCH_REDIS_URL) for PostgreSQL.
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { Session as InspectorSession } from 'node:inspector/promises';
import { constants, monitorEventLoopDelay, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { sql } from 'kysely';
import { startTestServer, type TestServer } from '../../homeserver/testing.ts';
import type { Requester } from '../../homeserver/http/api.ts';
import type { ClientResult } from './_sync-clients.ts';

const onPg = !!process.env.AXON_BENCH_DATABASE_URL;
const full = onPg || process.env.AXON_BENCH_SYNC_FULL === '1';
const num = (name: string, def: number) => Number(process.env[name] ?? def);
const USERS = num('AXON_BENCH_SYNC_USERS', full ? 1_000 : 200);
const ROOMS = num('AXON_BENCH_SYNC_ROOMS', full ? 100 : 20);
const RATE = num('AXON_BENCH_SYNC_RATE', full ? 100 : 20);
const SECONDS = num('AXON_BENCH_SYNC_SECONDS', 10);
/** (a): seconds of sends at the same rate before measuring (caches, prepared statements, JIT). */
const WARMUP = num('AXON_BENCH_SYNC_WARMUP', 2);
const BIG_ROOMS = num('AXON_BENCH_SYNC_BIG_ROOMS', full ? 500 : 100);
const BIG_EVENTS = num('AXON_BENCH_SYNC_BIG_EVENTS', 50);
const CONNS = num('AXON_BENCH_SYNC_CONNS', 10_000);
const POOL = num('AXON_BENCH_SYNC_POOL', 20);
/** (a): messages already in each room before the users come online (a server that has been running). */
const HISTORY = num('AXON_BENCH_SYNC_HISTORY', 50);

interface Session {
  userId: string;
  token: string;
  requester: Requester;
}

async function startServer(): Promise<TestServer> {
  if (onPg) process.env.AXON_TEST_DATABASE_URL = process.env.AXON_BENCH_DATABASE_URL;
  if (process.env.AXON_BENCH_REDIS_URL) process.env.AXON_TEST_REDIS_URL = process.env.AXON_BENCH_REDIS_URL;
  // A production-sized pool (tests use 5): 1,000 clients share it.
  return startTestServer({
    config: { database: { pool_size: POOL }, presence: { enabled: process.env.AXON_BENCH_SYNC_PRESENCE !== '0', idle_timeout_ms: 300_000, offline_timeout_ms: 30_000 } },
  });
}

async function makeUsers(s: TestServer, prefix: string, count: number): Promise<Session[]> {
  const accounts = s.hs.services.accounts;
  const out: Session[] = [];
  for (let i = 0; i < count; i += 50) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(50, count - i) }, async (_, j) => {
        const userId = await accounts.createUser({ localpart: `${prefix}${i + j}`, password: null });
        const sess = await accounts.createSession(userId);
        const requester = (await accounts.resolve(sess.accessToken)) as Requester;
        return { userId, token: sess.accessToken, requester };
      }),
    );
    out.push(...batch);
  }
  return out;
}

/** Counts the statements every Kysely instance of the server sends until stop() (by their SQL's start). */
function countStatements(s: TestServer): { stop: () => Map<string, number> } {
  const executor = Object.getPrototypeOf(s.hs.db.getExecutor()) as { executeQuery: (...a: unknown[]) => Promise<unknown> };
  const original = executor.executeQuery;
  const counts = new Map<string, number>();
  executor.executeQuery = function (this: unknown, ...a: unknown[]) {
    const key = (a[0] as { sql: string }).sql.slice(0, 160);
    counts.set(key, (counts.get(key) ?? 0) + 1);
    return original.apply(this, a);
  };
  return {
    stop: () => {
      executor.executeQuery = original;
      // Whitespace folded only now (cheap while measuring).
      const folded = new Map<string, number>();
      for (const [q, n] of counts) {
        const k = q.replace(/\s+/g, ' ').trim().slice(0, 110);
        folded.set(k, (folded.get(k) ?? 0) + n);
      }
      return folded;
    },
  };
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function syncCall(base: string, token: string, params: string): Promise<Record<string, any>> {
  const res = await fetch(`${base}/_matrix/client/v3/sync?${params}`, { headers: { authorization: `Bearer ${token}` } }).catch((err: Error) => {
    throw new Error(`sync: ${err.message} (${String((err.cause as Error | undefined)?.message ?? err.cause)})`);
  });
  if (res.status !== 200) throw new Error(`sync ${res.status} ${await res.text()}`);
  return (await res.json()) as Record<string, any>;
}

async function deliveryLatency(): Promise<void> {
  const s = await startServer();
  let child: ChildProcess | null = null;
  try {
    const users = await makeUsers(s, 'lat', USERS);
    const rooms = s.hs.services.rooms;
    const perRoom = Math.max(1, Math.floor(USERS / ROOMS));
    const roomIds: string[] = [];
    for (let r = 0; r < ROOMS; r++) {
      const members = users.slice((r * perRoom) % USERS, ((r * perRoom) % USERS) + perRoom);
      const { roomId } = await rooms.createRoom(members[0]!.requester, { preset: 'public_chat' });
      await Promise.all(members.slice(1).map((m) => rooms.join(m.requester, roomId)));
      roomIds.push(roomId);
    }
    const filter = encodeURIComponent(JSON.stringify({ room: { timeline: { limit: 5 } }, presence: { types: [] } }));
    // A server that has been running: every room has history (HISTORY messages, from each member in
    // turn, with their push actions and unread counts), and PostgreSQL has statistics of the filled
    // tables, as autovacuum keeps them. Without this the planner would plan the first statements on
    // empty tables, or autovacuum's first ANALYZE would land in the measurement.
    for (let r = 0; r < ROOMS; r += 20) {
      await Promise.all(
        roomIds.slice(r, r + 20).map(async (roomId, j) => {
          const base = ((r + j) * perRoom) % USERS;
          for (let i = 0; i < HISTORY; i++) {
            const from = users[base + (i % perRoom)]!;
            await rooms.sendMessage(from.requester, roomId, 'm.room.message', { msgtype: 'm.text', body: `history ${i}` }, `h${r + j}-${i}`);
          }
        }),
      );
    }
    if (onPg && process.env.AXON_BENCH_SYNC_ANALYZE !== '0') {
      const { rows } = await sql<{ t: string }>`select tablename as t from pg_tables where schemaname = current_schema()`.execute(s.hs.db);
      for (const { t } of rows) await sql`analyze ${sql.table(t)}`.execute(s.hs.db);
    }
    // The clients run in their own process (_sync-clients.ts): the figure is the server's, not that of
    // a thousand HTTP clients sharing its event loop.
    const proc = fork(join(import.meta.dirname, '_sync-clients.ts'), [], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    child = proc;
    const next = <T>(): Promise<T> =>
      new Promise<T>((resolve, reject) => {
        const onExit = (code: number | null) => reject(new Error(`the client process exited early (code ${code})`));
        proc.once('exit', onExit);
        proc.once('message', (m) => {
          proc.off('exit', onExit);
          resolve(m as T);
        });
      });
    proc.send({
      setup: {
        base: s.baseUrl,
        users: users.map((u) => ({ userId: u.userId, token: u.token })),
        roomIds,
        senders: roomIds.map((_, r) => (r * perRoom) % USERS),
        rate: RATE,
        seconds: SECONDS,
        warmup: WARMUP,
        perRoom,
        filter,
      },
    });
    const settled = await next<{ settled: number; answers: number }>();
    // Every user's long-poll held by the server before measuring (at most 30 s more).
    for (let i = 0; i < 300 && s.hs.services.sync.notifier.waitingCount < USERS; i++) await new Promise((r) => setTimeout(r, 100));
    console.log(`    settled after ${settled.settled.toFixed(1)} s (${settled.answers} long-poll answers while users came online); ${s.hs.services.sync.notifier.waitingCount} long-polls held`);
    proc.send({ go: true });
    await next<{ warmedUp: true }>();
    const statements = countStatements(s);
    // AXON_BENCH_SYNC_DEBUG: the server's major garbage collections while measuring (the slow clusters
    // have coincided with them); AXON_BENCH_SYNC_HEAPPROF=FILE: a sampling profile of everything the
    // server allocated while measuring, collected or not (load it in Chrome DevTools).
    const majorGcs: number[] = [];
    const gcObserver = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) if ((e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) majorGcs.push(e.startTime);
    });
    if (process.env.AXON_BENCH_SYNC_DEBUG) gcObserver.observe({ entryTypes: ['gc'] });
    let heapSession: InspectorSession | null = null;
    if (process.env.AXON_BENCH_SYNC_HEAPPROF) {
      heapSession = new InspectorSession();
      heapSession.connect();
      await heapSession.post('HeapProfiler.startSampling', { samplingInterval: 16_384, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
    }
    const loopDelay = monitorEventLoopDelay({ resolution: 10 });
    loopDelay.enable();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const { result: r } = await next<{ result: ClientResult }>();
    const cpu = process.cpuUsage(cpu0);
    const counted = statements.stop();
    gcObserver.disconnect();
    if (heapSession) {
      const { profile } = await heapSession.post('HeapProfiler.stopSampling');
      writeFileSync(process.env.AXON_BENCH_SYNC_HEAPPROF!, JSON.stringify(profile));
      heapSession.disconnect();
    }
    const wall = performance.now() - t0;
    loopDelay.disable();
    const latencies = r.latencies.sort((a, b) => a - b);
    const sendTimes = r.sendTimes.sort((a, b) => a - b);
    console.log(
      `(a) delivery latency, ${USERS} long-polling users, ${ROOMS} rooms × ${perRoom} members, ${RATE} msg/s for ${SECONDS} s after ${WARMUP} s of warm-up (achieved ${r.achieved.toFixed(0)} msg/s)${full ? '' : ' [scaled down: PGlite]'}`,
    );
    console.log(`    p50 ${pct(latencies, 50).toFixed(1)} ms, p99 ${pct(latencies, 99).toFixed(1)} ms, max ${pct(latencies, 100).toFixed(1)} ms over ${latencies.length}/${r.expected} deliveries   target: p99 < 50 ms on PostgreSQL`);
    console.log(
      `    (server process: event loop delay p50 ${(loopDelay.percentile(50) / 1e6).toFixed(1)} ms, p99 ${(loopDelay.percentile(99) / 1e6).toFixed(1)} ms, max ${(loopDelay.max / 1e6).toFixed(1)} ms; CPU ${(((cpu.user + cpu.system) / 1000 / wall) * 100).toFixed(0)}% of one core; clients in a separate process: event loop delay p99 ${r.loopP99.toFixed(1)} ms, max ${r.loopMax.toFixed(1)} ms, CPU ${r.cpuPercent.toFixed(0)}%)`,
    );
    console.log(`    (the send itself, PUT → 200: p50 ${pct(sendTimes, 50).toFixed(1)} ms, p99 ${pct(sendTimes, 99).toFixed(1)} ms)`);
    const totalStatements = [...counted.values()].reduce((a, b) => a + b, 0);
    console.log(`    (database statements while measuring: ${totalStatements}, ${(totalStatements / Math.max(1, latencies.length)).toFixed(1)} per delivery)`);
    if (process.env.AXON_BENCH_SYNC_DEBUG) console.log(`    (major GCs of the server while measuring, s after the start: ${majorGcs.map((t) => ((t - t0) / 1000).toFixed(2)).join(' ') || 'none'})`);
    if (process.env.AXON_BENCH_SYNC_STATEMENTS) for (const [q, n] of [...counted].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`      ${String(n).padStart(7)}  ${q}`);
    if (r.sendErrors > 0) console.log(`    ${r.sendErrors} sends failed (first: ${r.firstSendError || 'non-2xx'})`);
    if (r.syncErrors > 0) console.log(`    ${r.syncErrors} failed long-polls (first: ${r.firstSyncError})`);
  } finally {
    s.hs.services.sync.notifier.wakeAll();
    await s.stop();
    child?.send({ bye: true });
    child?.kill();
  }
}

async function initialSync(): Promise<void> {
  const s = await startServer();
  try {
    const [me, other] = await makeUsers(s, 'big', 2);
    const rooms = s.hs.services.rooms;
    const ids: string[] = [];
    for (let r = 0; r < BIG_ROOMS; r += 25) {
      await Promise.all(
        Array.from({ length: Math.min(25, BIG_ROOMS - r) }, async (_, j) => {
          const { roomId } = await rooms.createRoom(other!.requester, { preset: 'public_chat', name: `Room ${r + j}` });
          await rooms.join(me!.requester, roomId);
          const sends: Promise<string>[] = [];
          for (let e = 0; e < BIG_EVENTS; e++) sends.push(rooms.sendMessage(other!.requester, roomId, 'm.room.message', { msgtype: 'm.text', body: `event ${e}` }));
          await Promise.all(sends);
          ids.push(roomId);
        }),
      );
    }
    const times: number[] = [];
    let joined = 0;
    for (let i = 0; i < 4; i++) {
      const t0 = performance.now();
      const body = await syncCall(s.baseUrl, me!.token, 'timeout=0');
      times.push(performance.now() - t0);
      joined = Object.keys(body.rooms.join).length;
    }
    const warm = [...times.slice(1)].sort((a, b) => a - b);
    console.log(`(b) initial sync, ${joined} rooms × ${BIG_EVENTS} events${full ? '' : ' [scaled down: PGlite]'}: first ${times[0]!.toFixed(0)} ms, warm median ${pct(warm, 50).toFixed(0)} ms   target: < 1000 ms`);
  } finally {
    await s.stop();
  }
}

const CHILD = `
const [base, count, ...tokens] = process.argv.slice(1); // node -e CODE args: argv is [node, ...args]
const http = require('node:http');
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
let open = 0;
const url = new URL(base);
function poll(i) {
  const token = tokens[i % tokens.length];
  // A held long-poll never answers during the measurement; one that answers or fails (an overloaded
  // server's 503, a dropped connect) is asked again, so the figure is per connection actually held.
  const again = () => setTimeout(() => poll(i), 200);
  const req = http.request({ host: url.hostname, port: url.port, agent, path: '/_matrix/client/v3/sync?timeout=300000&set_presence=offline&since=' + encodeURIComponent(process.env['SINCE_' + (i % tokens.length)]), headers: { authorization: 'Bearer ' + token } }, (res) => { res.resume(); res.on('end', again); });
  req.on('error', again);
  req.end();
  open++;
}
for (let i = 0; i < Number(count); i++) setTimeout(() => poll(i), Math.floor(i / 100) * 50);
setTimeout(() => process.send('open'), Math.ceil(Number(count) / 100) * 50 + 500);
process.on('message', () => process.exit(0));
`;

async function idleMemory(): Promise<void> {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const s = await startServer();
  try {
    const userCount = Math.min(1_000, CONNS);
    const users = await makeUsers(s, 'idle', userCount);
    const env: Record<string, string> = { ...process.env } as Record<string, string>;
    for (let i = 0; i < users.length; i++) env[`SINCE_${i}`] = (await syncCall(s.baseUrl, users[i]!.token, 'timeout=0&set_presence=offline')).next_batch as string;
    const measure = async () => {
      for (let i = 0; i < 3; i++) {
        gc();
        await new Promise((r) => setTimeout(r, 100));
      }
      const m = process.memoryUsage();
      return { heap: m.heapUsed, rss: m.rss, ext: m.external + m.arrayBuffers };
    };
    const before = await measure();
    const child = fork('-e', [CHILD, s.baseUrl, String(CONNS), ...users.map((u) => u.token)], { env, execArgv: [], stdio: ['ignore', 'ignore', 'inherit', 'ipc'] } as never);
    await new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', (code) => reject(new Error(`connection holder exited early (code ${code})`)));
    });
    // Wait until the server holds them all.
    const sync = s.hs.services.sync;
    // Each one runs an incremental sync before it waits: on a busy machine that takes a while. Wait
    // while the count still grows (up to 4 minutes), then measure what is held.
    let last = -1;
    let still = 0;
    for (let i = 0; i < 2_400 && sync.notifier.waitingCount < CONNS && still < 150; i++) {
      await new Promise((r) => setTimeout(r, 100));
      still = sync.notifier.waitingCount === last ? still + 1 : 0;
      last = sync.notifier.waitingCount;
    }
    const held = sync.notifier.waitingCount;
    const after = await measure();
    child.send('bye');
    const perHeap = (after.heap - before.heap) / held;
    const perRss = (after.rss - before.rss) / held;
    console.log(
      `(c) idle long-polls: ${held} held (${userCount} users): heap +${(perHeap / 1024).toFixed(1)} KB each, RSS +${(perRss / 1024).toFixed(1)} KB each (heap ${(before.heap / 1048576).toFixed(0)} → ${(after.heap / 1048576).toFixed(0)} MB)   target: < 20 KB each`,
    );
    s.hs.services.sync.notifier.wakeAll();
  } finally {
    await s.stop();
  }
}

export default async function bench(): Promise<void> {
  console.log(`database: ${onPg ? 'PostgreSQL' : 'PGlite'}${process.env.AXON_BENCH_REDIS_URL ? ' + Redis' : ''}`);
  const only = process.env.AXON_BENCH_SYNC_ONLY;
  if (!only || only.includes('a')) await deliveryLatency();
  if (!only || only.includes('b')) await initialSync();
  if (!only || only.includes('c')) await idleMemory();
}
