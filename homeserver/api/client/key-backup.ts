// Server-side key backup endpoints (key_backup.yaml): /room_keys/version and /room_keys/keys for all
// rooms, one room and one session. Session data is ciphertext, stored and returned as given.
import type { Homeserver } from '../../homeserver.ts';
import { clientPaths, type Api, type ApiContext } from '../../http/api.ts';
import { readJsonObject } from '../../http/body.ts';
import { requireAuth } from '../../auth/access-tokens.ts';
import { badJson, notFound } from '../../errors.ts';
import { parseKeyBackupData, type KeyBackupData } from '../../services/key-backup.ts';

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function parseSessions(v: unknown, where: string): Map<string, KeyBackupData> {
  if (!isObject(v)) throw badJson(`${where} must be an object`);
  const out = new Map<string, KeyBackupData>();
  for (const [sessionId, data] of Object.entries(v)) out.set(sessionId, parseKeyBackupData(data, `${where}.${sessionId}`));
  return out;
}

function sessionsJson(m: Map<string, KeyBackupData> | undefined): Record<string, KeyBackupData> {
  return m ? Object.fromEntries(m) : {};
}

export function keyBackupRoutes(api: Api, hs: Homeserver): void {
  const backup = () => hs.services.e2ee.backup;
  const auth = requireAuth(hs.tokens);
  const me = (ctx: ApiContext) => ctx.state.requester!.userId;
  const version = (ctx: ApiContext) => (typeof ctx.query.version === 'string' ? ctx.query.version : undefined);

  api.post('client', clientPaths('/room_keys/version', ['v3', 'unstable']), auth, async (ctx: ApiContext) => {
    ctx.body = { version: await backup().createVersion(me(ctx), await readJsonObject(ctx)) };
  });

  api.get('client', clientPaths('/room_keys/version', ['v3', 'unstable']), auth, async (ctx: ApiContext) => {
    const info = await backup().getVersion(me(ctx));
    if (!info) throw notFound('No current backup version');
    ctx.body = info;
  });

  api.get('client', clientPaths('/room_keys/version/:version', ['v3', 'unstable']), auth, async (ctx: ApiContext) => {
    const info = await backup().getVersion(me(ctx), ctx.params.version!);
    if (!info) throw notFound('Unknown backup version');
    ctx.body = info;
  });

  api.put('client', clientPaths('/room_keys/version/:version', ['v3', 'unstable']), auth, async (ctx: ApiContext) => {
    await backup().updateVersion(me(ctx), ctx.params.version!, await readJsonObject(ctx));
    ctx.body = {};
  });

  api.delete('client', clientPaths('/room_keys/version/:version', ['v3', 'unstable']), auth, async (ctx: ApiContext) => {
    await backup().deleteVersion(me(ctx), ctx.params.version!);
    ctx.body = {};
  });

  // ---- keys ----

  api.put('client', clientPaths('/room_keys/keys', ['v3', 'unstable']), auth, async (ctx: ApiContext) => {
    const body = await readJsonObject(ctx);
    if (!isObject(body.rooms)) throw badJson('rooms must be an object');
    const rooms = new Map<string, Map<string, KeyBackupData>>();
    for (const [roomId, r] of Object.entries(body.rooms)) {
      if (!isObject(r)) throw badJson(`rooms.${roomId} must be an object`);
      rooms.set(roomId, parseSessions(r.sessions, `rooms.${roomId}.sessions`));
    }
    ctx.body = await backup().putKeys(me(ctx), version(ctx), rooms);
  });

  api.put('client', clientPaths('/room_keys/keys/:roomId', ['v3', 'unstable']), auth, async (ctx: ApiContext) => {
    const body = await readJsonObject(ctx);
    const rooms = new Map([[ctx.params.roomId!, parseSessions(body.sessions, 'sessions')]]);
    ctx.body = await backup().putKeys(me(ctx), version(ctx), rooms);
  });

  api.put('client', clientPaths('/room_keys/keys/:roomId/:sessionId', ['v3', 'unstable']), auth, async (ctx: ApiContext) => {
    const data = parseKeyBackupData(await readJsonObject(ctx), 'body');
    const rooms = new Map([[ctx.params.roomId!, new Map([[ctx.params.sessionId!, data]])]]);
    ctx.body = await backup().putKeys(me(ctx), version(ctx), rooms);
  });

  api.get('client', clientPaths('/room_keys/keys', ['v3', 'unstable']), auth, async (ctx: ApiContext) => {
    const all = await backup().getKeys(me(ctx), version(ctx));
    const rooms: Record<string, { sessions: Record<string, KeyBackupData> }> = {};
    for (const [roomId, sessions] of all) rooms[roomId] = { sessions: sessionsJson(sessions) };
    ctx.body = { rooms };
  });

  api.get('client', clientPaths('/room_keys/keys/:roomId', ['v3', 'unstable']), auth, async (ctx: ApiContext) => {
    const roomId = ctx.params.roomId!;
    const all = await backup().getKeys(me(ctx), version(ctx), roomId);
    ctx.body = { sessions: sessionsJson(all.get(roomId)) };
  });

  api.get('client', clientPaths('/room_keys/keys/:roomId/:sessionId', ['v3', 'unstable']), auth, async (ctx: ApiContext) => {
    const { roomId, sessionId } = ctx.params as { roomId: string; sessionId: string };
    const data = (await backup().getKeys(me(ctx), version(ctx), roomId, sessionId)).get(roomId)?.get(sessionId);
    if (!data) throw notFound('Key not found');
    ctx.body = data;
  });

  api.delete('client', clientPaths('/room_keys/keys', ['v3', 'unstable']), auth, async (ctx: ApiContext) => {
    ctx.body = await backup().deleteKeys(me(ctx), version(ctx));
  });

  api.delete('client', clientPaths('/room_keys/keys/:roomId', ['v3', 'unstable']), auth, async (ctx: ApiContext) => {
    ctx.body = await backup().deleteKeys(me(ctx), version(ctx), ctx.params.roomId!);
  });

  api.delete('client', clientPaths('/room_keys/keys/:roomId/:sessionId', ['v3', 'unstable']), auth, async (ctx: ApiContext) => {
    ctx.body = await backup().deleteKeys(me(ctx), version(ctx), ctx.params.roomId!, ctx.params.sessionId!);
  });
}
