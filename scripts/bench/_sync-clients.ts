// The clients of bench sync (a), in their own process so the server's event loop is measured alone (as
// in production, where clients are other machines): USERS long-polling users and the senders of RATE
// messages/s. Send and receive times are both taken here, so the latency is send → the receiving
// client's long-poll returns, on one clock. Started by sync.ts with fork(); talks over IPC:
//   parent → { setup }   child → { settled, answers }   parent → { go }   child → { warmedUp }   child → { result }
import http from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';

interface Setup {
  base: string;
  users: Array<{ userId: string; token: string }>;
  roomIds: string[];
  /** Index into users of each room's sender. */
  senders: number[];
  rate: number;
  seconds: number;
  /** Seconds of sends at the same rate before measuring. */
  warmup: number;
  perRoom: number;
  filter: string;
}

export interface ClientResult {
  latencies: number[];
  sendTimes: number[];
  achieved: number;
  expected: number;
  sendErrors: number;
  firstSendError: string;
  syncErrors: number;
  firstSyncError: string;
  /** This process's event loop while measuring (a stall here delays the receive times it takes). */
  loopP99: number;
  loopMax: number;
  cpuPercent: number;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });

function request(base: URL, method: string, path: string, token: string, body?: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: base.hostname, port: base.port, agent, method, path, headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function pause(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function run(setup: Setup): Promise<void> {
  const base = new URL(setup.base);
  const { users, roomIds, senders, rate, seconds, perRoom, filter } = setup;
  const sync = async (token: string, params: string): Promise<Record<string, any>> => {
    const res = await request(base, 'GET', `/_matrix/client/v3/sync?filter=${filter}&${params}`, token);
    if (res.status !== 200) throw new Error(`sync ${res.status} ${res.text.slice(0, 200)}`);
    return JSON.parse(res.text) as Record<string, any>;
  };
  // Initial syncs 50 at a time (a thousand clients starting in the same millisecond is not the figure).
  const tokens: string[] = [];
  for (let i = 0; i < users.length; i += 50) {
    tokens.push(...(await Promise.all(users.slice(i, i + 50).map(async (u) => (await sync(u.token, 'timeout=0')).next_batch as string))));
  }
  const latencies: number[] = [];
  const slow: string[] = [];
  let startAt = 0;
  const sentAt = new Map<string, number>();
  let running = true;
  let syncErrors = 0;
  let firstSyncError = '';
  let answers = 0;
  // Long-polls of 30 s, as clients use (Element asks for 30 s).
  const loops = users.map(async (u, i) => {
    let since = tokens[i]!;
    while (running) {
      let body: Record<string, any>;
      try {
        body = await sync(u.token, `timeout=30000&since=${encodeURIComponent(since)}`);
      } catch (err) {
        // Counted and printed: a failed long-poll is a delivery the figure must not quietly drop.
        if (syncErrors++ === 0) firstSyncError = String((err as Error).message).slice(0, 200);
        await pause(100);
        continue;
      }
      const now = performance.now();
      since = body.next_batch;
      answers++;
      for (const room of Object.values(body.rooms?.join ?? {}) as any[]) {
        for (const e of room.timeline.events) {
          const t = sentAt.get(e.content?.body);
          if (t !== undefined && e.sender !== u.userId) { latencies.push(now - t); if (process.env.AXON_BENCH_SYNC_DEBUG && now - t > 50) slow.push(`${Math.round(t - startAt)}:${Math.round(now - t)}`); }
        }
      }
    }
  });
  // Steady state first: users coming online announce presence to their room-mates, whose long-polls
  // answer; report once the long-polls have been quiet for a second (at most a minute).
  const settleStart = performance.now();
  for (let last = -1, quietSince = performance.now(); performance.now() - settleStart < 60_000; ) {
    await pause(100);
    if (answers !== last) {
      last = answers;
      quietSince = performance.now();
    } else if (performance.now() - quietSince >= 1_000) break;
  }
  process.send!({ settled: (performance.now() - settleStart) / 1000, answers });
  await new Promise<void>((r) => process.once('message', () => r()));

  // Warm-up at the same rate, not measured (a server that has just started fills its caches, prepares
  // its statements and compiles its hot code in the first seconds), then a pause for its deliveries.
  const warmTotal = Math.round(rate * setup.warmup);
  const warmStart = performance.now();
  const warmSends: Promise<unknown>[] = [];
  for (let i = 0; i < warmTotal; i++) {
    const wait = warmStart + (i * 1000) / rate - performance.now();
    if (wait > 0) await pause(wait);
    const r = i % roomIds.length;
    warmSends.push(
      request(base, 'PUT', `/_matrix/client/v3/rooms/${encodeURIComponent(roomIds[r]!)}/send/m.room.message/w${i}`, users[senders[r]!]!.token, JSON.stringify({ msgtype: 'm.text', body: `w${i}` })).catch(() => undefined),
    );
  }
  await Promise.all(warmSends);
  if (warmTotal > 0) await pause(1_000);
  process.send!({ warmedUp: true });

  const total = rate * seconds;
  const loop = monitorEventLoopDelay({ resolution: 5 });
  loop.enable();
  const cpu0 = process.cpuUsage();
  // AXON_BENCH_SYNC_DEBUG: when this process stalled for more than 20 ms (to tell client stalls from
  // server ones in the slow clusters).
  const stalls: string[] = [];
  let tick = performance.now();
  const stallTimer = process.env.AXON_BENCH_SYNC_DEBUG
    ? setInterval(() => {
        const now = performance.now();
        if (now - tick > 25) stalls.push(`${((tick - startAt) / 1000).toFixed(2)}:${Math.round(now - tick - 5)}`);
        tick = now;
      }, 5)
    : null;
  const start = performance.now();
  startAt = start;
  const sends: Promise<unknown>[] = [];
  let sendErrors = 0;
  let firstSendError = '';
  const sendTimes: number[] = [];
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await pause(wait);
    const r = i % roomIds.length;
    const body = `m${i}`;
    const t0 = performance.now();
    sentAt.set(body, t0);
    sends.push(
      request(base, 'PUT', `/_matrix/client/v3/rooms/${encodeURIComponent(roomIds[r]!)}/send/m.room.message/b${i}`, users[senders[r]!]!.token, JSON.stringify({ msgtype: 'm.text', body }))
        .then((res) => {
          if (res.status !== 200 && sendErrors++ === 0) firstSendError = `${res.status} ${res.text.slice(0, 200)}`;
          sendTimes.push(performance.now() - t0);
        })
        .catch((err: Error) => {
          if (sendErrors++ === 0) firstSendError = err.message;
        }),
    );
  }
  await Promise.all(sends);
  const achieved = total / ((performance.now() - start) / 1000);
  // Wait for the stragglers (up to a minute) so a backlog shows in the percentiles instead of leaving
  // them out; whatever is still missing then is printed as missing.
  const expected = total * (perRoom - 1);
  const drainEnd = performance.now() + 60_000;
  while (latencies.length < expected && performance.now() < drainEnd) await pause(100);
  running = false;
  loop.disable();
  if (stallTimer) clearInterval(stallTimer);
  const cpu = process.cpuUsage(cpu0);
  const result: ClientResult = {
    latencies,
    sendTimes,
    achieved,
    expected,
    sendErrors,
    firstSendError,
    syncErrors,
    firstSyncError,
    loopP99: loop.percentile(99) / 1e6,
    loopMax: loop.max / 1e6,
    cpuPercent: ((cpu.user + cpu.system) / 1000 / (performance.now() - start)) * 100,
  };
  if (process.env.AXON_BENCH_SYNC_DEBUG) console.error(`measuring started at ${new Date(Date.now() - (performance.now() - start)).toISOString()}`);
  if (stalls.length) console.error('client process stalls > 20 ms (s:ms):', stalls.join(' '));
  if (process.env.AXON_BENCH_SYNC_DEBUG) { const bySec = new Map<number, number>(); for (const x of slow) { const sec = Math.floor(Number(x.split(':')[0]) / 500) / 2; bySec.set(sec, (bySec.get(sec) ?? 0) + 1); } console.error('slow deliveries (>50 ms) by send time (s):', [...bySec].sort((a, b) => a[0] - b[0]).map(([k, v]) => `${k}:${v}`).join(' ')); }
  process.send!({ result });
  // The parent wakes the remaining long-polls by stopping the server; leave without waiting for them.
  void loops;
  await new Promise<void>((r) => process.once('message', () => r()));
  process.exit(0);
}

process.once('message', (m: { setup: Setup }) => {
  run(m.setup).catch((err: Error) => {
    console.error(`sync bench clients: ${err.stack ?? err}`);
    process.exit(1);
  });
});
