// Accounts: the argon2id cost of one password hash, password logins per second, and authenticated
// GET /account/whoami requests per second against a real started server, beside a bare koa endpoint
// on the same machine serving a similar JSON body. Targets (issue 4): one login costs 20–60 ms;
// whoami ≥ 60% of the bare koa rate. The two HTTP rates are measured in alternating slices so load
// from other processes hits both alike.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import { ARGON2_PARAMS, hashPassword } from '../../homeserver/auth/secrets.ts';
import { startTestServer } from '../../homeserver/testing.ts';
import { loginWithPassword, registerUser } from '../../homeserver/testing-users.ts';

const CONCURRENCY = 16;
const SLICE_MS = 500;
const TOTAL_MS = 3000;

interface LoopResult {
  requests: number;
  errors: number;
  ms: number;
  latencies: number[];
}

/** `concurrency` keep-alive request loops for `ms`; counts completed requests and non-2xx answers. */
async function loop(concurrency: number, ms: number, request: () => Promise<Response>): Promise<LoopResult> {
  const started = performance.now();
  const end = started + ms;
  const r: LoopResult = { requests: 0, errors: 0, ms: 0, latencies: [] };
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const t0 = performance.now();
        const res = await request();
        await res.arrayBuffer();
        r.latencies.push(performance.now() - t0);
        r.requests++;
        if (!res.ok) r.errors++;
      }
    }),
  );
  r.ms = performance.now() - started;
  return r;
}

function merge(a: LoopResult, b: LoopResult): LoopResult {
  return { requests: a.requests + b.requests, errors: a.errors + b.errors, ms: a.ms + b.ms, latencies: a.latencies.concat(b.latencies) };
}

function pct(values: number[], p: number): number {
  const s = [...values].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
}

const rate = (r: LoopResult) => (r.requests * 1000) / r.ms;
const fmt = (n: number, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });

async function bareKoa(): Promise<{ url: string; server: Server }> {
  const app = new Koa();
  app.use(async (ctx) => {
    // A header check as cheap as it gets, and a body the size of whoami's.
    if (!ctx.get('authorization')) ctx.status = 401;
    ctx.body = { user_id: '@bench:localhost', device_id: 'ABCDEFGHIJ', is_guest: false };
  });
  const server = createServer(app.callback());
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, server };
}

export default async function bench(): Promise<void> {
  // 1. argon2id alone.
  await hashPassword('warm-up password');
  const N = 10;
  const t0 = performance.now();
  for (let i = 0; i < N; i++) await hashPassword(`password ${i}`);
  const hashMs = (performance.now() - t0) / N;
  const { memory, passes, parallelism } = ARGON2_PARAMS;
  console.log(`argon2id m=${memory} KiB, t=${passes}, p=${parallelism}: ${fmt(hashMs, 1)} ms per hash   (target 20–60 ms)`);

  const s = await startTestServer();
  const koa = await bareKoa();
  try {
    const u = await registerUser(s.baseUrl, 'bench', 'bench password 1234');

    // 2. Logins: each is one argon2id verification plus a session insert. First one at a time (what one
    // login costs), then two loops (one per core is all argon2 can use) for the rate.
    await loginWithPassword(s.baseUrl, 'bench', 'bench password 1234');
    const one: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t = performance.now();
      const r = await loginWithPassword(s.baseUrl, 'bench', 'bench password 1234');
      if (r.status !== 200) throw new Error(`login ${r.status}`);
      one.push(performance.now() - t);
    }
    console.log(`one login alone: ${fmt(pct(one, 50), 1)} ms median of 10   (target 20–60 ms)`);
    const logins = await loop(2, TOTAL_MS, async () => {
      const r = await loginWithPassword(s.baseUrl, 'bench', 'bench password 1234');
      return new Response(null, { status: r.status });
    });
    console.log(
      `POST /login (m.login.password): ${fmt(rate(logins), 1)} logins/s, ${fmt(pct(logins.latencies, 50), 1)} ms p50, ` +
        `${fmt(pct(logins.latencies, 99), 1)} ms p99 per login (2 concurrent)${logins.errors ? `, ${logins.errors} errors` : ''}`,
    );

    // 3. whoami vs bare koa, alternating slices.
    const whoamiUrl = `${s.baseUrl}/_matrix/client/v3/account/whoami`;
    const headers = { authorization: `Bearer ${u.accessToken}` };
    const who = () => fetch(whoamiUrl, { headers });
    const bare = () => fetch(koa.url, { headers });
    // The same app's cheapest unauthenticated route: separates the cost of auth from the app's own.
    const versions = () => fetch(`${s.baseUrl}/_matrix/client/versions`);
    await loop(CONCURRENCY, 300, who);
    await loop(CONCURRENCY, 300, bare);
    await loop(CONCURRENCY, 300, versions);
    const empty = (): LoopResult => ({ requests: 0, errors: 0, ms: 0, latencies: [] });
    let w = empty();
    let b = empty();
    let v = empty();
    for (let t = 0; t < TOTAL_MS; t += SLICE_MS) {
      w = merge(w, await loop(CONCURRENCY, SLICE_MS, who));
      b = merge(b, await loop(CONCURRENCY, SLICE_MS, bare));
      v = merge(v, await loop(CONCURRENCY, SLICE_MS, versions));
    }
    const ratio = rate(w) / rate(b);
    console.log(
      `GET /account/whoami: ${fmt(rate(w))} req/s (p50 ${fmt(pct(w.latencies, 50), 2)} ms, p99 ${fmt(pct(w.latencies, 99), 2)} ms)${w.errors ? `, ${w.errors} errors` : ''}`,
    );
    console.log(`GET /_matrix/client/versions (same app, no auth): ${fmt(rate(v))} req/s (p50 ${fmt(pct(v.latencies, 50), 2)} ms)`);
    console.log(`bare koa endpoint:   ${fmt(rate(b))} req/s (p50 ${fmt(pct(b.latencies, 50), 2)} ms, p99 ${fmt(pct(b.latencies, 99), 2)} ms)`);
    console.log(`whoami / bare = ${fmt(ratio * 100)}%   (target ≥ 60%; ${CONCURRENCY} concurrent keep-alive connections, ${s.hs.database.kind})`);
  } finally {
    await new Promise<void>((r) => koa.server.close(() => r()));
    koa.server.closeAllConnections();
    await s.stop();
  }
}
