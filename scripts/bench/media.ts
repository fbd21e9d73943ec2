// Media repository figures: upload and download throughput for 500 KB and 5 MB files with 20
// concurrent clients (MB/s and p50 latency), beside a bare node:http server streaming the same bytes
// to and from disk on the same machine (the ceiling); thumbnail time for a 4000×3000 JPEG; and the
// server's peak RSS growth during one 100 MB upload (target from issue 8: under 64 MB).
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { randomBytes } from 'node:crypto';
import sharp from 'sharp';
import type { TestServer } from '../../homeserver/testing.ts';

const CLIENTS = 20;
const p50 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const mb = (bytes: number) => bytes / (1024 * 1024);

async function runConcurrent(n: number, fn: (i: number) => Promise<void>): Promise<{ ms: number; latencies: number[] }> {
  const latencies: number[] = [];
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (next < n) {
        const i = next++;
        const t = performance.now();
        await fn(i);
        latencies.push(performance.now() - t);
      }
    }),
  );
  return { ms: performance.now() - start, latencies };
}

/** The ceiling: a bare HTTP server that streams request bodies to files and files back. */
async function bareServer(dir: string) {
  let n = 0;
  const srv = createServer(async (req, res) => {
    if (req.method === 'POST') {
      const name = join(dir, `f${n++}`);
      await pipeline(req, createWriteStream(name));
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ name }));
    } else {
      const name = decodeURIComponent(req.url!.slice(1));
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      await pipeline(createReadStream(name), res);
    }
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`, close: () => new Promise<void>((r) => srv.close(() => r())) };
}

function line(label: string, ours: { ms: number; latencies: number[] }, bytes: number, base: { ms: number; latencies: number[] }): string {
  const rate = (r: { ms: number }) => mb(bytes) / (r.ms / 1000);
  return `${label.padEnd(28)} ${rate(ours).toFixed(0).padStart(5)} MB/s  p50 ${p50(ours.latencies).toFixed(0).padStart(5)} ms   | bare node:http to disk: ${rate(base).toFixed(0).padStart(5)} MB/s  p50 ${p50(base.latencies).toFixed(0).padStart(5)} ms  (${((rate(ours) / rate(base)) * 100).toFixed(0)}% of it)`;
}

export default async function bench(): Promise<void> {
  const pgUrl = process.env.AXON_BENCH_DATABASE_URL;
  if (pgUrl) process.env.AXON_TEST_DATABASE_URL = pgUrl;
  else delete process.env.AXON_TEST_DATABASE_URL;
  delete process.env.AXON_TEST_REDIS_URL;
  const { startTestServer } = await import('../../homeserver/testing.ts');
  const { registerUser } = await import('../../homeserver/testing-users.ts');
  const s: TestServer = await startTestServer({ config: { media: { max_upload_bytes: 200 * 1024 * 1024 } } });
  const bareDir = mkdtempSync(join(tmpdir(), 'axon-bench-bare-'));
  const bare = await bareServer(bareDir);
  try {
    const users = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => registerUser(s.baseUrl, `bench${i}`)));
    console.log(`throughput, ${CLIENTS} concurrent clients, random (incompressible, non-image) bytes, ${pgUrl ? 'PostgreSQL' : 'PGlite'}:`);
    for (const [label, size, count] of [
      ['500 KB', 500 * 1024, 200],
      ['5 MB', 5 * 1024 * 1024, 40],
    ] as const) {
      const body = randomBytes(size);
      const ids: string[] = [];
      const up = await runConcurrent(count, async (i) => {
        const u = users[i % CLIENTS]!;
        const r = await fetch(`${s.baseUrl}/_matrix/media/v3/upload`, { method: 'POST', headers: { authorization: `Bearer ${u.accessToken}`, 'content-type': 'application/octet-stream' }, body });
        const j = (await r.json()) as { content_uri: string };
        ids[i] = j.content_uri.split('/').pop()!;
      });
      const names: string[] = [];
      const bareUp = await runConcurrent(count, async (i) => {
        const r = await fetch(`${bare.url}/`, { method: 'POST', body });
        names[i] = ((await r.json()) as { name: string }).name;
      });
      console.log(line(`upload ${label} ×${count}`, up, size * count, bareUp));
      const down = await runConcurrent(count, async (i) => {
        const u = users[i % CLIENTS]!;
        const r = await fetch(`${s.baseUrl}/_matrix/client/v1/media/download/localhost/${ids[i]}`, { headers: { authorization: `Bearer ${u.accessToken}` } });
        const got = await r.arrayBuffer();
        if (got.byteLength !== size) throw new Error(`download returned ${got.byteLength} bytes`);
      });
      const bareDown = await runConcurrent(count, async (i) => {
        await (await fetch(`${bare.url}/${encodeURIComponent(names[i]!)}`)).arrayBuffer();
      });
      console.log(line(`download ${label} ×${count}`, down, size * count, bareDown));
    }

    // Thumbnails of a 4000×3000 JPEG (camera-sized; noise so that it is not trivially compressible).
    const raw = randomBytes(4000 * 3000 * 3);
    const jpeg = await sharp(raw, { raw: { width: 4000, height: 3000, channels: 3 } }).jpeg({ quality: 85 }).toBuffer();
    const token = users[0]!.accessToken;
    const h = { authorization: `Bearer ${token}` };
    const media = s.hs.services.media;
    const pregen: number[] = [];
    const onDemand: number[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await fetch(`${s.baseUrl}/_matrix/media/v3/upload`, { method: 'POST', headers: { ...h, 'content-type': 'image/jpeg' }, body: jpeg });
      const id = ((await r.json()) as { content_uri: string }).content_uri.split('/').pop()!;
      let t = performance.now();
      await media.idle();
      pregen.push(performance.now() - t);
      t = performance.now();
      const th = await fetch(`${s.baseUrl}/_matrix/client/v1/media/thumbnail/localhost/${id}?width=1000&height=1000&method=scale`, { headers: h });
      await th.arrayBuffer();
      onDemand.push(performance.now() - t);
    }
    console.log(`thumbnails of a 4000×3000 JPEG (${(jpeg.length / 1024 / 1024).toFixed(1)} MB), p50 of 3:`);
    console.log(`  pre-generation of the 5 default sizes after upload: ${p50(pregen).toFixed(0)} ms   (target: under 2000 ms, Axon's own)`);
    console.log(`  one on-demand 1000×1000 scale thumbnail (decode + resize + encode): ${p50(onDemand).toFixed(0)} ms   (target: under 1000 ms, Axon's own)`);

    // Peak RSS growth during one 100 MB upload, streamed from a reused 64 KB chunk.
    const total = 100 * 1024 * 1024;
    const chunk = randomBytes(64 * 1024);
    if (global.gc) global.gc();
    await new Promise((r) => setTimeout(r, 200));
    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 10);
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(c) {
        if (sent >= total) return c.close();
        c.enqueue(new Uint8Array(chunk));
        sent += chunk.length;
      },
    });
    const t = performance.now();
    const r = await fetch(`${s.baseUrl}/_matrix/media/v3/upload`, { method: 'POST', headers: { ...h, 'content-type': 'application/octet-stream' }, body: stream, duplex: 'half' } as RequestInit);
    await r.json();
    const ms = performance.now() - t;
    clearInterval(sampler);
    console.log(
      `100 MB upload (chunked, one client): ${(100 / (ms / 1000)).toFixed(0)} MB/s; peak RSS growth ${mb(peak - baseline).toFixed(1)} MB   (target: under 64 MB; client and server share the process)`,
    );
  } finally {
    await bare.close();
    rmSync(bareDir, { recursive: true, force: true });
    await s.stop();
  }
}

if (import.meta.main) await bench();
