// Signing-core throughput for a typical ~1 KB m.room.message PDU: our canonical-JSON + Ed25519 sign and
// canonical-JSON + verify, beside raw node:crypto Ed25519 sign/verify on the very same bytes (the
// ceiling). Target (DESIGN.md §2, federation verifies every event): our verify ≥ 70% of raw verify.
import { sign, verify } from 'node:crypto';
import { canonicalJson, canonicalJsonBytes } from '../../spec/canonical-json.ts';
import type { Pdu } from '../../spec/events.ts';
import { computeContentHash, computeEventId, hashAndSignEvent, verifyEventSignature } from '../../spec/hashes.ts';
import { getRoomVersion } from '../../spec/room-versions.ts';
import { decodeBase64 } from '../../spec/base64.ts';
import { generateSigningKey, signJson, verifyJsonSignature } from '../../spec/signing.ts';

const RUN_MS = 2000;

/** Runs `fn` for about `ms` milliseconds (in batches, to keep timer reads out of the way); returns [ops, ms]. */
function run(fn: () => unknown, ms: number): [number, number] {
  let ops = 0;
  let batch = 16;
  const start = performance.now();
  let elapsed = 0;
  while (elapsed < ms) {
    for (let i = 0; i < batch; i++) fn();
    ops += batch;
    elapsed = performance.now() - start;
    if (elapsed < ms / 10) batch *= 2;
  }
  return [ops, elapsed];
}

/** Operations per second of `fn` over about RUN_MS. */
function measure(fn: () => unknown, ms = RUN_MS): number {
  run(fn, 100); // warm-up: let V8 optimise before timing
  const [ops, elapsed] = run(fn, ms);
  return (ops * 1000) / elapsed;
}

/**
 * Operations per second of `ours` and `raw`, each over about RUN_MS, measured in alternating 100 ms
 * slices so that load from other processes on the machine hits both alike and the ratio stays fair.
 */
function measurePair(ours: () => unknown, raw: () => unknown, ms = RUN_MS): [number, number] {
  run(ours, 100);
  run(raw, 100);
  let oursOps = 0, oursMs = 0, rawOps = 0, rawMs = 0;
  for (let t = 0; t < ms; t += 100) {
    const [a, am] = run(ours, 100);
    const [b, bm] = run(raw, 100);
    oursOps += a; oursMs += am; rawOps += b; rawMs += bm;
  }
  return [(oursOps * 1000) / oursMs, (rawOps * 1000) / rawMs];
}

function typicalMessage(): Pdu {
  const body =
    'Hello everyone! Here is the summary of the meeting: we agreed to ship the federation work next week, ' +
    'the state resolution fixtures all pass, and the media repository needs a review of the thumbnailing ' +
    'limits. Ünïcødé and emoji 🎉 included so escaping and UTF-8 paths are exercised.';
  return {
    room_id: '!OGEhHVWSdvArJzumhm:matrix.org',
    sender: '@alice:example.org',
    origin: 'example.org',
    origin_server_ts: 1_700_000_000_000,
    type: 'm.room.message',
    content: {
      msgtype: 'm.text',
      body,
      format: 'org.matrix.custom.html',
      formatted_body: `<p>${body.replace('summary', '<b>summary</b>')}</p>`,
      'm.mentions': { user_ids: ['@bob:example.org'] },
    },
    prev_events: ['$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg'],
    auth_events: [
      '$acR1l0raoZnm60CBwAVgqbZqoO-mYU81xysh1u7XcJk',
      '$CD66HAED5npg6074c6pDtLKalHjVfYb2q4Q3LZgrW6o',
      '$x7Vq2b0Z6yO3mUxPZ9HqD2pR1cT4sWnE8aLkJfGhI0M',
    ],
    depth: 12345,
    unsigned: { age_ts: 1_700_000_000_000 },
  };
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US').replaceAll(',', '');
}

function line(label: string, ours: number, rawLabel: string, raw: number): void {
  console.log(`signing: ${label} ${fmt(ours)}/s vs ${rawLabel} ${fmt(raw)}/s (${Math.round((ours / raw) * 100)}%)`);
}

export default async function bench(): Promise<void> {
  const rv = getRoomVersion('12')!;
  const key = generateSigningKey();
  const serverName = 'example.org';
  const event = hashAndSignEvent(typicalMessage(), rv, serverName, key);
  const { signatures: _s, unsigned: _u, ...signable } = event;
  const bytes = canonicalJsonBytes(signable);
  const sigB64 = event.signatures!['example.org']![key.keyId]!;
  // The JSON signature over the whole (unredacted) event, for the JSON-level sign/verify pair.
  const jsonSigned = signJson(event, serverName, key);
  const jsonSig = decodeBase64(jsonSigned.signatures[serverName]![key.keyId]!);
  console.log(`signing: event ${bytes.length} bytes of canonical JSON, room v${rv.id}, key ${key.keyId} (${sigB64.length}-char signature)`);

  const canon = measure(() => canonicalJsonBytes(signable));
  const canonText = measure(() => canonicalJson(signable));
  console.log(
    `signing: canonical JSON alone ${fmt(canon)}/s as bytes (${((canon * bytes.length) / 1e6).toFixed(0)} MB/s), ` +
      `${fmt(canonText)}/s as text; JSON.stringify (unsorted, unchecked) ${fmt(measure(() => JSON.stringify(signable)))}/s`,
  );

  const [ourSign, rawSign] = measurePair(() => signJson(event, serverName, key), () => sign(null, bytes, key.privateKeyObject));
  line('canonical+sign', ourSign, 'raw sign', rawSign);

  const [ourVerify, rawVerify] = measurePair(
    () => verifyJsonSignature(jsonSigned, serverName, key.keyId, key.publicKey),
    () => verify(null, bytes, key.publicKeyObject, jsonSig),
  );
  line('canonical+verify', ourVerify, 'raw verify', rawVerify);
  const target = ourVerify / rawVerify >= 0.7 ? 'meets' : 'MISSES';
  console.log(`signing: verify target ≥ 70% of raw verify: ${target} (${Math.round((ourVerify / rawVerify) * 100)}%)`);

  // The full event paths. hashAndSignEvent = content hash (canonical JSON of the whole event + SHA-256)
  // + redaction + canonical JSON of the redacted event + sign; verifyEventSignature = redaction +
  // canonical JSON + verify of the (small) redacted event.
  const [ourEventSign, rawSign2] = measurePair(() => hashAndSignEvent(event, rv, serverName, key), () => sign(null, bytes, key.privateKeyObject));
  line('hashAndSignEvent', ourEventSign, 'raw sign', rawSign2);
  const [ourEventVerify, rawVerify2] = measurePair(
    () => verifyEventSignature(event, rv, serverName, key.keyId, key.publicKey),
    () => verify(null, bytes, key.publicKeyObject, jsonSig),
  );
  line('verifyEventSignature', ourEventVerify, 'raw verify', rawVerify2);
  const ids = measure(() => computeEventId(event, rv));
  const contentHash = measure(() => computeContentHash(event, rv));
  console.log(`signing: computeEventId ${fmt(ids)}/s, computeContentHash ${fmt(contentHash)}/s`);
}

if (import.meta.main) await bench();
