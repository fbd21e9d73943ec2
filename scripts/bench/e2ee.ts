// End-to-end encryption keys (issue 7): /keys/claim throughput and /keys/query latency for a user who
// shares encrypted rooms with 1,000 users, over HTTP against a real homeserver. PGlite by default; set
// AXON_BENCH_DATABASE_URL for PostgreSQL (a fresh schema, dropped afterwards).
//
// Seeding: the 1,000 users and their devices are made through the accounts service, they join
// USERS/ROOM_SIZE encrypted rooms with Alice through the rooms service (real membership events, so the
// device-list tracking runs as it does in production), and their keys go in with bulk SQL: a signed
// device_keys object per device, master and self-signing keys per user with the self-signing
// signature on the device (what a cross-signed client publishes), and OTK_PER_DEVICE one-time keys.
//
// (a) /keys/query: Alice asks for every device of all 1,000 users in one request (what her client does
//     on first sync in those rooms); sequential, p50/p90/p99.
// (b) /keys/claim: CONCURRENCY clients each claiming one key of one device per request (starting Olm
//     sessions one by one), and one request claiming a key for each of the 1,000 devices (what a client
//     sending the first message in a 1,000-member room does), both as claimed keys per second.
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import type { Requester } from '../../homeserver/http/api.ts';
import type { TestServer } from '../../homeserver/testing.ts';
import { encodeBase64 } from '../../spec/base64.ts';
import { canonicalJson } from '../../spec/canonical-json.ts';
import { generateSigningKey, signJson } from '../../spec/signing.ts';

const num = (name: string, def: number) => Number(process.env[name] ?? def);
const USERS = num('AXON_BENCH_E2EE_USERS', 1_000);
const ROOM_SIZE = 100;
const OTK_PER_DEVICE = num('AXON_BENCH_E2EE_OTKS', 50);
const QUERIES = num('AXON_BENCH_E2EE_QUERIES', 50);
const CONCURRENCY = 20;
const CLAIM_SECONDS = num('AXON_BENCH_E2EE_SECONDS', 5);

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

interface Member {
  userId: string;
  deviceId: string;
  requester: Requester;
}

export default async function bench(): Promise<void> {
  const pgUrl = process.env.AXON_BENCH_DATABASE_URL;
  if (pgUrl) process.env.AXON_TEST_DATABASE_URL = pgUrl;
  else delete process.env.AXON_TEST_DATABASE_URL;
  delete process.env.AXON_TEST_REDIS_URL;
  const { startTestServer } = await import('../../homeserver/testing.ts');
  const dbName = pgUrl ? 'PostgreSQL' : 'PGlite (in memory)';
  const s: TestServer = await startTestServer();
  try {
    const accounts = s.hs.services.accounts;
    const rooms = s.hs.services.rooms;
    const tSeed = performance.now();

    // Users and devices.
    const aliceId = await accounts.createUser({ localpart: 'alice', password: null });
    const aliceSession = await accounts.createSession(aliceId);
    const alice = (await accounts.resolve(aliceSession.accessToken)) as Requester;
    const members: Member[] = [];
    for (let i = 0; i < USERS; i += 50) {
      members.push(
        ...(await Promise.all(
          Array.from({ length: Math.min(50, USERS - i) }, async (_, j) => {
            const userId = await accounts.createUser({ localpart: `m${i + j}`, password: null });
            const sess = await accounts.createSession(userId);
            return { userId, deviceId: sess.deviceId, requester: (await accounts.resolve(sess.accessToken)) as Requester };
          }),
        )),
      );
    }
    const claimers = await Promise.all(
      Array.from({ length: CONCURRENCY }, async (_, i) => {
        const userId = await accounts.createUser({ localpart: `claimer${i}`, password: null });
        return (await accounts.createSession(userId)).accessToken;
      }),
    );

    // Encrypted rooms: Alice shares one with every member.
    const encryption = { type: 'm.room.encryption', state_key: '', content: { algorithm: 'm.megolm.v1.aes-sha2' } };
    const groups: Member[][] = [];
    for (let i = 0; i < members.length; i += ROOM_SIZE) groups.push(members.slice(i, i + ROOM_SIZE));
    await Promise.all(
      groups.map(async (group) => {
        const { roomId } = await rooms.createRoom(alice, { preset: 'public_chat', initial_state: [encryption] });
        for (const m of group) await rooms.join(m.requester, roomId);
      }),
    );

    // Keys, in bulk.
    const curve = () => encodeBase64(randomBytes(32));
    const dev = { u: [] as string[], d: [] as string[], json: [] as string[], ed: [] as string[] };
    const cs = { u: [] as string[], type: [] as string[], pub: [] as string[], json: [] as string[] };
    const sig = { tu: [] as string[], tk: [] as string[], sk: [] as string[], sig: [] as string[] };
    const otk = { u: [] as string[], d: [] as string[], id: [] as string[], json: [] as string[] };
    for (const m of members) {
      const ed = generateSigningKey(m.deviceId);
      const edPub = encodeBase64(ed.publicKey);
      const deviceKeys = signJson(
        {
          user_id: m.userId,
          device_id: m.deviceId,
          algorithms: ['m.olm.v1.curve25519-aes-sha2', 'm.megolm.v1.aes-sha2'],
          keys: { [`curve25519:${m.deviceId}`]: curve(), [`ed25519:${m.deviceId}`]: edPub },
        },
        m.userId,
        ed,
      );
      dev.u.push(m.userId);
      dev.d.push(m.deviceId);
      dev.json.push(canonicalJson(deviceKeys));
      dev.ed.push(edPub);

      const master = generateSigningKey();
      const ssk = generateSigningKey();
      const masterPub = encodeBase64(master.publicKey);
      const sskPub = encodeBase64(ssk.publicKey);
      (master as { keyId: string }).keyId = `ed25519:${masterPub}`;
      (ssk as { keyId: string }).keyId = `ed25519:${sskPub}`;
      const masterKey = { user_id: m.userId, usage: ['master'], keys: { [`ed25519:${masterPub}`]: masterPub } };
      const sskKey = signJson({ user_id: m.userId, usage: ['self_signing'], keys: { [`ed25519:${sskPub}`]: sskPub } }, m.userId, master);
      cs.u.push(m.userId, m.userId);
      cs.type.push('master', 'self_signing');
      cs.pub.push(masterPub, sskPub);
      cs.json.push(canonicalJson(masterKey), canonicalJson(sskKey));
      const signedDevice = signJson(deviceKeys, m.userId, ssk) as { signatures: Record<string, Record<string, string>> };
      sig.tu.push(m.userId);
      sig.tk.push(m.deviceId);
      sig.sk.push(`ed25519:${sskPub}`);
      sig.sig.push(signedDevice.signatures[m.userId]![`ed25519:${sskPub}`]!);

      for (let k = 0; k < OTK_PER_DEVICE; k++) {
        otk.u.push(m.userId);
        otk.d.push(m.deviceId);
        otk.id.push(`AAAA${k.toString(36).padStart(4, '0')}`);
        otk.json.push(canonicalJson(signJson({ key: curve() }, m.userId, ed)));
      }
    }
    const db = s.hs.db;
    const now = Date.now();
    await sql`insert into e2e_device_keys (user_id, device_id, key_json, ed25519, ts)
      select u, d, j, e, ${now} from unnest(${dev.u}::text[], ${dev.d}::text[], ${dev.json}::text[], ${dev.ed}::text[]) as t(u, d, j, e)`.execute(db);
    await sql`insert into e2e_cross_signing_keys (user_id, key_type, public_key, key_json, ts)
      select u, k, p, j, ${now} from unnest(${cs.u}::text[], ${cs.type}::text[], ${cs.pub}::text[], ${cs.json}::text[]) as t(u, k, p, j)`.execute(db);
    await sql`insert into e2e_cross_signing_signatures (target_user_id, target_key_id, signer_user_id, signer_key_id, signature)
      select u, k, u, sk, sg from unnest(${sig.tu}::text[], ${sig.tk}::text[], ${sig.sk}::text[], ${sig.sig}::text[]) as t(u, k, sk, sg)`.execute(db);
    for (let i = 0; i < otk.u.length; i += 10_000) {
      const part = (a: string[]) => a.slice(i, i + 10_000);
      await sql`insert into e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json)
        select u, d, 'signed_curve25519', k, j from unnest(${part(otk.u)}::text[], ${part(otk.d)}::text[], ${part(otk.id)}::text[], ${part(otk.json)}::text[]) as t(u, d, k, j)`.execute(db);
    }
    const seedSeconds = (performance.now() - tSeed) / 1000;

    const send = async (token: string, path: string, body: string): Promise<Response> => {
      const r = await fetch(`${s.baseUrl}/_matrix/client/v3${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body,
      });
      if (r.status !== 200) throw new Error(`${path}: ${r.status} ${await r.text()}`);
      return r;
    };
    const post = async (token: string, path: string, body: unknown): Promise<Record<string, any>> => (await (await send(token, path, JSON.stringify(body))).json()) as Record<string, any>;
    // Timed requests read the whole response but leave parsing it out: the client shares this process.
    const timed = async (token: string, path: string, body: string): Promise<number> => {
      const t = performance.now();
      await (await send(token, path, body)).arrayBuffer();
      return performance.now() - t;
    };

    // (a) /keys/query for all 1,000 room-mates.
    const queryBody = { device_keys: Object.fromEntries(members.map((m) => [m.userId, []])) };
    const first = await post(aliceSession.accessToken, '/keys/query', queryBody);
    const devicesReturned = Object.values(first.device_keys as Record<string, object>).reduce((n, d) => n + Object.keys(d).length, 0);
    const crossSigned = Object.keys(first.master_keys as object).length;
    const responseBytes = JSON.stringify(first).length;
    const queryText = JSON.stringify(queryBody);
    for (let i = 0; i < 3; i++) await timed(aliceSession.accessToken, '/keys/query', queryText);
    const queryTimes: number[] = [];
    for (let i = 0; i < QUERIES; i++) queryTimes.push(await timed(aliceSession.accessToken, '/keys/query', queryText));
    queryTimes.sort((a, b) => a - b);
    // A single user's devices, for scale.
    const oneTimes: number[] = [];
    for (let i = 0; i < QUERIES; i++) {
      const m = members[i % members.length]!;
      oneTimes.push(await timed(aliceSession.accessToken, '/keys/query', JSON.stringify({ device_keys: { [m.userId]: [] } })));
    }
    oneTimes.sort((a, b) => a - b);

    // (b1) one key per request, CONCURRENCY clients, for CLAIM_SECONDS (or until keys run low).
    const budget = Math.floor((USERS * OTK_PER_DEVICE) / 2);
    let claimed = 0;
    let requests = 0;
    let duplicates = 0;
    const seen = new Set<string>();
    const tClaim = performance.now();
    const deadline = tClaim + CLAIM_SECONDS * 1000;
    await Promise.all(
      claimers.map(async (token, c) => {
        let i = c;
        while (performance.now() < deadline && requests < budget) {
          const m = members[i % members.length]!;
          i += CONCURRENCY;
          requests++;
          const body = await post(token, '/keys/claim', { one_time_keys: { [m.userId]: { [m.deviceId]: 'signed_curve25519' } } });
          for (const id of Object.keys(body.one_time_keys[m.userId]?.[m.deviceId] ?? {})) {
            const k = `${m.userId}|${m.deviceId}|${id}`;
            if (seen.has(k)) duplicates++;
            seen.add(k);
            claimed++;
          }
        }
      }),
    );
    const singleRate = claimed / ((performance.now() - tClaim) / 1000);

    // (b2) one request, a key for each of the 1,000 devices (repeated; each round takes fresh keys).
    const bulkBody = { one_time_keys: Object.fromEntries(members.map((m) => [m.userId, { [m.deviceId]: 'signed_curve25519' }])) };
    const bulkTimes: number[] = [];
    let bulkKeys = 0;
    for (let i = 0; i < 10; i++) {
      const t = performance.now();
      const body = await post(claimers[0]!, '/keys/claim', bulkBody);
      bulkTimes.push(performance.now() - t);
      for (const devs of Object.values(body.one_time_keys as Record<string, Record<string, object>>)) for (const keys of Object.values(devs)) bulkKeys += Object.keys(keys).length;
    }
    bulkTimes.sort((a, b) => a - b);
    const bulkRate = bulkKeys / (bulkTimes.reduce((a, b) => a + b, 0) / 1000);

    console.log(`database: ${dbName}`);
    console.log(
      `seeded ${USERS} users × 1 device (device keys, master + self-signing keys, ${OTK_PER_DEVICE} one-time keys each) in ${USERS / ROOM_SIZE} encrypted rooms with Alice: ${seedSeconds.toFixed(1)} s`,
    );
    console.log(
      `(a) /keys/query, Alice → all ${USERS} room-mates (${devicesReturned} devices, ${crossSigned} master keys, ${(responseBytes / 1024).toFixed(0)} KiB), sequential n=${QUERIES}: p50 ${pct(queryTimes, 50).toFixed(1)} ms, p90 ${pct(queryTimes, 90).toFixed(1)} ms, p99 ${pct(queryTimes, 99).toFixed(1)} ms (target p50 < 100 ms)`,
    );
    console.log(`    /keys/query for one user: p50 ${pct(oneTimes, 50).toFixed(1)} ms, p99 ${pct(oneTimes, 99).toFixed(1)} ms`);
    console.log(
      `(b) /keys/claim, one key per request, ${CONCURRENCY} concurrent clients: ${singleRate.toFixed(0)} claims/s (${requests} requests, ${claimed} keys, ${duplicates} handed out twice) (target ≥ 500 claims/s)`,
    );
    console.log(
      `    /keys/claim, one request for all ${USERS} devices: p50 ${pct(bulkTimes, 50).toFixed(1)} ms per request, ${bulkRate.toFixed(0)} keys/s (target < 500 ms per request)`,
    );
  } finally {
    await s.stop();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]!).href) await bench();
