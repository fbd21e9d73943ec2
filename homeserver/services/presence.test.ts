// Presence timeouts (modules/presence.md, "Last active ago" and the idle/offline transitions) and the
// config switch that turns presence off. The server runs on a clock the test moves, and the test runs
// the sweeper itself, so nothing here waits on real time passing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../testing.ts';
import { TestUser, type Json } from '../sync/test-client.ts';

const enc = encodeURIComponent;
const IDLE_MS = 60_000;
const OFFLINE_MS = 120_000;

function presenceOf(s: Json, who: string): Json | undefined {
  return (s.presence?.events ?? []).find((e: Json) => e.sender === who)?.content;
}

/** Long-polls as `u` (without touching its own presence) until `who`'s presence satisfies `pred`. */
async function watch(u: TestUser, since: string, who: string, pred: (p: Json) => boolean): Promise<{ content: Json; next: string }> {
  let token = since;
  for (let i = 0; i < 30; i++) {
    const s = await u.sync({ since: token, timeout: 2000, set_presence: 'offline' });
    token = s.next_batch;
    const p = presenceOf(s, who);
    if (p && pred(p)) return { content: p, next: token };
  }
  throw new Error(`presence of ${who} never matched; last seen ${JSON.stringify(presenceOf(await u.sync({ set_presence: 'offline' }), who))}`);
}

async function waitFor(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 400 && !cond(); i++) await new Promise((r) => setTimeout(r, 25));
  assert.ok(cond(), `timed out waiting for ${what}`);
}

test('idle → unavailable, activity → online, no sync connection → offline; a held long-poll keeps the user on', async () => {
  let clock = Date.now();
  const s: TestServer = await startTestServer({
    now: () => clock,
    config: { presence: { enabled: true, idle_timeout_ms: IDLE_MS, offline_timeout_ms: OFFLINE_MS } },
  });
  try {
    const presence = s.hs.services.presence;
    const alice = await TestUser.register(s.baseUrl, 'alice');
    const bob = await TestUser.register(s.baseUrl, 'bob');
    const roomId = await alice.createRoom({ preset: 'public_chat' });
    await bob.join(roomId);
    // Alice's sync (set_presence defaults to online) and the events she sent made her online.
    await alice.sync({ timeout: 0 });
    const b0 = await bob.sync({ set_presence: 'offline' });
    assert.equal(presenceOf(b0, alice.id)?.presence, 'online');
    assert.equal(presenceOf(b0, alice.id)?.currently_active, true);
    let b = b0.next_batch as string;
    let seen: { content: Json; next: string };

    // No activity for the idle timeout: unavailable, no longer currently active.
    clock += IDLE_MS + 1_000;
    await presence.sweep();
    seen = await watch(bob, b, alice.id, (p) => p.presence === 'unavailable');
    assert.equal(seen.content.currently_active, false);
    assert.ok(seen.content.last_active_ago >= IDLE_MS, `last_active_ago ${seen.content.last_active_ago}`);
    assert.equal((await bob.ok('GET', `/presence/${enc(alice.id)}/status`)).presence, 'unavailable');
    b = seen.next;

    // Sending an event is activity: back online.
    await alice.send(roomId, 'back');
    seen = await watch(bob, b, alice.id, (p) => p.presence === 'online');
    assert.ok(seen.content.last_active_ago < 1_000);
    b = seen.next;

    // Idle again, then a long-poll held past the offline timeout keeps her from going offline.
    clock += IDLE_MS + 1_000;
    await presence.sweep();
    b = (await watch(bob, b, alice.id, (p) => p.presence === 'unavailable')).next;
    const a0 = (await alice.sync({ set_presence: 'unavailable', timeout: 0 })).next_batch as string;
    const held = alice.sync({ since: a0, timeout: 1_500, set_presence: 'unavailable' });
    await waitFor('alice\u2019s long-poll to be held', () => s.hs.services.sync.notifier.waitingCount > 0);
    clock += OFFLINE_MS + 1_000;
    await presence.sweep();
    assert.equal((await bob.ok('GET', `/presence/${enc(alice.id)}/status`)).presence, 'unavailable');
    await held;

    // The connection has gone: after the offline timeout she is offline.
    clock += OFFLINE_MS + 1_000;
    await presence.sweep();
    seen = await watch(bob, b, alice.id, (p) => p.presence === 'offline');
    assert.equal(seen.content.currently_active, false);
    assert.equal((await bob.ok('GET', `/presence/${enc(alice.id)}/status`)).presence, 'offline');
  } finally {
    await s.stop();
  }
});

test('presence.enabled: false turns presence off: no presence in sync, status reads offline, setting it is a no-op', async () => {
  const s = await startTestServer({ config: { presence: { enabled: false, idle_timeout_ms: IDLE_MS, offline_timeout_ms: OFFLINE_MS } } });
  try {
    const alice = await TestUser.register(s.baseUrl, 'alice');
    const bob = await TestUser.register(s.baseUrl, 'bob');
    const roomId = await alice.createRoom({ preset: 'public_chat' });
    await bob.join(roomId);
    const b0 = await bob.sync();
    await alice.sync({ timeout: 0 });
    assert.deepEqual(await alice.ok('PUT', `/presence/${enc(alice.id)}/status`, { presence: 'online', status_msg: 'hello' }), {});
    await alice.send(roomId, 'marker');
    // Bob's sync moves past the marker and carries no presence at all.
    let token = b0.next_batch as string;
    let sawMarker = false;
    for (let i = 0; i < 20 && !sawMarker; i++) {
      const r = await bob.sync({ since: token, timeout: 2000 });
      assert.deepEqual(r.presence?.events ?? [], []);
      sawMarker = (r.rooms?.join?.[roomId]?.timeline?.events ?? []).some((e: Json) => e.content?.body === 'marker');
      token = r.next_batch;
    }
    assert.ok(sawMarker);
    assert.deepEqual(b0.presence?.events ?? [], []);
    assert.deepEqual((await alice.sync()).presence?.events ?? [], []);
    assert.deepEqual(await bob.ok('GET', `/presence/${enc(alice.id)}/status`), { presence: 'offline' });
    const rows = await s.hs.db.selectFrom('presence').selectAll().execute();
    assert.equal(rows.length, 0);
  } finally {
    await s.stop();
  }
});
