import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { withHarness } from './harness.ts';

test('the harness checks raw and matrix-js-sdk traffic against a real server', async () => {
  let checked = 0;
  await withHarness(async (h) => {
    assert.match(h.baseUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
    const res = await h.fetch(`${h.baseUrl}/_matrix/client/versions`);
    assert.equal(res.status, 200);
    const client = h.newClient();
    const versions = await client.getVersions();
    assert.ok(Array.isArray(versions.versions) && versions.versions.length > 0);
    // No access token: a Matrix error (401, or 404 while the endpoint is missing), checked against the error schema.
    const who = await h.fetch(`${h.baseUrl}/_matrix/client/v3/account/whoami`);
    assert.ok(who.status === 401 || who.status === 404, `status ${who.status}`);
    assert.deepEqual(h.fetch.getUnknownOperations(), []);
    checked = h.fetch.checkedCount();
  });
  assert.equal(checked, 3);
});

test('the harness fails the test when a response does not conform', async () => {
  // A stand-in server answering /versions wrongly, reached through the harness's checking fetch.
  const bad = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"versions":"v1.1"}');
  });
  await new Promise<void>((r) => bad.listen(0, '127.0.0.1', r));
  const port = (bad.address() as AddressInfo).port;
  try {
    await assert.rejects(
      withHarness(async (h) => {
        await h.fetch(`http://127.0.0.1:${port}/_matrix/client/versions`);
      }),
      /GET \/_matrix\/client\/versions -> 200\n\s+\$\.versions: must be array/,
    );
  } finally {
    await new Promise<void>((r) => bad.close(() => r()));
  }
});
