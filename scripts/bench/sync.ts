// /sync benchmarks (issue 5), each printed beside its target:
//  (a) delivery latency, send → the receiving client's long-poll returns, p50/p99, with USERS users
//      long-polling and RATE messages/s spread over ROOMS rooms (target p99 < 50 ms on PostgreSQL);
//  (b) initial sync of a user in BIG_ROOMS rooms with BIG_EVENTS events each (target < 1 s);
//  (c) server memory per idle long-poll, with CONNS connections held by a child process (target < 20 KB).
// The full scale is the (1,000 users, 100 msg/s over 100 rooms; 500 × 50; 10,000 connections).
// On PGlite (no AXON_BENCH_DATABASE_URL) (a) and (b) run scaled down by default — the embedded database
// is single-threaded WASM sharing the cores with the clients — and say so; AXON_BENCH_SYNC_FULL=1 forces
// the full scale. Set AXON_BENCH_DATABASE_URL (and optionally AXON_BENCH_REDIS_URL) for PostgreSQL.
import { fork } from 'node:child_process';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { startTestServer, type TestServer } from '../../homeserver/testing.ts';
import type { Requester } from '../../homeserver/http/api.ts';

const onPg = !!process.env.AXON_BENCH_DATABASE_URL;
const full = onPg || process.env.AXON_BENCH_SYNC_FULL === '1';
const num = (name: string, def: number) => Number(process.env[name] ?? def);
const USERS = num('AXON_BENCH_SYNC_USERS', full ? 1_000 : 200);
const ROOMS = num('AXON_BENCH_SYNC_ROOMS', full ? 100 : 20);
const RATE = num('AXON_BENCH_SYNC_RATE', full ? 100 : 20);
const SECONDS = num('AXON_BENCH_SYNC_SECONDS', 10);
const BIG_ROOMS = num('AXON_BENCH_SYNC_BIG_ROOMS', full ? 500 : 100);
const BIG_EVENTS = num('AXON_BENCH_SYNC_BIG_EVENTS', 50);
const CONNS = num('AXON_BENCH_SYNC_CONNS', 10_000);
const POOL = num('AXON_BENCH_SYNC_POOL', 20);

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
    const senders = roomIds.map((_, r) => users[(r * perRoom) % USERS]!);
    const filter = encodeURIComponent(JSON.stringify({ room: { timeline: { limit: 5 } }, presence: { types: [] } }));
    const latencies: number[] = [];
    const sentAt = new Map<string, number>();
    let running = true;
    // Initial syncs 50 at a time (a thousand clients starting in the same millisecond is not the figure).
    const tokens: string[] = [];
    for (let i = 0; i < users.length; i += 50) {
      tokens.push(...(await Promise.all(users.slice(i, i + 50).map(async (u) => (await syncCall(s.baseUrl, u.token, `filter=${filter}&timeout=0`)).next_batch as string))));
    }
    let syncErrors = 0;
    let responses = 0;
    let firstError = '';
    // Long-polls of 30 s, as clients use (Element asks for 30 s): idle users cost a wake-up per 30 s.
    const loops = users.map(async (u, i) => {
      let since = tokens[i]!;
      while (running) {
        let body: Record<string, any>;
        try {
          body = await syncCall(s.baseUrl, u.token, `filter=${filter}&timeout=30000&since=${encodeURIComponent(since)}`);
        } catch (err) {
          // Counted and printed: a failed long-poll is a delivery the figure must not quietly drop.
          if (syncErrors++ === 0) firstError = String((err as Error).message).slice(0, 200);
          await new Promise((r) => setTimeout(r, 100));
          continue;
        }
        const now = performance.now();
        since = body.next_batch;
        responses++;
        for (const room of Object.values(body.rooms?.join ?? {}) as any[]) {
          for (const e of room.timeline.events) {
            const t = sentAt.get(e.content?.body);
            if (t !== undefined && e.sender !== u.userId) latencies.push(now - t);
          }
        }
      }
    });
    // Steady state first: every user coming online announces presence to their room-mates, whose
    // long-polls answer; measure once the long-polls have been quiet for a second (at most a minute).
    const settleStart = performance.now();
    for (let last = -1, quietSince = performance.now(); performance.now() - settleStart < 60_000; ) {
      await new Promise((r) => setTimeout(r, 100));
      if (responses !== last) {
        last = responses;
        quietSince = performance.now();
      } else if (performance.now() - quietSince >= 1_000) break;
    }
    console.log(`    settled after ${((performance.now() - settleStart) / 1000).toFixed(1)} s (${responses} long-poll answers while users came online)`);
    const loopDelay = monitorEventLoopDelay({ resolution: 10 });
    loopDelay.enable();
    const total = RATE * SECONDS;
    const start = performance.now();
    const sends: Promise<unknown>[] = [];
    let sendErrors = 0;
    let firstSendError = '';
    const sendTimes: number[] = [];
    for (let i = 0; i < total; i++) {
      const due = start + (i * 1000) / RATE;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const r = i % ROOMS;
      const body = `m${i}`;
      sentAt.set(body, performance.now());
      sends.push(
        fetch(`${s.baseUrl}/_matrix/client/v3/rooms/${encodeURIComponent(roomIds[r]!)}/send/m.room.message/b${i}`, {
          method: 'PUT',
          headers: { authorization: `Bearer ${senders[r]!.token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ msgtype: 'm.text', body }),
        })
          .then(async (res) => {
            if (!res.ok) sendErrors++;
            await res.arrayBuffer();
            sendTimes.push(performance.now() - sentAt.get(body)!);
          })
          .catch((err: Error) => {
            if (sendErrors++ === 0) firstSendError = `${err.message} (${String((err.cause as Error | undefined)?.message ?? err.cause)})`;
          }),
      );
    }
    await Promise.all(sends);
    const achieved = total / ((performance.now() - start) / 1000);
    // Wait for the stragglers (up to a minute) so a backlog shows in the percentiles instead of
    // leaving them; whatever is still missing then is printed as missing.
    const expectedDeliveries = total * (perRoom - 1);
    const drainEnd = performance.now() + 60_000;
    while (latencies.length < expectedDeliveries && performance.now() < drainEnd) await new Promise((r) => setTimeout(r, 100));
    running = false;
    await s.hs.services.sync.notifier.wakeAll();
    await Promise.allSettled(loops);
    latencies.sort((a, b) => a - b);
    const expected = total * (perRoom - 1);
    console.log(
      `(a) delivery latency, ${USERS} long-polling users, ${ROOMS} rooms × ${perRoom} members, ${RATE} msg/s for ${SECONDS} s (achieved ${achieved.toFixed(0)} msg/s)${full ? '' : ' [scaled down: PGlite]'}`,
    );
    console.log(`    p50 ${pct(latencies, 50).toFixed(1)} ms, p99 ${pct(latencies, 99).toFixed(1)} ms, max ${pct(latencies, 100).toFixed(1)} ms over ${latencies.length}/${expected} deliveries   target: p99 < 50 ms on PostgreSQL`);
    loopDelay.disable();
    console.log(`    (event loop delay of the process — server and clients: p50 ${(loopDelay.percentile(50) / 1e6).toFixed(1)} ms, p99 ${(loopDelay.percentile(99) / 1e6).toFixed(1)} ms, max ${(loopDelay.max / 1e6).toFixed(1)} ms)`);
    sendTimes.sort((a, b) => a - b);
    console.log(`    (the send itself, PUT → 200: p50 ${pct(sendTimes, 50).toFixed(1)} ms, p99 ${pct(sendTimes, 99).toFixed(1)} ms)`);
    if (sendErrors > 0) console.log(`    ${sendErrors} sends failed (first: ${firstSendError || 'non-2xx'})`);
    if (syncErrors > 0) console.log(`    ${syncErrors} failed long-polls (first: ${firstError})`);
  } finally {
    await s.stop();
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
