// History, discovery and search (issue 6), each figure printed beside its target:
//  (a) GET /rooms/{id}/messages, a page of 50 from random places, in a room of 100,000 events
//      (target p99 < 30 ms);
//  (b) POST /user_directory/search with 100,000 users in the directory (target p50 < 20 ms);
//  (c) POST /search (room_events, rank order) over 1,000,000 messages (target p50 < 100 ms).
// All requests go over HTTP to a real server. The data is seeded with set-based SQL straight into the
// tables (events, event_search, user_directory, room_memberships) rather than through the API, so
// seeding takes a minute or two; the rows are shaped as the server writes them (one shared state group
// per room, as for a run of messages). PGlite in memory unless AXON_BENCH_DATABASE_URL is set.
// Sizes can be lowered with AXON_BENCH_HISTORY_ROOM_EVENTS / _USERS / _MESSAGES.
import { performance } from 'node:perf_hooks';
import { sql } from 'kysely';
import type { Requester } from '../../homeserver/http/api.ts';
import type { TestServer } from '../../homeserver/testing.ts';

const num = (name: string, def: number) => Number(process.env[name] ?? def);
const ROOM_EVENTS = num('AXON_BENCH_HISTORY_ROOM_EVENTS', 100_000);
const USERS = num('AXON_BENCH_HISTORY_USERS', 100_000);
const MESSAGES = num('AXON_BENCH_HISTORY_MESSAGES', 1_000_000);
const PER_ROOM = ROOM_EVENTS; // the search corpus is MESSAGES / PER_ROOM rooms like the /messages one
const VOCAB = 5_000;

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
const ms = (n: number) => `${n.toFixed(1)} ms`;

async function time(runs: number, fn: (i: number) => Promise<void>): Promise<number[]> {
  for (let i = 0; i < Math.min(20, runs); i++) await fn(i); // warm-up
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn(i);
    out.push(performance.now() - t);
  }
  return out.sort((a, b) => a - b);
}

/** Deterministic pseudo-random integers (no Math.random, so runs compare). */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

/**
 * Appends `count` m.room.message events to a room after its current last event, all sharing the room's
 * current state group, with bodies of three words from a vocabulary of VOCAB ("topicN") plus filler.
 */
export async function seedMessages(s: TestServer, roomId: string, roomIndex: number, sender: string, count: number, withSearch: boolean): Promise<void> {
  const db = s.hs.db;
  const last = await db
    .selectFrom('events')
    .select(['depth', 'state_group', 'origin_server_ts'])
    .where('room_id', '=', roomId)
    .orderBy('depth', 'desc')
    .orderBy('stream_ordering', 'desc')
    .limit(1)
    .executeTakeFirstOrThrow();
  const depth0 = Number(last.depth);
  const ts0 = Number(last.origin_server_ts);
  const group = last.state_group!;
  const CHUNK = 50_000;
  for (let off = 0; off < count; off += CHUNK) {
    const n = Math.min(CHUNK, count - off);
    // The body: "message <g> about topicA, topicB and topicC" with A, B, C spread over the vocabulary.
    await sql`
      insert into events (event_id, room_id, type, state_key, sender, depth, origin_server_ts, stream_ordering, json,
                          state_group_before, state_group)
      select '$bench_' || ${roomIndex}::text || '_' || lpad(g::text, 8, '0'), ${roomId}::text, 'm.room.message', null, ${sender}::text, ${depth0}::bigint + g, ${ts0}::bigint + g,
             nextval('events_stream_seq'),
             json_build_object(
               'auth_events', json_build_array(), 'prev_events', json_build_array(),
               'content', json_build_object('msgtype', 'm.text', 'body',
                 'message ' || g || ' about topic' || ((g * 7919) % ${VOCAB}::bigint) || ', topic' || ((g * 104729 + 17) % ${VOCAB}::bigint)
                 || ' and topic' || ((g * 15485863 + 101) % ${VOCAB}::bigint)),
               'depth', ${depth0}::bigint + g, 'hashes', json_build_object('sha256', 'bench'), 'origin_server_ts', ${ts0}::bigint + g,
               'room_id', ${roomId}::text, 'sender', ${sender}::text, 'signatures', json_build_object(), 'type', 'm.room.message')::text,
             ${group}::text, ${group}::text
      from generate_series(${off + 1}::bigint, ${off + n}::bigint) g`.execute(db);
  }
  if (withSearch) {
    // What the events trigger (0006_history.ts) writes: the configured language's stems and the plain words.
    const lang = s.hs.services.search.language;
    await sql`
      insert into event_search (event_id, room_id, sender, key, type, stream_ordering, origin_server_ts, contains_url, vector)
      select event_id, room_id, sender, 'content.body', type, stream_ordering, origin_server_ts, false,
             to_tsvector(${lang}::regconfig, b) || to_tsvector('simple'::regconfig, b)
      from (select e.*, (e.json::jsonb -> 'content' ->> 'body') as b from events e
            where e.room_id = ${roomId}::text and e.event_id like '$bench_%') x`.execute(db);
  }
  // The rooms service keeps the newest event as the room's head; the bench rows come after it but are not
  // referenced by later events (nothing is sent afterwards).
}

export default async function bench(): Promise<void> {
  const pgUrl = process.env.AXON_BENCH_DATABASE_URL;
  if (pgUrl) process.env.AXON_TEST_DATABASE_URL = pgUrl;
  else delete process.env.AXON_TEST_DATABASE_URL;
  delete process.env.AXON_TEST_REDIS_URL;
  const { startTestServer } = await import('../../homeserver/testing.ts');
  const { registerUser } = await import('../../homeserver/testing-users.ts');
  console.log(`database: ${pgUrl ? 'PostgreSQL' : 'PGlite (in memory)'}`);
  const s = await startTestServer();
  try {
    const db = s.hs.db;
    const alice = await registerUser(s.baseUrl, 'alice');
    const req: Requester = { userId: alice.userId, deviceId: alice.deviceId, isGuest: false, sessionId: 'bench' };
    const http = async (method: string, path: string, body?: unknown): Promise<any> => {
      const call = () =>
        fetch(`${s.baseUrl}/_matrix/client/v3${path}`, {
          method,
          headers: { authorization: `Bearer ${alice.accessToken}`, 'content-type': 'application/json' },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        });
      // A kept-alive connection idle through the long seeding may be reset by the server as it is reused.
      const r = await call().catch(call).catch((err: Error) => {
        throw new Error(`${method} ${path}: ${err.message} (${String((err as { cause?: unknown }).cause)})`);
      });
      if (r.status !== 200) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
      return r.json();
    };

    // ---- seeding -------------------------------------------------------------------------------
    const seedStart = performance.now();
    const rooms = Math.max(1, Math.round(MESSAGES / PER_ROOM));
    const roomIds: string[] = [];
    for (let i = 0; i < rooms; i++) roomIds.push((await s.hs.services.rooms.createRoom(req, { preset: 'private_chat', name: `bench ${i}` })).roomId);
    // The event triggers would index row by row; the bench fills the indexes set-based instead.
    await sql`alter table events disable trigger events_index_insert`.execute(db);
    // A GIN index builds far faster in one go than row by row; it is the same index as 0006_history.ts.
    await sql`drop index event_search_vector`.execute(db);
    try {
      for (let i = 0; i < rooms; i++) {
        const t = performance.now();
        await seedMessages(s, roomIds[i]!, i, alice.userId, i === 0 ? ROOM_EVENTS : PER_ROOM, true);
        process.stdout.write(`  seeded room ${i + 1}/${rooms} (${PER_ROOM} messages) in ${((performance.now() - t) / 1000).toFixed(1)} s\n`);
      }
    } finally {
      await sql`alter table events enable trigger events_index_insert`.execute(db);
      const t = performance.now();
      await sql`create index event_search_vector on event_search using gin (vector)`.execute(db);
      process.stdout.write(`  search index built in ${((performance.now() - t) / 1000).toFixed(1)} s\n`);
    }

    // The user directory: USERS users joined to one public room, named from syllables so that names
    // repeat the way real ones do (about 1,600 first names × 1,600 family names).
    const { roomId: lobby } = await s.hs.services.rooms.createRoom(req, { preset: 'public_chat', name: 'lobby' });
    const syl = ['ka', 'ro', 'mi', 'lu', 'an', 'ne', 'so', 'fi', 'ta', 'be', 'el', 'da', 'jo', 'ri', 'va', 'no', 'se', 'li', 'ma', 'to', 'ha', 'pe', 'gu', 'wi', 'yo', 'ze', 'ch', 'qu', 'ol', 'ar', 'ix', 'um', 'ed', 'in', 'os', 'ul', 'ey', 'ay', 'ob', 'ic'];
    await sql`alter table room_memberships disable trigger room_memberships_directory`.execute(db);
    try {
      await sql`
        insert into user_directory (user_id, display_name, avatar_url, is_local, vector)
        select user_id, dn, null, true,
               -- userLexemes(): the display name's words, the localpart, the server name's words
               array_to_tsvector(array(select distinct w from unnest(regexp_split_to_array(lower(dn), '[^a-z0-9]+')
                 || array['user' || g] || regexp_split_to_array(lower(${s.serverName}), '[^a-z0-9]+')) w where w <> ''))
        from (
          select g, '@user' || g || ':' || ${s.serverName} as user_id,
                 initcap(s[1 + (g % 40)] || s[1 + ((g / 40) % 40)] || s[1 + ((g / 7) % 40)]) || ' ' ||
                 initcap(s[1 + ((g / 1600) % 40)] || s[1 + ((g * 31) % 40)] || 'son') as dn
          from generate_series(1, ${USERS}) g, (select ${syl}::text[] as s) v
        ) u`.execute(db);
      await sql`
        insert into room_memberships (user_id, room_id, membership, event_id, sender, stream_ordering)
        select '@user' || g || ':' || ${s.serverName}, ${lobby}, 'join', '$bench_member_' || g, '@user' || g || ':' || ${s.serverName}, 0
        from generate_series(1, ${USERS}) g`.execute(db);
    } finally {
      await sql`alter table room_memberships enable trigger room_memberships_directory`.execute(db);
    }
    await s.hs.services.roomDirectory.refreshStale();
    await s.hs.services.userDirectory.refreshStale();
    // As a database that has been running a while is (autovacuum on PostgreSQL): statistics, hint bits and
    // visibility maps set, so the first reads of freshly loaded rows do not pay for them.
    for (const t of ['events', 'event_search', 'user_directory', 'room_memberships']) await sql.raw(`vacuum analyze ${t}`).execute(db);
    console.log(`seeding: ${((performance.now() - seedStart) / 1000).toFixed(0)} s (${ROOM_EVENTS} events in the /messages room, ${rooms * PER_ROOM} messages searchable, ${USERS} users)`);

    // ---- (a) /messages --------------------------------------------------------------------------
    const room = roomIds[0]!;
    const first = await db.selectFrom('events').select(['depth']).where('room_id', '=', room).orderBy('depth', 'asc').limit(1).executeTakeFirstOrThrow();
    const lastEv = await db.selectFrom('events').select(['depth', 'stream_ordering']).where('room_id', '=', room).orderBy('depth', 'desc').limit(1).executeTakeFirstOrThrow();
    const positions = await db.selectFrom('events').select(['depth', 'stream_ordering']).where('room_id', '=', room).where('event_id', 'like', '$bench_%').execute();
    const r = rng(42);
    const tokens = Array.from({ length: 200 }, () => {
      const p = positions[Math.floor(r() * positions.length)]!;
      return `t${p.depth}_${p.stream_ordering}`;
    });
    let chunkLen = 0;
    const pageTimes = await time(200, async (i) => {
      const res = await http('GET', `/rooms/${encodeURIComponent(room)}/messages?dir=${i % 2 ? 'f' : 'b'}&limit=50&from=${tokens[i]}`);
      chunkLen = res.chunk.length;
    });
    const latestTimes = await time(50, async () => {
      await http('GET', `/rooms/${encodeURIComponent(room)}/messages?dir=b&limit=50`);
    });
    console.log(`(a) /messages page of 50 (${chunkLen} returned), room of ${Number(lastEv.depth) - Number(first.depth) + 1} events, random places: p50 ${ms(pct(pageTimes, 50))}, p99 ${ms(pct(pageTimes, 99))} (target p99 < 30 ms); newest page: p50 ${ms(pct(latestTimes, 50))}, p99 ${ms(pct(latestTimes, 99))}`);

    // ---- (b) user directory ---------------------------------------------------------------------
    const terms = ['karomi', 'luan neso', 'Fita', 'bel da', 'user4242', 'joriva', 'Nose lima', 'tohape', 'zeol', 'chqu'];
    const counts: number[] = [];
    const dirTimes = await time(200, async (i) => {
      const res = await http('POST', '/user_directory/search', { search_term: terms[i % terms.length], limit: 10 });
      if (i < terms.length) counts[i] = res.results.length;
    });
    console.log(`(b) user directory search, ${USERS} users, terms like "karomi", "luan neso" (limit 10): p50 ${ms(pct(dirTimes, 50))}, p99 ${ms(pct(dirTimes, 99))} (target p50 < 20 ms)`);

    // ---- (c) full-text search -------------------------------------------------------------------
    const rs = rng(7);
    const words = Array.from({ length: 100 }, () => `topic${Math.floor(rs() * VOCAB)}`);
    let hits = 0;
    let count = 0;
    const searchTimes = await time(100, async (i) => {
      const res = await http('POST', '/search', { search_categories: { room_events: { search_term: words[i % words.length], order_by: i % 4 === 3 ? 'recent' : 'rank' } } });
      hits = res.search_categories.room_events.results.length;
      count = res.search_categories.room_events.count;
    });
    console.log(`(c) full-text search over ${rooms * PER_ROOM} messages in ${rooms} rooms, one word (~${count} matches, ${hits} returned): p50 ${ms(pct(searchTimes, 50))}, p99 ${ms(pct(searchTimes, 99))} (target p50 < 100 ms)`);
  } finally {
    await s.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await bench();
