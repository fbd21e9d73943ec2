import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer } from '../../testing.ts';
import { registerUser } from '../../testing-users.ts';
import { runMediaAdmin } from '../../../scripts/media-admin.ts';

test('media admin API: admins only; list, quarantine, unquarantine, delete, purge; and the media-admin command', async () => {
  const s = await startTestServer();
  try {
    const admin = await registerUser(s.baseUrl, 'root_admin');
    await s.hs.db.updateTable('users').set({ is_admin: true }).where('user_id', '=', admin.userId).execute();
    const alice = await registerUser(s.baseUrl, 'alice');
    const call = (method: string, path: string, token: string) => fetch(`${s.baseUrl}${path}`, { method, headers: { authorization: `Bearer ${token}` } });
    const ids: string[] = [];
    for (const text of ['one', 'two', 'three']) {
      const r = await fetch(`${s.baseUrl}/_matrix/media/v3/upload?filename=${text}.txt`, { method: 'POST', headers: { authorization: `Bearer ${alice.accessToken}`, 'content-type': 'text/plain' }, body: text });
      ids.push(((await r.json()) as { content_uri: string }).content_uri.split('/').pop()!);
    }
    const listPath = `/_synapse/admin/v1/users/${encodeURIComponent(alice.userId)}/media`;
    const denied = await call('GET', listPath, alice.accessToken);
    assert.equal(denied.status, 403);
    assert.equal(((await denied.json()) as { errcode: string }).errcode, 'M_FORBIDDEN');

    const page = await call('GET', `${listPath}?limit=2`, admin.accessToken);
    const pj = (await page.json()) as { media: { media_id: string; upload_name: string; media_length: number }[]; total: number; next_token?: number };
    assert.equal(pj.total, 3);
    assert.equal(pj.media.length, 2);
    assert.equal(pj.next_token, 2);

    const download = (id: string) => call('GET', `/_matrix/client/v1/media/download/localhost/${id}`, alice.accessToken);
    assert.equal((await call('POST', `/_synapse/admin/v1/media/quarantine/localhost/${ids[0]}`, admin.accessToken)).status, 200);
    const q = await download(ids[0]!);
    assert.equal(q.status, 404);
    await q.arrayBuffer();
    assert.equal((await call('POST', `/_synapse/admin/v1/media/unquarantine/localhost/${ids[0]}`, admin.accessToken)).status, 200);
    assert.equal(await (await download(ids[0]!)).text(), 'one');

    const del = await call('DELETE', `/_synapse/admin/v1/media/localhost/${ids[1]}`, admin.accessToken);
    assert.deepEqual(await del.json(), { deleted_media: [ids[1]], total: 1 });
    const gone = await download(ids[1]!);
    assert.equal(gone.status, 404);
    await gone.arrayBuffer();
    const missing = await call('DELETE', `/_synapse/admin/v1/media/localhost/${ids[1]}`, admin.accessToken);
    assert.equal(missing.status, 404);
    await missing.arrayBuffer();

    const purge = await call('POST', `/_synapse/admin/v1/purge_media_cache?before_ts=${Date.now()}`, admin.accessToken);
    assert.deepEqual(await purge.json(), { deleted: 0 });

    // The command line, on the same database and store.
    const out: string[] = [];
    const io = { out: (l: string) => out.push(l), err: (l: string) => out.push(`ERR ${l}`) };
    const run = (...argv: string[]) => runMediaAdmin(argv, io, { database: s.hs.database, config: s.config });
    assert.equal(await run('list-user', alice.userId), 0);
    assert.equal(out.filter((l) => l.startsWith('mxc://')).length, 2);
    assert.match(out.at(-1)!, /^2 of 2 shown$/);
    assert.equal(await run('quarantine', `mxc://localhost/${ids[2]}`), 0);
    const q2 = await download(ids[2]!);
    assert.equal(q2.status, 404);
    await q2.arrayBuffer();
    assert.equal(await run('delete', `mxc://localhost/${ids[2]}`), 0);
    assert.equal(await run('delete', 'mxc://localhost/../../etc'), 2);
    assert.equal(await run('purge-remote'), 2);
    assert.equal(await run('purge-remote', '--older-than', '0d'), 0);
    assert.match(out.at(-1)!, /^purged 0 remote media/);
  } finally {
    await s.stop();
  }
});
