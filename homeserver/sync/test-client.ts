// A small HTTP client for sync tests: a registered user and JSON calls with their token.
import { registerUser, type RegisteredUser } from '../testing-users.ts';

export interface Json {
  [k: string]: any;
}

export class TestUser {
  readonly baseUrl: string;
  readonly user: RegisteredUser;
  constructor(baseUrl: string, user: RegisteredUser) {
    this.baseUrl = baseUrl;
    this.user = user;
  }
  static async register(baseUrl: string, localpart: string): Promise<TestUser> {
    return new TestUser(baseUrl, await registerUser(baseUrl, localpart));
  }
  get id(): string {
    return this.user.userId;
  }
  async call(method: string, path: string, body?: unknown): Promise<{ status: number; json: Json }> {
    const res = await fetch(`${this.baseUrl}/_matrix/client/v3${path}`, {
      method,
      headers: { authorization: `Bearer ${this.user.accessToken}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, json: text ? (JSON.parse(text) as Json) : {} };
  }
  async ok(method: string, path: string, body?: unknown): Promise<Json> {
    const r = await this.call(method, path, body);
    if (r.status !== 200) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.json)}`);
    return r.json;
  }
  async sync(params: Record<string, string | number | boolean | object> = {}): Promise<Json> {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) q.set(k, typeof v === 'object' ? JSON.stringify(v) : String(v));
    return this.ok('GET', `/sync?${q}`);
  }
  async createRoom(body: Record<string, unknown> = {}): Promise<string> {
    return (await this.ok('POST', '/createRoom', body)).room_id as string;
  }
  private txn = 0;
  async send(roomId: string, body: string | Record<string, unknown>, type = 'm.room.message'): Promise<string> {
    const content = typeof body === 'string' ? { msgtype: 'm.text', body } : body;
    return (await this.ok('PUT', `/rooms/${encodeURIComponent(roomId)}/send/${type}/t${Date.now()}-${this.txn++}`, content)).event_id as string;
  }
  async join(roomId: string): Promise<void> {
    await this.ok('POST', `/join/${encodeURIComponent(roomId)}`, {});
  }
}
