import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SpecValidator, defaultSpecDir } from './openapi.ts';

function errorsOf(r: ReturnType<SpecValidator['checkResponse']>): string[] {
  assert.ok(r !== null && r !== 'unknown', `expected a violation, got ${JSON.stringify(r)}`);
  return r.errors;
}

describe('SpecValidator on the real client-server spec', () => {
  let v: SpecValidator;
  before(async () => {
    v = await SpecValidator.load();
  });

  test('a correct /versions body passes', () => {
    assert.equal(v.checkResponse('GET', '/_matrix/client/versions', 200, { versions: ['v1.1', 'v1.11'], unstable_features: { 'org.example.x': true } }), null);
  });

  test('versions as a string instead of an array fails, naming the field', () => {
    const errors = errorsOf(v.checkResponse('GET', '/_matrix/client/versions', 200, { versions: 'v1.1' }));
    assert.equal(errors.length, 1);
    assert.match(errors[0]!, /^\$\.versions: must be array/);
  });

  test('whoami without user_id fails; a malformed user_id fails too', () => {
    const errors = errorsOf(v.checkResponse('GET', '/_matrix/client/v3/account/whoami', 200, { device_id: 'ABC' }));
    assert.ok(errors.some((e) => /^\$\.user_id: required property is missing/.test(e)), errors.join('\n'));
    assert.equal(v.checkResponse('GET', '/_matrix/client/v3/account/whoami', 200, { user_id: '@joe:example.org', device_id: 'ABC' }), null);
    const bad = errorsOf(v.checkResponse('GET', '/_matrix/client/v3/account/whoami', 200, { user_id: 'joe' }));
    assert.ok(bad.every((e) => e.startsWith('$.user_id: ')), bad.join('\n'));
    assert.ok(bad.some((e) => /mx-user-id/.test(e)), bad.join('\n'));
  });

  test('a concrete room id in the path matches the right template', () => {
    for (const roomId of ['!a:b', encodeURIComponent('!a:b')]) {
      const op = v.findOperation('PUT', `/_matrix/client/v3/rooms/${roomId}/send/m.room.message/t1`);
      assert.ok(op);
      assert.equal(op.template, '/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}');
      assert.equal(op.operationId, 'sendMessage');
      assert.deepEqual(op.params, { roomId: '!a:b', eventType: 'm.room.message', txnId: 't1' });
    }
    const path = '/_matrix/client/v3/rooms/!a:b/send/m.room.message/t1';
    assert.equal(v.checkResponse('PUT', path, 200, { event_id: '$abc' }), null);
    assert.match(errorsOf(v.checkResponse('PUT', path, 200, {}))[0]!, /^\$\.event_id: required/);
    // Literal segments win over parameters; an empty state key is an empty last segment.
    assert.equal(v.findOperation('GET', '/_matrix/client/v3/rooms/!a:b/state')?.template, '/_matrix/client/v3/rooms/{roomId}/state');
    const state = v.findOperation('PUT', '/_matrix/client/v3/rooms/!a:b/state/m.room.name/');
    assert.equal(state?.template, '/_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}');
    assert.equal(state?.params.stateKey, '');
    // ... or left out altogether, as servers also accept.
    const noKey = v.findOperation('GET', '/_matrix/client/v3/rooms/!a:b/state/m.room.name');
    assert.equal(noKey?.template, '/_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}');
    assert.equal(noKey?.params.stateKey, undefined);
    // Other base paths: /_matrix/client/v1 and /_matrix (media), and query strings are ignored.
    assert.equal(v.findOperation('GET', '/_matrix/client/v1/media/config')?.template, '/_matrix/client/v1/media/config');
    assert.equal(v.findOperation('GET', '/_matrix/media/v3/config')?.template, '/_matrix/media/v3/config');
    assert.equal(v.findOperation('GET', '/_matrix/client/v3/sync?since=s1&timeout=0')?.operationId, 'sync');
    assert.equal(v.findOperation('GET', 'http://127.0.0.1:8008/_matrix/client/versions')?.operationId, 'getVersions');
  });

  test('an error body validates against the error schema of a 401', () => {
    const path = '/_matrix/client/v3/account/whoami';
    assert.equal(v.checkResponse('GET', path, 401, { errcode: 'M_UNKNOWN_TOKEN', error: 'Unrecognised access token.' }), null);
    assert.match(errorsOf(v.checkResponse('GET', path, 401, { error: 'no errcode' }))[0]!, /^\$\.errcode: required/);
    assert.match(errorsOf(v.checkResponse('GET', path, 401, { errcode: 42 }))[0]!, /^\$\.errcode: must be string/);
  });

  test('an undocumented error status falls back to the standard error schema', () => {
    assert.equal(v.checkResponse('GET', '/_matrix/client/versions', 404, { errcode: 'M_NOT_FOUND', error: 'x' }), null);
    assert.match(errorsOf(v.checkResponse('GET', '/_matrix/client/versions', 500, { message: 'oops' }))[0]!, /^\$\.errcode: required/);
  });

  test('an undocumented success status is a violation', () => {
    assert.match(errorsOf(v.checkResponse('GET', '/_matrix/client/versions', 201, { versions: [] }))[0]!, /status 201 is not a documented response/);
  });

  test('additional properties are allowed where the schema allows them, and nested fields are named', () => {
    assert.equal(v.checkResponse('GET', '/_matrix/client/v3/account/whoami', 200, { user_id: '@a:b', extra: 1 }), null);
    const errors = errorsOf(v.checkResponse('GET', '/_matrix/client/v3/joined_rooms', 200, { joined_rooms: ['!ok:b', 7] }));
    assert.ok(errors.some((e) => e.startsWith('$.joined_rooms[1]: must be string')), errors.join('\n'));
  });

  test('unknown for a made-up path or a method the path does not have', () => {
    assert.equal(v.checkResponse('GET', '/_matrix/client/v3/no/such/endpoint', 200, {}), 'unknown');
    assert.equal(v.checkResponse('DELETE', '/_matrix/client/versions', 200, {}), 'unknown');
    assert.equal(v.findOperation('GET', '/_matrix/client/v3/no/such/endpoint'), null);
  });

  test('request bodies are checked too', () => {
    assert.equal(v.checkRequest('POST', '/_matrix/client/v3/createRoom', { name: 'x', preset: 'private_chat' }), null);
    const r = v.checkRequest('POST', '/_matrix/client/v3/createRoom', { preset: 'nonsense' });
    assert.ok(r && r !== 'unknown');
    assert.ok(r.errors.some((e) => e.startsWith('$.preset: must be one of')), r.errors.join('\n'));
  });

  test('every YAML file loads, every $ref resolves and every schema compiles', () => {
    const dir = join(defaultSpecDir(), 'data', 'api', 'client-server');
    const yamlFiles = readdirSync(dir).filter((f) => f.endsWith('.yaml'));
    assert.deepEqual([...v.apiFiles].sort(), yamlFiles.sort());
    const reports = v.verifyAllRefs();
    assert.equal(reports.length, yamlFiles.length);
    let refs = 0;
    for (const r of reports) {
      assert.deepEqual(r.unresolved, [], `${r.file}: unresolved references`);
      assert.ok(r.operations > 0, `${r.file} has no operations`);
      refs += r.refs;
    }
    assert.ok(refs > 100, `only ${refs} $refs followed`);
    assert.ok(v.operationCount > 100);
  });
});

describe('SpecValidator on a made-up spec', () => {
  let dir: string;
  let v: SpecValidator;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'axon-spec-'));
    const api = join(dir, 'data', 'api', 'client-server');
    mkdirSync(join(api, 'definitions'), { recursive: true });
    mkdirSync(join(dir, 'data', 'schemas'), { recursive: true });
    writeFileSync(join(dir, 'data', 'schemas', 'node.yaml'), [
      '$schema: https://json-schema.org/draft/2020-12/schema',
      'type: object',
      'properties:',
      '  name: { type: string, format: x-unheard-of }',
      '  children: { type: array, items: { $ref: node.yaml } }',
      'required: [name]',
    ].join('\n'));
    writeFileSync(join(api, 'definitions', 'shared.yaml'), [
      'components:',
      '  closed: { type: object, additionalProperties: false, properties: { a: { type: integer } } }',
    ].join('\n'));
    writeFileSync(join(api, 'made_up.yaml'), [
      'openapi: 3.1.0',
      'info: { title: t, version: 1.0.0 }',
      'paths:',
      '  /tree:',
      '    get:',
      '      responses:',
      '        "200":',
      '          content: { application/json: { schema: { $ref: ../../schemas/node.yaml } } }',
      '        "429": { $ref: "#/components/responses/limited" }',
      '  "/tree ":',
      '    post:',
      '      responses:',
      '        "200":',
      '          content:',
      '            application/json:',
      '              schema:',
      '                $ref: definitions/shared.yaml#/components/closed',
      '                required: [a]',
      '                example: { a: 1 }',
      '  /things/{id}:',
      '    get: { operationId: byId, responses: { "200": { content: { application/json: { schema: { type: object } } } } } }',
      '  /things/special:',
      '    get: { operationId: special, responses: { "200": { content: { application/json: { schema: { type: object } } } } } }',
      '  /nullable:',
      '    get:',
      '      responses:',
      '        "2XX":',
      '          content: { application/json: { schema: { type: object, properties: { n: { type: string, nullable: true } } } } }',
      'servers:',
      '  - url: "{protocol}://{hostname}{basePath}"',
      '    variables: { protocol: { default: https }, hostname: { default: localhost }, basePath: { default: /_test/v9 } }',
      'components:',
      '  responses:',
      '    limited:',
      '      content: { application/json: { schema: { type: object, required: [retry_after_ms] } } }',
    ].join('\n'));
    v = await SpecValidator.load(dir);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('recursive references are validated at every depth', () => {
    const ok = { name: 'a', children: [{ name: 'b', children: [{ name: 'c' }] }] };
    assert.equal(v.checkResponse('GET', '/_test/v9/tree', 200, ok), null);
    const bad = { name: 'a', children: [{ name: 'b', children: [{ children: [] }] }] };
    assert.match(errorsOf(v.checkResponse('GET', '/_test/v9/tree', 200, bad))[0]!, /^\$\.children\[0\]\.children\[0\]\.name: required/);
  });

  test('unknown formats are accepted; pointer refs into other files, $ref siblings and additionalProperties: false apply', () => {
    assert.equal(v.checkResponse('GET', '/_test/v9/tree', 200, { name: 'anything' }), null);
    assert.equal(v.checkResponse('POST', '/_test/v9/tree', 200, { a: 1 }), null);
    assert.match(errorsOf(v.checkResponse('POST', '/_test/v9/tree', 200, {}))[0]!, /^\$\.a: required/);
    assert.match(errorsOf(v.checkResponse('POST', '/_test/v9/tree', 200, { a: 1, b: 2 }))[0]!, /^\$\.b: property is not allowed/);
  });

  test('a literal segment wins over a parameter, whichever the spec lists first', () => {
    assert.equal(v.findOperation('GET', '/_test/v9/things/special')?.operationId, 'special');
    assert.equal(v.findOperation('GET', '/_test/v9/things/other')?.operationId, 'byId');
  });

  test('response $refs, status ranges and nullable', () => {
    assert.equal(v.checkResponse('GET', '/_test/v9/tree', 429, { retry_after_ms: 5 }), null);
    assert.match(errorsOf(v.checkResponse('GET', '/_test/v9/tree', 429, {}))[0]!, /^\$\.retry_after_ms: required/);
    assert.equal(v.checkResponse('GET', '/_test/v9/nullable', 200, { n: null }), null);
    assert.equal(v.checkResponse('GET', '/_test/v9/nullable', 202, { n: 's' }), null);
    assert.match(errorsOf(v.checkResponse('GET', '/_test/v9/nullable', 200, { n: 1 }))[0]!, /^\$\.n: must be string,null/);
  });

  test('an unresolvable reference is reported', () => {
    writeFileSync(join(dir, 'data', 'api', 'client-server', 'definitions', 'shared.yaml'), 'components: {}\n');
    return SpecValidator.load(dir).then((f) => {
      const report = f.verifyAllRefs().find((r) => r.file === 'made_up.yaml');
      assert.ok(report);
      assert.ok(report.unresolved.some((u) => /definitions\/shared\.yaml#\/components\/closed/.test(u)), report.unresolved.join('\n'));
    });
  });
});
