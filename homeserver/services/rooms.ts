// The rooms service: creating rooms, sending events, membership, redaction, upgrades, aliases, and
// the reads other services build on (current state, state at an event, rooms of a user, the events
// stream). HTTP handlers in api/client/ parse and call; the event graph lives in room-writer.ts.
import type { IdentifiedPdu, JsonObject, JsonValue, Pdu, StateMap } from '../../spec/events.ts';
import { splitStateKey, stateKey } from '../../spec/events.ts';
import { isValidRoomAlias, isValidRoomId, isValidUserId, parseRoomAlias, parseUserId, roomIdServerName } from '../../spec/identifiers.ts';
import { getRoomCreators, getRequiredPowerLevel, getUserPowerLevel, getPowerLevelsContent, isPrivilegedCreator } from '../../spec/power-levels.ts';
import { DEFAULT_ROOM_VERSION, getRoomVersion, type RoomVersion } from '../../spec/room-versions.ts';
import { MatrixError, badJson, forbidden, invalidParam, notFound } from '../errors.ts';
import type { Homeserver } from '../homeserver.ts';
import type { Requester } from '../http/api.ts';
import { getEventsByIds, rowToStoredEvent, type StoredEvent } from '../storage/rooms-store.ts';
import { toClientEvent, type ClientEvent } from './client-events.ts';
import type { EventDraft } from './event-builder.ts';
import { LruMap, RoomWriter, type AppendedEvent, type RoomWriteContext } from './room-writer.ts';

declare module '../homeserver.ts' {
  interface Services {
    rooms: RoomService;
  }
}

export type Membership = 'join' | 'invite' | 'leave' | 'ban' | 'knock';
export type Preset = 'private_chat' | 'public_chat' | 'trusted_private_chat';

const PRESETS: Record<Preset, { join_rule: string; history_visibility: string; guest_access: string }> = {
  private_chat: { join_rule: 'invite', history_visibility: 'shared', guest_access: 'can_join' },
  trusted_private_chat: { join_rule: 'invite', history_visibility: 'shared', guest_access: 'can_join' },
  public_chat: { join_rule: 'public', history_visibility: 'shared', guest_access: 'forbidden' },
};

/** State copied into the replacement room on upgrade (modules/room_upgrades.md "Server behaviour" step 3). */
const UPGRADE_COPIED_STATE = [
  'm.room.server_acl',
  'm.room.encryption',
  'm.room.name',
  'm.room.avatar',
  'm.room.topic',
  'm.room.guest_access',
  'm.room.history_visibility',
  'm.room.join_rules',
];

function isObject(v: unknown): v is JsonObject {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function optString(body: Record<string, unknown>, key: string): string | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw badJson(`${key} must be a string`);
  return v;
}

/** Maps an authorisation failure while creating a room to M_INVALID_ROOM_STATE (create_room.yaml 400). */
function asInvalidRoomState(err: unknown): never {
  if (err instanceof MatrixError && err.errcode === 'M_FORBIDDEN') throw new MatrixError(400, 'M_INVALID_ROOM_STATE', err.message);
  throw err;
}

const TXN_CACHE_MAX_PER_DEVICE = 2_000;

export interface CreateRoomResult {
  roomId: string;
}

export class RoomService {
  private readonly hs: Homeserver;
  readonly writer: RoomWriter;
  private readonly pendingTxns = new Map<string, Promise<string>>();
  private readonly txnCache = new LruMap<string, Map<string, string>>(10_000);

  constructor(hs: Homeserver) {
    this.hs = hs;
    this.writer = new RoomWriter(hs);
  }

  async init(): Promise<void> {
    await this.writer.init();
    const accounts = this.hs.services.accounts;
    if (accounts) {
      accounts.profileListeners.push(async (change) => {
        if (change.field !== 'displayname' && change.field !== 'avatar_url') return;
        await this.propagateProfile(change.userId, change.profile);
      });
    }
  }

  // -------------------------------------------------------------------------------------------------
  // Reads

  /** The events stream position below which every write has committed (see storage/stream.ts). */
  currentStreamPosition(): Promise<number> {
    return this.writer.stream.currentPosition();
  }

  async getRoomVersion(roomId: string): Promise<RoomVersion | undefined> {
    return (await this.writer.head(roomId))?.rv;
  }

  /** Current state ids of a room (type, state_key → event id), or undefined for an unknown room. Do not mutate. */
  async getCurrentStateIds(roomId: string): Promise<StateMap<string> | undefined> {
    return (await this.writer.head(roomId))?.state;
  }

  async getCurrentStateEvent(roomId: string, type: string, sk: string): Promise<IdentifiedPdu | undefined> {
    const id = (await this.getCurrentStateIds(roomId))?.get(stateKey(type, sk));
    return id === undefined ? undefined : this.writer.getPdu(id);
  }

  /** State ids before or after an event (state at any event, from its state group). */
  async getStateIdsAtEvent(eventId: string, at: 'before' | 'after' = 'after'): Promise<StateMap<string> | undefined> {
    const [e] = await getEventsByIds(this.hs.db, [eventId]);
    const group = e ? (at === 'before' ? e.stateGroupBefore : e.stateGroup) : null;
    if (!group) return undefined;
    return (await this.writer.stateGroups.get(group)).state;
  }

  async getEvents(ids: string[]): Promise<StoredEvent[]> {
    return getEventsByIds(this.hs.db, ids);
  }

  async getEvent(id: string): Promise<StoredEvent | undefined> {
    return (await getEventsByIds(this.hs.db, [id]))[0];
  }

  /** The user's current membership row in a room. */
  async getMembership(roomId: string, userId: string): Promise<{ membership: Membership; eventId: string; streamOrdering: number; forgotten: boolean } | undefined> {
    const r = await this.hs.db
      .selectFrom('room_memberships')
      .select(['membership', 'event_id', 'stream_ordering', 'forgotten'])
      .where('room_id', '=', roomId)
      .where('user_id', '=', userId)
      .executeTakeFirst();
    return r ? { membership: r.membership as Membership, eventId: r.event_id, streamOrdering: Number(r.stream_ordering), forgotten: r.forgotten } : undefined;
  }

  /** Rooms in which the user's current membership is one of `memberships` (forgotten rooms excluded). */
  async getRoomsForUser(userId: string, memberships: Membership[] = ['join']): Promise<Array<{ roomId: string; membership: Membership; eventId: string; streamOrdering: number }>> {
    const rows = await this.hs.db
      .selectFrom('room_memberships')
      .select(['room_id', 'membership', 'event_id', 'stream_ordering'])
      .where('user_id', '=', userId)
      .where('membership', 'in', memberships)
      .where('forgotten', '=', false)
      .execute();
    return rows.map((r) => ({ roomId: r.room_id, membership: r.membership as Membership, eventId: r.event_id, streamOrdering: Number(r.stream_ordering) }));
  }

  async getJoinedRoomIds(userId: string): Promise<string[]> {
    return (await this.getRoomsForUser(userId, ['join'])).map((r) => r.roomId);
  }

  async getJoinedMembers(roomId: string): Promise<string[]> {
    const rows = await this.hs.db.selectFrom('room_memberships').select('user_id').where('room_id', '=', roomId).where('membership', '=', 'join').execute();
    return rows.map((r) => r.user_id);
  }

  /**
   * Accepted events of a room with stream positions in (from, to], oldest first; at most `limit` (the
   * newest ones), with `limited` telling whether older ones were left out.
   */
  async getRoomEventsSince(roomId: string, from: number, to: number, limit = 100): Promise<{ events: StoredEvent[]; limited: boolean }> {
    const rows = await this.hs.db
      .selectFrom('events')
      .select([
        'event_id', 'room_id', 'json', 'stream_ordering', 'depth', 'rejected_reason', 'soft_failed', 'outlier', 'redacted_by', 'state_group_before', 'state_group',
      ])
      .where('room_id', '=', roomId)
      .where('stream_ordering', '>', from)
      .where('stream_ordering', '<=', to)
      .where('rejected_reason', 'is', null)
      .where('soft_failed', '=', false)
      .where('outlier', '=', false)
      .orderBy('stream_ordering', 'desc')
      .limit(limit + 1)
      .execute();
    const limited = rows.length > limit;
    return { events: rows.slice(0, limit).reverse().map(rowToStoredEvent), limited };
  }

  /**
   * Client-format events: redacted ones redacted with unsigned.redacted_because, the requesting
   * device's transaction ids, and (for state events) replaces_state / prev_content.
   */
  async formatEvents(events: StoredEvent[], opts: { requester?: Requester; withoutRoomId?: boolean } = {}): Promise<ClientEvent[]> {
    if (events.length === 0) return [];
    const now = this.hs.now();
    const redactionIds = [...new Set(events.flatMap((e) => (e.redactedBy ? [e.redactedBy] : [])))];
    const redactions = new Map((await getEventsByIds(this.hs.db, redactionIds)).map((r) => [r.eventId, r]));
    const txnIds = new Map<string, string>();
    const req = opts.requester;
    if (req) {
      const mine = events.filter((e) => e.pdu.sender === req.userId).map((e) => e.eventId);
      if (mine.length > 0) {
        const rows = await this.hs.db
          .selectFrom('event_txn_ids')
          .select(['event_id', 'txn_id'])
          .where('event_id', 'in', mine)
          .where('user_id', '=', req.userId)
          .where('device_id', '=', req.deviceId ?? '')
          .execute();
        for (const r of rows) txnIds.set(r.event_id, r.txn_id);
      }
    }
    // replaces_state: the state before a state event at its key.
    const replaced = new Map<string, string>();
    for (const e of events) {
      if (typeof e.pdu.state_key !== 'string' || !e.stateGroupBefore || e.stateGroupBefore === e.stateGroup) continue;
      const before = (await this.writer.stateGroups.get(e.stateGroupBefore)).state.get(stateKey(e.pdu.type, e.pdu.state_key));
      if (before && before !== e.eventId) replaced.set(e.eventId, before);
    }
    const prevEvents = new Map((await getEventsByIds(this.hs.db, [...new Set(replaced.values())])).map((p) => [p.eventId, p]));
    const out: ClientEvent[] = [];
    for (const e of events) {
      const rv = (await this.getRoomVersion(e.roomId)) ?? getRoomVersion(DEFAULT_ROOM_VERSION)!;
      let redactedBecause: ClientEvent | undefined;
      const r = e.redactedBy ? redactions.get(e.redactedBy) : undefined;
      if (r) redactedBecause = toClientEvent(r.eventId, r.pdu, { rv, roomId: r.roomId, now, withoutRoomId: opts.withoutRoomId ?? false });
      const prevId = replaced.get(e.eventId);
      const prev = prevId ? prevEvents.get(prevId) : undefined;
      const txn = txnIds.get(e.eventId);
      out.push(
        toClientEvent(e.eventId, e.pdu, {
          rv,
          roomId: e.roomId,
          now,
          ...(redactedBecause ? { redactedBecause } : {}),
          ...(txn !== undefined ? { transactionId: txn } : {}),
          ...(prev ? { replaces: { eventId: prev.eventId, content: (prev.redactedBy ? {} : prev.pdu.content) as JsonObject } } : {}),
          ...(opts.withoutRoomId ? { withoutRoomId: true } : {}),
        }),
      );
    }
    return out;
  }

  /**
   * Whether a user may see a room's state and events: currently joined, or (having left, been kicked
   * or banned) the state when they left. History visibility is a later issue; this is membership only.
   * Returns the state to show, or null.
   */
  async visibleState(roomId: string, userId: string): Promise<{ state: StateMap<string>; current: boolean; upTo: number } | null> {
    const m = await this.getMembership(roomId, userId);
    if (!m) return null;
    if (m.membership === 'join') {
      const state = await this.getCurrentStateIds(roomId);
      return state ? { state, current: true, upTo: Infinity } : null;
    }
    if (m.membership === 'leave' || m.membership === 'ban') {
      // Only if they were in the room: their previous membership before this one was a join.
      const before = await this.getStateIdsAtEvent(m.eventId, 'before');
      const prevId = before?.get(stateKey('m.room.member', userId));
      const prev = prevId ? await this.writer.getPdu(prevId) : undefined;
      if (prev?.pdu.content['membership'] !== 'join') return null;
      const after = await this.getStateIdsAtEvent(m.eventId, 'after');
      return after ? { state: after, current: false, upTo: m.streamOrdering } : null;
    }
    return null;
  }

  // -------------------------------------------------------------------------------------------------
  // Aliases

  async resolveAlias(alias: string): Promise<{ roomId: string; servers: string[] } | undefined> {
    const r = await this.hs.db.selectFrom('room_aliases').select('room_id').where('alias', '=', alias).executeTakeFirst();
    if (!r) return undefined;
    return { roomId: r.room_id, servers: [this.hs.serverName] };
  }

  async createAlias(requester: Requester, alias: string, roomId: string): Promise<void> {
    const parsed = parseRoomAlias(alias);
    if (!parsed) throw invalidParam('Invalid room alias');
    if (parsed.serverName !== this.hs.serverName) throw invalidParam('Room alias must be on this server');
    if (!(await this.writer.head(roomId))) throw notFound('Unknown room');
    const res = await this.hs.db
      .insertInto('room_aliases')
      .values({ alias, room_id: roomId, creator: requester.userId, created_ts: this.hs.now() })
      .onConflict((oc) => oc.doNothing())
      .executeTakeFirst();
    if (Number(res.numInsertedOrUpdatedRows ?? 0) === 0) throw new MatrixError(409, 'M_UNKNOWN', 'Room alias already exists');
  }

  async deleteAlias(requester: Requester, alias: string): Promise<void> {
    const r = await this.hs.db.selectFrom('room_aliases').select(['room_id', 'creator']).where('alias', '=', alias).executeTakeFirst();
    if (!r) throw notFound('Room alias not found');
    if (r.creator !== requester.userId) {
      // Others need the power to change m.room.canonical_alias (client-server-api "Room aliases").
      const head = await this.writer.head(r.room_id);
      const state = head ? await this.authState(head.state) : new Map<string, IdentifiedPdu>();
      const rv = head?.rv;
      if (!rv || getUserPowerLevel(rv, state, requester.userId) < getRequiredPowerLevel(rv, state, 'm.room.canonical_alias', true)) {
        throw forbidden('You may not delete this alias');
      }
    }
    await this.hs.db.deleteFrom('room_aliases').where('alias', '=', alias).execute();
  }

  async getLocalAliases(roomId: string): Promise<string[]> {
    const rows = await this.hs.db.selectFrom('room_aliases').select('alias').where('room_id', '=', roomId).orderBy('alias').execute();
    return rows.map((r) => r.alias);
  }

  /** Room id from a room id or alias; M_NOT_FOUND for unknown aliases. */
  async resolveRoomIdOrAlias(idOrAlias: string): Promise<string> {
    if (idOrAlias.startsWith('#')) {
      if (!isValidRoomAlias(idOrAlias)) throw invalidParam('Invalid room alias');
      const r = await this.resolveAlias(idOrAlias);
      if (!r) {
        if (parseRoomAlias(idOrAlias)!.serverName !== this.hs.serverName) {
          throw notFound('Resolving aliases on other servers needs federation, which is not available yet');
        }
        throw notFound('Room alias not found');
      }
      return r.roomId;
    }
    if (!idOrAlias.startsWith('!') || !isValidRoomId(idOrAlias)) throw invalidParam('Invalid room id or alias');
    return idOrAlias;
  }

  async setPublished(roomId: string, published: boolean): Promise<void> {
    await this.hs.db.updateTable('rooms').set({ is_public: published }).where('room_id', '=', roomId).execute();
  }

  async isPublished(roomId: string): Promise<boolean> {
    const r = await this.hs.db.selectFrom('rooms').select('is_public').where('room_id', '=', roomId).executeTakeFirst();
    return r?.is_public ?? false;
  }

  // -------------------------------------------------------------------------------------------------
  // Helpers

  private async authState(state: StateMap<string>, keys?: string[]): Promise<StateMap<IdentifiedPdu>> {
    const wanted = keys ?? [...state.keys()].filter((k) => !k.startsWith('m.room.member\u0000'));
    const ids = wanted.map((k) => state.get(k)).filter((x): x is string => x !== undefined);
    const pdus = await this.writer.getPdus(ids);
    const out: StateMap<IdentifiedPdu> = new Map();
    for (const k of wanted) {
      const id = state.get(k);
      const e = id ? pdus.get(id) : undefined;
      if (e) out.set(k, e);
    }
    return out;
  }

  /** The power-relevant state of a room for `users` (create, power levels, join rules, their members). */
  private async powerState(ctx: RoomWriteContext, users: string[]): Promise<StateMap<IdentifiedPdu>> {
    const keys = [stateKey('m.room.create', ''), stateKey('m.room.power_levels', ''), stateKey('m.room.join_rules', ''), ...users.map((u) => stateKey('m.room.member', u))];
    return this.authState(ctx.stateIds(), keys);
  }

  private async membershipIn(ctx: RoomWriteContext, userId: string): Promise<string | undefined> {
    const m = (await ctx.stateEvent('m.room.member', userId))?.pdu.content['membership'];
    return typeof m === 'string' ? m : undefined;
  }

  private async profileOf(userId: string): Promise<{ displayname?: string; avatar_url?: string }> {
    const accounts = this.hs.services.accounts;
    if (!accounts || parseUserId(userId)?.serverName !== this.hs.serverName) return {};
    return (await accounts.profiles.getBasicProfiles([userId])).get(userId) ?? {};
  }

  private async memberContent(userId: string, membership: Membership, extra: JsonObject = {}, withProfile = true): Promise<JsonObject> {
    const content: JsonObject = { membership };
    if (withProfile) {
      const p = await this.profileOf(userId);
      if (p.displayname !== undefined) content['displayname'] = p.displayname;
      if (p.avatar_url !== undefined) content['avatar_url'] = p.avatar_url;
    }
    return { ...content, ...extra };
  }

  private async finish(appended: AppendedEvent): Promise<string> {
    await appended.persisted;
    return appended.eventId;
  }

  // -------------------------------------------------------------------------------------------------
  // Creating rooms (create_room.yaml)

  async createRoom(requester: Requester, body: Record<string, unknown>): Promise<CreateRoomResult> {
    const sender = requester.userId;
    const visibility = optString(body, 'visibility');
    if (visibility !== undefined && visibility !== 'public' && visibility !== 'private') throw invalidParam('visibility must be "public" or "private"');
    const presetIn = optString(body, 'preset');
    if (presetIn !== undefined && !(presetIn in PRESETS)) throw invalidParam(`Unknown preset ${presetIn}`);
    const preset = (presetIn ?? (visibility === 'public' ? 'public_chat' : 'private_chat')) as Preset;
    const versionId = optString(body, 'room_version') ?? DEFAULT_ROOM_VERSION;
    const rv = getRoomVersion(versionId);
    if (!rv) throw new MatrixError(400, 'M_UNSUPPORTED_ROOM_VERSION', `Room version ${versionId} is not supported`);
    const name = optString(body, 'name');
    const topic = optString(body, 'topic');
    const aliasName = optString(body, 'room_alias_name');
    const isDirect = body['is_direct'];
    if (isDirect !== undefined && typeof isDirect !== 'boolean') throw badJson('is_direct must be a boolean');
    const creationContent = body['creation_content'] ?? {};
    if (!isObject(creationContent)) throw badJson('creation_content must be an object');
    const plOverride = body['power_level_content_override'];
    if (plOverride !== undefined && plOverride !== null && !isObject(plOverride)) throw badJson('power_level_content_override must be an object');
    const inviteIn = body['invite'] ?? [];
    if (!Array.isArray(inviteIn) || inviteIn.some((u) => typeof u !== 'string')) throw badJson('invite must be an array of user ids');
    const invite = [...new Set(inviteIn as string[])].filter((u) => u !== sender);
    for (const u of invite) {
      if (!isValidUserId(u)) throw invalidParam(`Invalid user id ${u}`);
      if (parseUserId(u)!.serverName !== this.hs.serverName) throw forbidden('Inviting users on other servers needs federation, which is not available yet');
    }
    const invite3pid = body['invite_3pid'];
    if (invite3pid !== undefined && (!Array.isArray(invite3pid) || invite3pid.length > 0)) {
      if (!Array.isArray(invite3pid)) throw badJson('invite_3pid must be an array');
      throw invalidParam('Third-party invites are not supported yet');
    }
    const initialIn = body['initial_state'] ?? [];
    if (!Array.isArray(initialIn)) throw badJson('initial_state must be an array');
    const initialState: Array<{ type: string; state_key: string; content: JsonObject }> = [];
    for (const s of initialIn) {
      if (!isObject(s) || typeof s['type'] !== 'string' || !isObject(s['content']) || (s['state_key'] !== undefined && typeof s['state_key'] !== 'string')) {
        throw badJson('initial_state entries need a string type, an object content and an optional string state_key');
      }
      initialState.push({ type: s['type'], state_key: (s['state_key'] as string | undefined) ?? '', content: s['content'] });
    }
    let alias: string | undefined;
    if (aliasName !== undefined) {
      alias = `#${aliasName}:${this.hs.serverName}`;
      if (aliasName.length === 0 || aliasName.includes(':') || /\s/.test(aliasName) || !isValidRoomAlias(alias)) throw invalidParam('Invalid room_alias_name');
      if (await this.resolveAlias(alias)) throw new MatrixError(400, 'M_ROOM_IN_USE', 'Room alias already taken');
    }

    // m.room.create content: creation_content with creator / room_version set by the server.
    const createContent: JsonObject = { ...creationContent };
    delete createContent['creator'];
    createContent['room_version'] = rv.id;
    if (!rv.implicitRoomCreator) createContent['creator'] = sender;
    if (rv.privilegedCreators) {
      const extra = createContent['additional_creators'];
      if (extra !== undefined && (!Array.isArray(extra) || extra.some((u) => typeof u !== 'string' || !isValidUserId(u)))) {
        throw badJson('additional_creators must be an array of user ids');
      }
      const creators = new Set<string>((extra as string[] | undefined) ?? []);
      // create_room.yaml: trusted_private_chat invitees are appended to additional_creators in v12+.
      if (preset === 'trusted_private_chat') for (const u of invite) creators.add(u);
      creators.delete(sender);
      if (creators.size > 0 || extra !== undefined) createContent['additional_creators'] = [...creators];
    } else {
      delete createContent['additional_creators'];
    }

    // Default power levels (create_room.yaml step 3). v12 creators are not listed; tombstone must be
    // above state_default there. Invites: anyone joined in private presets, moderators in public ones.
    const users: Record<string, number> = {};
    if (!rv.privilegedCreators) {
      users[sender] = 100;
      if (preset === 'trusted_private_chat') for (const u of invite) users[u] = 100;
    }
    let pl: JsonObject = {
      users,
      users_default: 0,
      events: {
        'm.room.name': 50,
        'm.room.power_levels': 100,
        'm.room.history_visibility': 100,
        'm.room.canonical_alias': 50,
        'm.room.avatar': 50,
        'm.room.tombstone': rv.privilegedCreators ? 150 : 100,
        'm.room.server_acl': 100,
        'm.room.encryption': 100,
      },
      events_default: 0,
      state_default: 50,
      ban: 50,
      kick: 50,
      redact: 50,
      invite: preset === 'public_chat' ? 50 : 0,
      notifications: { room: 50 },
    };
    if (isObject(plOverride)) pl = { ...pl, ...plOverride };

    const presetState = PRESETS[preset];
    const drafts: Array<Omit<EventDraft, 'sender'>> = [];
    drafts.push({ type: 'm.room.power_levels', state_key: '', content: pl });
    if (alias) drafts.push({ type: 'm.room.canonical_alias', state_key: '', content: { alias } });
    const initialKeys = new Set(initialState.map((s) => stateKey(s.type, s.state_key)));
    const presetEvents: Array<[string, JsonObject]> = [
      ['m.room.join_rules', { join_rule: presetState.join_rule }],
      ['m.room.history_visibility', { history_visibility: presetState.history_visibility }],
      ['m.room.guest_access', { guest_access: presetState.guest_access }],
    ];
    for (const [type, content] of presetEvents) {
      // initial_state "takes precedence over events set by preset".
      if (!initialKeys.has(stateKey(type, ''))) drafts.push({ type, state_key: '', content });
    }
    for (const s of initialState) {
      // ... "but gets overridden by name and topic keys".
      if (s.state_key === '' && ((s.type === 'm.room.name' && name !== undefined) || (s.type === 'm.room.topic' && topic !== undefined))) continue;
      drafts.push({ type: s.type, state_key: s.state_key, content: s.content });
    }
    if (name !== undefined) drafts.push({ type: 'm.room.name', state_key: '', content: { name } });
    if (topic !== undefined) {
      // m.room.topic with the text/plain representation in m.topic (v1.15 m.room.topic).
      drafts.push({ type: 'm.room.topic', state_key: '', content: { topic, 'm.topic': { 'm.text': [{ body: topic, mimetype: 'text/plain' }] } } });
    }
    for (const d of drafts) {
      if (d.type === 'm.room.create') throw new MatrixError(400, 'M_INVALID_ROOM_STATE', 'initial_state may not contain m.room.create');
    }
    const creatorMember = await this.memberContent(sender, 'join');
    const inviteContents = new Map<string, JsonObject>();
    for (const u of invite) inviteContents.set(u, await this.memberContent(u, 'invite', isDirect === true ? { is_direct: true } : {}));

    const { roomId, result: last } = await this.writer
      .createRoom(rv, { type: 'm.room.create', sender, state_key: '', content: createContent }, async (ctx) => {
        let lastEvent = await ctx.append({ type: 'm.room.member', sender, state_key: sender, content: creatorMember });
        for (const d of drafts) lastEvent = await ctx.append({ ...d, sender });
        for (const u of invite) lastEvent = await ctx.append({ type: 'm.room.member', sender, state_key: u, content: inviteContents.get(u)! });
        return lastEvent;
      })
      .catch(asInvalidRoomState);
    await last.persisted;
    if (alias) {
      await this.hs.db.insertInto('room_aliases').values({ alias, room_id: roomId, creator: sender, created_ts: this.hs.now() }).onConflict((oc) => oc.doNothing()).execute();
    }
    if (visibility === 'public') await this.setPublished(roomId, true);
    return { roomId };
  }

  // -------------------------------------------------------------------------------------------------
  // Sending

  private txnKey(r: Requester, endpoint: string, roomId: string, txnId: string): string {
    return JSON.stringify([r.userId, r.deviceId ?? '', endpoint, roomId, txnId]);
  }

  /**
   * The transaction ids a device has used in a room (txn id → event id), loaded whole on first use and
   * kept up to date by this process. Sound because every write to a room goes through the one process
   * that writes the room (DESIGN.md §4), so no other process adds txn ids for it meanwhile. Saves a
   * database round trip per send (client-server-api "Transaction identifiers").
   */
  private async deviceTxns(requester: Requester, endpoint: string, roomId: string): Promise<Map<string, string> | undefined> {
    const key = JSON.stringify([requester.userId, requester.deviceId ?? '', endpoint, roomId]);
    const hit = this.txnCache.touch(key);
    // (A miss while an earlier send of this device is in flight is fine: it records into this map.)
    if (hit) return hit;
    const rows = await this.hs.db
      .selectFrom('event_txn_ids')
      .select(['txn_id', 'event_id'])
      .where('user_id', '=', requester.userId)
      .where('device_id', '=', requester.deviceId ?? '')
      .where('endpoint', '=', endpoint)
      .where('room_id', '=', roomId)
      .limit(TXN_CACHE_MAX_PER_DEVICE + 1)
      .execute();
    // A device with very many transactions in one room is looked up one txn id at a time instead.
    if (rows.length > TXN_CACHE_MAX_PER_DEVICE) return undefined;
    const again = this.txnCache.touch(key); // another request loaded it meanwhile
    if (again) return again;
    const m = new Map(rows.map((r) => [r.txn_id, r.event_id]));
    this.txnCache.set(key, m);
    return m;
  }

  private async idempotent(requester: Requester, endpoint: string, roomId: string, txnId: string | undefined, run: (txn: { user_id: string; device_id: string; endpoint: string; txn_id: string } | undefined) => Promise<string>): Promise<string> {
    if (txnId === undefined) return run(undefined);
    const key = this.txnKey(requester, endpoint, roomId, txnId);
    const pending = this.pendingTxns.get(key);
    if (pending) return pending;
    const p = (async () => {
      const known = await this.deviceTxns(requester, endpoint, roomId);
      const found = known
        ? known.get(txnId)
        : (
            await this.hs.db
              .selectFrom('event_txn_ids')
              .select('event_id')
              .where('user_id', '=', requester.userId)
              .where('device_id', '=', requester.deviceId ?? '')
              .where('endpoint', '=', endpoint)
              .where('room_id', '=', roomId)
              .where('txn_id', '=', txnId)
              .executeTakeFirst()
          )?.event_id;
      if (found !== undefined) return found;
      const eventId = await run({ user_id: requester.userId, device_id: requester.deviceId ?? '', endpoint, txn_id: txnId });
      // Recorded once persisted (run awaits that), in the map now cached: it may have been evicted and
      // reloaded meanwhile.
      const cacheKey = JSON.stringify([requester.userId, requester.deviceId ?? '', endpoint, roomId]);
      const current = this.txnCache.get(cacheKey);
      if (current) {
        if (current.size >= TXN_CACHE_MAX_PER_DEVICE) this.txnCache.delete(cacheKey);
        else current.set(txnId, eventId);
      }
      return eventId;
    })();
    this.pendingTxns.set(key, p);
    try {
      return await p;
    } finally {
      this.pendingTxns.delete(key);
    }
  }

  /** Runs `fn` in a room the requester is joined to; 403 otherwise (unknown rooms included). */
  private async asMember<T>(requester: Requester, roomId: string, fn: (ctx: RoomWriteContext) => Promise<T>): Promise<T> {
    if (!(await this.writer.head(roomId))) throw forbidden('You are not joined to this room');
    return this.writer.withRoom(roomId, async (ctx) => {
      if ((await this.membershipIn(ctx, requester.userId)) !== 'join') throw forbidden('You are not joined to this room');
      return fn(ctx);
    });
  }

  /** PUT /rooms/{roomId}/send/{eventType}/{txnId} */
  async sendMessage(requester: Requester, roomId: string, type: string, content: JsonObject, txnId?: string): Promise<string> {
    if (type === 'm.room.redaction') {
      const target = content['redacts'];
      if (typeof target !== 'string') throw badJson('m.room.redaction needs content.redacts');
      return this.redact(requester, roomId, target, txnId, content, 'send');
    }
    return this.idempotent(requester, 'send', roomId, txnId, async (txn) => {
      const a = await this.asMember(requester, roomId, (ctx) => ctx.append({ type, sender: requester.userId, content }, txn ? { txn } : {}));
      return this.finish(a);
    });
  }

  /** PUT /rooms/{roomId}/state/{eventType}/{stateKey} */
  async sendState(requester: Requester, roomId: string, type: string, sk: string, content: JsonObject): Promise<string> {
    if (type === 'm.room.member') return this.setMembershipFromState(requester, roomId, sk, content);
    if (type === 'm.room.canonical_alias') await this.checkCanonicalAlias(roomId, content);
    if (type === 'm.room.create') throw forbidden('m.room.create cannot be sent into an existing room');
    const a = await this.asMember(requester, roomId, (ctx) => ctx.append({ type, sender: requester.userId, state_key: sk, content }));
    return this.finish(a);
  }

  /** room_state.yaml: M_INVALID_PARAM for bad alias syntax, M_BAD_ALIAS for local aliases not pointing here. */
  private async checkCanonicalAlias(roomId: string, content: JsonObject): Promise<void> {
    const aliases: unknown[] = [];
    if (content['alias'] !== undefined && content['alias'] !== null) aliases.push(content['alias']);
    const alt = content['alt_aliases'];
    if (alt !== undefined) {
      if (!Array.isArray(alt)) throw invalidParam('alt_aliases must be an array');
      aliases.push(...alt);
    }
    for (const a of aliases) {
      if (typeof a !== 'string' || !isValidRoomAlias(a)) throw invalidParam(`Invalid room alias ${String(a)}`);
      if (parseRoomAlias(a)!.serverName === this.hs.serverName) {
        const r = await this.resolveAlias(a);
        if (r?.roomId !== roomId) throw new MatrixError(400, 'M_BAD_ALIAS', `${a} does not point to this room`);
      }
    }
  }

  /** A membership change sent through PUT /state/m.room.member/{userId}: the same checks as the dedicated endpoints. */
  private async setMembershipFromState(requester: Requester, roomId: string, target: string, content: JsonObject): Promise<string> {
    const m = content['membership'];
    if (typeof m !== 'string') throw badJson('m.room.member needs content.membership');
    if (!isValidUserId(target)) throw invalidParam('The state key of m.room.member must be a user id');
    if (!(await this.writer.head(roomId))) throw forbidden('You are not in this room');
    const a = await this.writer.withRoom(roomId, (ctx) => ctx.append({ type: 'm.room.member', sender: requester.userId, state_key: target, content }));
    return this.finish(a);
  }

  // -------------------------------------------------------------------------------------------------
  // Membership (client-server-api "Room membership")

  async join(requester: Requester, roomIdOrAlias: string, opts: { reason?: string } = {}): Promise<string> {
    const roomId = await this.resolveRoomIdOrAlias(roomIdOrAlias);
    if (!(await this.writer.head(roomId))) {
      const server = roomIdServerName(roomId);
      if (server !== null && server !== this.hs.serverName) throw notFound('Joining rooms on other servers needs federation, which is not available yet');
      throw notFound('Unknown room (joining rooms on other servers needs federation, which is not available yet)');
    }
    const extra: JsonObject = opts.reason !== undefined ? { reason: opts.reason } : {};
    const content = await this.memberContent(requester.userId, 'join', extra);
    const a = await this.writer.withRoom(roomId, async (ctx) => {
      if (requester.isGuest) {
        const ga = (await ctx.stateEvent('m.room.guest_access', ''))?.pdu.content['guest_access'];
        if (ga !== 'can_join') throw new MatrixError(403, 'M_GUEST_ACCESS_FORBIDDEN', 'Guests may not join this room');
      }
      const authoriser = await this.restrictedJoinAuthoriser(ctx, requester.userId);
      const joinContent = authoriser ? { ...content, join_authorised_via_users_server: authoriser } : content;
      return ctx.append({ type: 'm.room.member', sender: requester.userId, state_key: requester.userId, content: joinContent });
    });
    await this.finish(a);
    return roomId;
  }

  /**
   * Restricted joins (client-server-api "Restricted rooms", rooms/v8+ auth rule 4.3.5): when the join
   * rule is `restricted` (or `knock_restricted` from v10) and the user is neither invited nor joined,
   * they must be joined to one of the rooms the `allow` conditions name; the join then names a local
   * joined user who may invite, in `join_authorised_via_users_server`. Returns that user, or
   * undefined when no authoriser is needed (the auth rules decide the rest). M_FORBIDDEN when no
   * condition is met.
   */
  private async restrictedJoinAuthoriser(ctx: RoomWriteContext, userId: string): Promise<string | undefined> {
    const rv = ctx.rv;
    const jr = (await ctx.stateEvent('m.room.join_rules', ''))?.pdu.content;
    const rule = jr?.['join_rule'];
    if (!((rv.restrictedJoin && rule === 'restricted') || (rv.knockRestricted && rule === 'knock_restricted'))) return undefined;
    const current = await this.membershipIn(ctx, userId);
    if (current === 'join' || current === 'invite' || current === 'ban') return undefined;
    const allow = Array.isArray(jr?.['allow']) ? (jr['allow'] as JsonValue[]) : [];
    let satisfied = false;
    for (const c of allow) {
      if (!isObject(c) || c['type'] !== 'm.room_membership' || typeof c['room_id'] !== 'string') continue;
      if ((await this.getMembership(c['room_id'], userId))?.membership === 'join') {
        satisfied = true;
        break;
      }
    }
    if (!satisfied) throw forbidden('You do not meet any of the conditions to join this restricted room');
    // Any local joined member with the invite level will do; creators (v12) first, then by power.
    const candidates: string[] = [];
    for (const k of ctx.stateIds().keys()) {
      if (!k.startsWith('m.room.member\u0000')) continue;
      const member = splitStateKey(k)[1];
      if (parseUserId(member)?.serverName === this.hs.serverName) candidates.push(member);
    }
    const state = await this.powerState(ctx, candidates);
    const inviteLevel = getPowerLevelsContent(rv, state).invite;
    let best: { user: string; level: number } | undefined;
    for (const u of candidates) {
      if (state.get(stateKey('m.room.member', u))?.pdu.content['membership'] !== 'join') continue;
      const level = getUserPowerLevel(rv, state, u);
      if (level >= inviteLevel && (!best || level > best.level)) best = { user: u, level };
    }
    if (!best) throw forbidden('No member of this server can authorise your join to this restricted room');
    return best.user;
  }

  async knock(requester: Requester, roomIdOrAlias: string, opts: { reason?: string } = {}): Promise<string> {
    const roomId = await this.resolveRoomIdOrAlias(roomIdOrAlias);
    if (!(await this.writer.head(roomId))) throw notFound('Unknown room (knocking on rooms on other servers needs federation, which is not available yet)');
    const content = await this.memberContent(requester.userId, 'knock', opts.reason !== undefined ? { reason: opts.reason } : {});
    const a = await this.writer.withRoom(roomId, async (ctx) => {
      const current = await this.membershipIn(ctx, requester.userId);
      // client-server-api "Knocking on rooms": "Users who are currently in the room, already invited, or banned cannot knock".
      if (current === 'join' || current === 'invite' || current === 'ban') throw forbidden(`You cannot knock: your membership is ${current}`);
      if (!ctx.rv.knock) throw forbidden(`Room version ${ctx.rv.id} does not support knocking`);
      return ctx.append({ type: 'm.room.member', sender: requester.userId, state_key: requester.userId, content });
    });
    await this.finish(a);
    return roomId;
  }

  async invite(requester: Requester, roomId: string, target: string, opts: { reason?: string; isDirect?: boolean } = {}): Promise<string> {
    if (!isValidUserId(target)) throw invalidParam('Invalid user id');
    if (parseUserId(target)!.serverName !== this.hs.serverName) throw forbidden('Inviting users on other servers needs federation, which is not available yet');
    if (!(await this.writer.head(roomId))) throw forbidden('You are not in this room');
    const extra: JsonObject = {};
    if (opts.reason !== undefined) extra['reason'] = opts.reason;
    if (opts.isDirect) extra['is_direct'] = true;
    const content = await this.memberContent(target, 'invite', extra);
    const a = await this.writer.withRoom(roomId, async (ctx) => {
      // inviting.yaml 200: "or was already invited to the room".
      const current = await this.membershipIn(ctx, target);
      if (current === 'invite') return null;
      return ctx.append({ type: 'm.room.member', sender: requester.userId, state_key: target, content });
    });
    return a ? this.finish(a) : '';
  }

  async leave(requester: Requester, roomId: string, opts: { reason?: string } = {}): Promise<void> {
    if (!(await this.writer.head(roomId))) throw notFound('Unknown room');
    const a = await this.writer.withRoom(roomId, async (ctx) => {
      const current = await this.membershipIn(ctx, requester.userId);
      if (current === 'leave' || current === undefined) return null; // already out: nothing to do
      if (current === 'ban') throw forbidden('You are banned from this room');
      return ctx.append({ type: 'm.room.member', sender: requester.userId, state_key: requester.userId, content: { membership: 'leave', ...(opts.reason !== undefined ? { reason: opts.reason } : {}) } });
    });
    if (a) await this.finish(a);
  }

  async forget(requester: Requester, roomId: string): Promise<void> {
    const m = await this.getMembership(roomId, requester.userId);
    if (!m) return;
    if (m.membership === 'join' || m.membership === 'invite' || m.membership === 'knock') throw new MatrixError(400, 'M_UNKNOWN', 'You have not left the room');
    await this.hs.db.updateTable('room_memberships').set({ forgotten: true }).where('room_id', '=', roomId).where('user_id', '=', requester.userId).execute();
  }

  /** kick, ban and unban: membership events about another user. */
  async moderate(requester: Requester, roomId: string, action: 'kick' | 'ban' | 'unban', target: string, reason?: string): Promise<void> {
    if (!isValidUserId(target)) throw invalidParam('Invalid user id');
    if (!(await this.writer.head(roomId))) throw forbidden('You are not in this room');
    const a = await this.writer.withRoom(roomId, async (ctx) => {
      const current = await this.membershipIn(ctx, target);
      if (action === 'kick' && current !== 'join' && current !== 'invite' && current !== 'knock') throw forbidden('The user is not in the room');
      if (action === 'unban' && current !== 'ban') throw forbidden('The user is not banned');
      const content: JsonObject = { membership: action === 'ban' ? 'ban' : 'leave' };
      if (reason !== undefined) content['reason'] = reason;
      return ctx.append({ type: 'm.room.member', sender: requester.userId, state_key: target, content });
    });
    await this.finish(a);
  }

  private async propagateProfile(userId: string, profile: Record<string, unknown>): Promise<void> {
    for (const roomId of await this.getJoinedRoomIds(userId)) {
      try {
        const a = await this.writer.withRoom(roomId, async (ctx) => {
          const current = await ctx.stateEvent('m.room.member', userId);
          if (current?.pdu.content['membership'] !== 'join') return null;
          const content: JsonObject = { ...current.pdu.content };
          delete content['displayname'];
          delete content['avatar_url'];
          delete content['reason'];
          if (typeof profile['displayname'] === 'string') content['displayname'] = profile['displayname'];
          if (typeof profile['avatar_url'] === 'string') content['avatar_url'] = profile['avatar_url'];
          return ctx.append({ type: 'm.room.member', sender: userId, state_key: userId, content });
        });
        if (a) await a.persisted;
      } catch (err) {
        this.hs.logger.warn({ err, roomId }, 'updating a member event after a profile change failed');
      }
    }
  }

  // -------------------------------------------------------------------------------------------------
  // Redactions

  async redact(requester: Requester, roomId: string, targetId: string, txnId: string | undefined, content: JsonObject, endpoint = 'redact'): Promise<string> {
    return this.idempotent(requester, endpoint, roomId, txnId, async (txn) => {
      const target = await this.getEvent(targetId);
      const a = await this.asMember(requester, roomId, async (ctx) => {
        if (!target || target.roomId !== roomId || target.rejectedReason !== null || target.softFailed) throw notFound('Event not found');
        // rooms/v3+ "Handling redactions": redacting another user's event needs the redact level.
        if (target.pdu.sender !== requester.userId) {
          const state = await this.powerState(ctx, [requester.userId]);
          const levels = getPowerLevelsContent(ctx.rv, state);
          if (getUserPowerLevel(ctx.rv, state, requester.userId) < levels.redact) throw forbidden('You need the redact power level to redact other users\u2019 events');
        }
        const c: JsonObject = { ...content };
        delete c['redacts'];
        return ctx.append({ type: 'm.room.redaction', sender: requester.userId, content: c, redacts: targetId }, txn ? { txn } : {});
      });
      return this.finish(a);
    });
  }

  // -------------------------------------------------------------------------------------------------
  // Room upgrades (modules/room_upgrades.md "Server behaviour")

  async upgrade(requester: Requester, roomId: string, newVersionId: string, additionalCreators: string[] = []): Promise<string> {
    const newRv = getRoomVersion(newVersionId);
    if (!newRv) throw new MatrixError(400, 'M_UNSUPPORTED_ROOM_VERSION', `Room version ${newVersionId} is not supported`);
    for (const u of additionalCreators) if (!isValidUserId(u)) throw invalidParam(`Invalid user id ${u}`);
    const sender = requester.userId;
    const oldHead = await this.writer.head(roomId);
    if (!oldHead) throw forbidden('You are not in this room');

    // 1. Permission to send the tombstone; collect what the new room copies.
    const snapshot = await this.writer.withRoom(roomId, async (ctx) => {
      if ((await this.membershipIn(ctx, sender)) !== 'join') throw forbidden('You are not joined to this room');
      const state = await this.powerState(ctx, [sender]);
      if (getUserPowerLevel(ctx.rv, state, sender) < getRequiredPowerLevel(ctx.rv, state, 'm.room.tombstone', true)) {
        throw forbidden('You need the power to send m.room.tombstone to upgrade this room');
      }
      const copied: Array<{ type: string; content: JsonObject }> = [];
      for (const type of UPGRADE_COPIED_STATE) {
        const e = await ctx.stateEvent(type, '');
        if (e) copied.push({ type, content: e.pdu.content });
      }
      const create = (await ctx.stateEvent('m.room.create', ''))!;
      const pl = await ctx.stateEvent('m.room.power_levels', '');
      const alias = await ctx.stateEvent('m.room.canonical_alias', '');
      const last = [...ctx.extremities()].sort((a, b) => b.depth - a.depth)[0]!;
      return {
        rv: ctx.rv,
        copied,
        createContent: create.pdu.content,
        oldCreators: getRoomCreators(ctx.rv, create),
        pl: pl?.pdu.content,
        alias: alias?.pdu.content,
        lastEventId: last.eventId,
      };
    });

    // 2. The replacement room.
    const createContent: JsonObject = { room_version: newRv.id, predecessor: { room_id: roomId, event_id: snapshot.lastEventId } };
    if (typeof snapshot.createContent['type'] === 'string') createContent['type'] = snapshot.createContent['type'];
    if (snapshot.createContent['m.federate'] === false) createContent['m.federate'] = false;
    if (!newRv.implicitRoomCreator) createContent['creator'] = sender;
    const creators = new Set<string>([sender]);
    if (newRv.privilegedCreators) {
      const extra = [...new Set(additionalCreators)].filter((u) => u !== sender);
      if (extra.length > 0) createContent['additional_creators'] = extra;
      for (const u of extra) creators.add(u);
    }
    // Power levels: the old room's, with the creators' entries adapted to the new version. So the
    // upgrader can send the copied state, they are raised first and the old levels restored last.
    const basePl: JsonObject = snapshot.pl ? JSON.parse(JSON.stringify(snapshot.pl)) : {};
    const users: Record<string, JsonValue> = isObject(basePl['users']) ? { ...(basePl['users'] as JsonObject) } : {};
    if (newRv.privilegedCreators) for (const c of creators) delete users[c];
    else if (snapshot.rv.privilegedCreators) for (const c of snapshot.oldCreators) users[c] = 100;
    const finalPl: JsonObject = { ...basePl, users };
    if (!snapshot.pl) {
      // Old rooms without power levels: give the upgrader the creator's default of 100.
      if (!newRv.privilegedCreators) users[sender] = 100;
    }
    let raisedPl: JsonObject | null = null;
    if (!newRv.privilegedCreators) {
      const levels = [100];
      for (const k of ['users_default', 'events_default', 'state_default', 'ban', 'kick', 'redact', 'invite']) if (typeof basePl[k] === 'number') levels.push(basePl[k] as number);
      if (isObject(basePl['events'])) for (const v of Object.values(basePl['events'] as JsonObject)) if (typeof v === 'number') levels.push(v);
      const needed = Math.max(...levels);
      const has = typeof users[sender] === 'number' ? (users[sender] as number) : typeof basePl['users_default'] === 'number' ? (basePl['users_default'] as number) : 0;
      if (has < needed) raisedPl = { ...finalPl, users: { ...users, [sender]: needed } };
    }
    const member = await this.memberContent(sender, 'join');
    const { roomId: newRoomId, result: lastNew } = await this.writer
      .createRoom(newRv, { type: 'm.room.create', sender, state_key: '', content: createContent }, async (ctx) => {
        let last = await ctx.append({ type: 'm.room.member', sender, state_key: sender, content: member });
        last = await ctx.append({ type: 'm.room.power_levels', sender, state_key: '', content: raisedPl ?? finalPl });
        for (const c of snapshot.copied) last = await ctx.append({ type: c.type, sender, state_key: '', content: c.content });
        if (raisedPl) last = await ctx.append({ type: 'm.room.power_levels', sender, state_key: '', content: finalPl });
        return last;
      })
      .catch(asInvalidRoomState);
    await lastNew.persisted;

    // 4. Local aliases and the published flag move to the new room; the canonical alias follows.
    await this.hs.db.updateTable('room_aliases').set({ room_id: newRoomId }).where('room_id', '=', roomId).execute();
    const published = await this.isPublished(roomId);
    if (published) {
      await this.setPublished(newRoomId, true);
      await this.setPublished(roomId, false);
    }
    if (snapshot.alias && (snapshot.alias['alias'] !== undefined || snapshot.alias['alt_aliases'] !== undefined)) {
      try {
        const a = await this.writer.withRoom(newRoomId, (ctx) => ctx.append({ type: 'm.room.canonical_alias', sender, state_key: '', content: snapshot.alias! }));
        await a.persisted;
      } catch (err) {
        this.hs.logger.warn({ err, roomId: newRoomId }, 'copying the canonical alias on upgrade failed');
      }
    }

    // 5. and 6. Tombstone the old room, and restrict it: events_default and invite to max(50, users_default + 1).
    const lastOld = await this.writer.withRoom(roomId, async (ctx) => {
      let last = await ctx.append({ type: 'm.room.tombstone', sender, state_key: '', content: { body: 'This room has been replaced', replacement_room: newRoomId } });
      if (snapshot.alias && (snapshot.alias['alias'] !== undefined || snapshot.alias['alt_aliases'] !== undefined)) {
        try {
          last = await ctx.append({ type: 'm.room.canonical_alias', sender, state_key: '', content: {} });
        } catch {
          // Not allowed to clear it: the alias itself has moved anyway.
        }
      }
      const pl = await ctx.stateEvent('m.room.power_levels', '');
      if (pl) {
        const c: JsonObject = { ...pl.pdu.content };
        const usersDefault = typeof c['users_default'] === 'number' ? (c['users_default'] as number) : 0;
        const restricted = Math.max(50, usersDefault + 1);
        c['events_default'] = Math.max(restricted, typeof c['events_default'] === 'number' ? (c['events_default'] as number) : 0);
        c['invite'] = Math.max(restricted, typeof c['invite'] === 'number' ? (c['invite'] as number) : 0);
        try {
          last = await ctx.append({ type: 'm.room.power_levels', sender, state_key: '', content: c });
        } catch (err) {
          this.hs.logger.info({ err: (err as Error).message, roomId }, 'could not restrict the old room after upgrade');
        }
      }
      return last;
    });
    await lastOld.persisted;
    return newRoomId;
  }

  /** Whether `userId` is a creator with infinite power (v12) in the room's current state. */
  async isPrivilegedCreator(roomId: string, userId: string): Promise<boolean> {
    const head = await this.writer.head(roomId);
    if (!head) return false;
    return isPrivilegedCreator(head.rv, await this.authState(head.state, [stateKey('m.room.create', '')]), userId);
  }

  /** Full events of the current state (optionally filtered by type). */
  async getCurrentStateEvents(roomId: string, types?: string[]): Promise<StoredEvent[]> {
    const state = await this.getCurrentStateIds(roomId);
    if (!state) return [];
    const ids: string[] = [];
    for (const [k, id] of state) if (!types || types.includes(splitStateKey(k)[0])) ids.push(id);
    return getEventsByIds(this.hs.db, ids);
  }

  /** Events of a state map. */
  async getStateEvents(state: StateMap<string>): Promise<StoredEvent[]> {
    return getEventsByIds(this.hs.db, [...state.values()]);
  }

  /** For tests and tools: the PDU of an event as stored. */
  async getPdu(eventId: string): Promise<Pdu | undefined> {
    return (await this.writer.getPdu(eventId))?.pdu;
  }
}

export function initRooms(hs: Homeserver): RoomService {
  const s = new RoomService(hs);
  hs.services.rooms = s;
  return s;
}
