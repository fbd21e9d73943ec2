// Shared helpers for the rooms HTTP tests: a client bound to one user, and a check that every stored
// event of a room is a valid federation event (hashes, signature, event id, v12 room id).
import assert from 'node:assert/strict';
import { decodeBase64 } from '../../../spec/base64.ts';
import { checkContentHash, computeEventId, roomIdFromCreateEventId, verifyEventSignature } from '../../../spec/hashes.ts';
import { getRoomVersion } from '../../../spec/room-versions.ts';
import { refIds } from '../../../spec/events.ts';
import type { TestServer } from '../../testing.ts';
import { registerUser, type RegisteredUser } from '../../testing-users.ts';

export interface Reply {
  status: number;
  body: any;
}

export class Client {
  readonly s: TestServer;
  readonly user: RegisteredUser;
  constructor(s: TestServer, user: RegisteredUser) {
    this.s = s;
    this.user = user;
  }
  get userId(): string {
    return this.user.userId;
  }
  async call(method: string, path: string, body?: unknown, raw?: string): Promise<Reply> {
    const r = await fetch(`${this.s.baseUrl}/_matrix/client/v3${path}`, {
      method,
      headers: { authorization: `Bearer ${this.user.accessToken}`, 'content-type': 'application/json' },
      ...(raw !== undefined ? { body: raw } : body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : undefined };
  }
  async ok(method: string, path: string, body?: unknown): Promise<any> {
    const r = await this.call(method, path, body);
    assert.equal(r.status, 200, `${method} ${path} → ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }
  async createRoom(body: Record<string, unknown> = {}): Promise<string> {
    return (await this.ok('POST', '/createRoom', body)).room_id;
  }
  async send(roomId: string, content: Record<string, unknown> = { msgtype: 'm.text', body: 'hi' }, txn = `t${Math.random()}`): Promise<string> {
    return (await this.ok('PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn}`, content)).event_id;
  }
  async state(roomId: string, type: string, sk = ''): Promise<Reply> {
    return this.call('GET', `/rooms/${enc(roomId)}/state/${type}/${enc(sk)}`);
  }
}

export const enc = encodeURIComponent;

export async function newClient(s: TestServer, localpart: string): Promise<Client> {
  return new Client(s, await registerUser(s.baseUrl, localpart));
}

/** Every stored event of the room: content hash, the server's signature, event id, room id and edges. */
export async function verifyStoredEvents(s: TestServer, roomId: string): Promise<number> {
  const hs = s.hs;
  const room = await hs.db.selectFrom('rooms').selectAll().where('room_id', '=', roomId).executeTakeFirstOrThrow();
  const rv = getRoomVersion(room.room_version)!;
  const rows = await hs.db.selectFrom('events').selectAll().where('room_id', '=', roomId).orderBy('stream_ordering').execute();
  const key = hs.keys.current;
  for (const row of rows) {
    const pdu = JSON.parse(row.json);
    assert.ok(checkContentHash(pdu, rv), `content hash of ${row.event_id}`);
    assert.ok(verifyEventSignature(pdu, rv, hs.serverName, key.keyId, key.publicKey), `signature of ${row.event_id}`);
    assert.equal(computeEventId(pdu, rv), row.event_id, 'event id recomputes');
    if (pdu.type === 'm.room.create') {
      if (rv.roomIdFromCreateEvent) {
        assert.equal(pdu.room_id, undefined);
        assert.equal(roomIdFromCreateEventId(row.event_id), roomId);
      } else assert.equal(pdu.room_id, roomId);
    } else assert.equal(pdu.room_id, roomId);
    const prevs = await hs.db.selectFrom('event_edges').select('prev_event_id').where('event_id', '=', row.event_id).execute();
    assert.deepEqual(prevs.map((p) => p.prev_event_id).sort(), refIds(pdu.prev_events).sort());
    const auths = await hs.db.selectFrom('event_auth').select('auth_id').where('event_id', '=', row.event_id).execute();
    assert.deepEqual(auths.map((p) => p.auth_id).sort(), refIds(pdu.auth_events).sort());
    assert.ok(decodeBase64(pdu.hashes.sha256).length === 32);
  }
  return rows.length;
}
