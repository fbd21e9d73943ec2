// Appending events to rooms: per-room serialisation, event building, authorisation, and batched
// persistence in one transaction per batch (event rows, edges, state group delta, auth chain index,
// current state, memberships, forward extremities, stream positions).
//
// Writes to one room are ordered by a per-room async lock in this process. Deployments with several
// processes pin each room to one writer (sharded by room id, DESIGN.md §4), so the in-memory room head
// (forward extremities, current state, chain tips) kept here stays authoritative and no distributed
// lock is needed.
//
// Building is cheap and happens under the lock; persisting is batched: while one batch of a room is
// being committed, later events of that room queue up and are committed together in the next batch.
// A caller's events are handed to the queue only when its `withRoom` callback returns, so a callback
// that throws leaves no trace (createRoom never half-writes a room).
import { randomBytes } from 'node:crypto';
import type { IdentifiedPdu, JsonObject, StateKey, StateMap } from '../../spec/events.ts';
import { isStateEvent, refIds, stateKey } from '../../spec/events.ts';
import { authEventTypesFor, selectAuthEvents } from '../../spec/auth-events.ts';
import { checkEventAuth, checkEventAuthWithAuthEvents } from '../../spec/auth-rules.ts';
import { authChainDifference, resolveState } from '../../spec/state-res.ts';
import { getRoomVersion, type RoomVersion } from '../../spec/room-versions.ts';
import { MatrixError, forbidden } from '../errors.ts';
import type { Homeserver } from '../homeserver.ts';
import { AuthChainIndex, assignChainPosition, type AuthEventPosition, type ChainPosition } from '../storage/auth-chain-index.ts';
import {
  getEventsByIds,
  getForwardExtremities,
  getRoom,
  isSingleStatementBatch,
  redactsOf,
  writeBatches,
  type PushActionRow,
  type EventTxnIdsTable,
  type PersistBatch,
} from '../storage/rooms-store.ts';
import { StateGroupStore, type NewStateGroup } from '../storage/state-groups.ts';
import { EventStreamPositions } from '../storage/stream.ts';
import { buildEvent, generateRoomId, MAX_PREV_EVENTS, type EventDraft } from './event-builder.ts';

const CREATE_KEY = stateKey('m.room.create', '');
const MAX_PDU_BYTES = 65_536;
const CLASH = Symbol('room id clash');
/** Concurrent flush transactions, and the most events one flush commits. */
const MAX_FLUSHES = 2;
const MAX_BATCH_EVENTS = 1000;

/** client-server-api "Size limits": type, state_key, sender (and ids) at most 255 bytes. */
function checkDraftLimits(d: EventDraft): void {
  if (Buffer.byteLength(d.type) > 255) throw new MatrixError(400, 'M_INVALID_PARAM', 'Event type exceeds 255 bytes');
  if (d.state_key !== undefined && Buffer.byteLength(d.state_key) > 255) throw new MatrixError(400, 'M_INVALID_PARAM', 'State key exceeds 255 bytes');
  if (d.type.length === 0) throw new MatrixError(400, 'M_INVALID_PARAM', 'Event type must not be empty');
}

export interface RoomHead {
  readonly roomId: string;
  readonly rv: RoomVersion;
  readonly extremities: ReadonlyArray<{ eventId: string; depth: number }>;
  readonly stateGroup: string;
  readonly stateGroupDepth: number;
  /** Current state (type, state_key) → event id. Never mutated: each change makes a new map. */
  readonly state: StateMap<string>;
}

/** An event appended by `withRoom`: built, authorised, and persisted once `persisted` resolves. */
export interface AppendedEvent {
  eventId: string;
  event: IdentifiedPdu;
  /** Resolves with the event's stream position once committed. */
  persisted: Promise<number>;
}

export interface AppendOptions {
  /** Records a send transaction id with the event (idempotency). */
  txn?: Omit<EventTxnIdsTable, 'event_id' | 'created_ts' | 'room_id'>;
}

/** What a `withRoom` callback can do: read the room's current state and append events. */
export interface RoomWriteContext {
  readonly roomId: string;
  readonly rv: RoomVersion;
  /** Current state including events appended so far in this callback. */
  stateIds(): StateMap<string>;
  /** Current forward extremities. */
  extremities(): ReadonlyArray<{ eventId: string; depth: number }>;
  stateEvent(type: string, stateKeyValue: string): Promise<IdentifiedPdu | undefined>;
  append(draft: EventDraft, opts?: AppendOptions): Promise<AppendedEvent>;
}

interface PendingItem {
  roomId: string;
  event: IdentifiedPdu;
  json: string;
  stateGroupBefore: string;
  stateGroup: string;
  newGroup: NewStateGroup | null;
  chain: ChainPosition | null;
  prevIds: string[];
  authIds: string[];
  roomStateGroup: string;
  extremities: string[];
  stateChange: [StateKey, string] | null;
  newRoom?: { roomVersion: string; creator: string; createdTs: number };
  txn?: EventTxnIdsTable;
  /** Received events (persistIncoming): the outcome of the checks and what it changes. */
  incoming?: {
    rejectedReason: string | null;
    softFailed: boolean;
    /** Current-state changes (replacing `stateChange`), e.g. after resolving a fork. */
    stateChanges: Array<[StateKey, string | null]>;
    memberships: Array<{ userId: string; membership: string; eventId: string; sender: string }>;
    /** State groups besides `newGroup` (a resolved state before the event, a resolved current state). */
    extraGroups: NewStateGroup[];
  };
  /** Its push actions, evaluated from when it is queued (so a busy room's evaluations overlap its writes). */
  push?: Promise<PushActionRow[]>;
  resolve(position: number): void;
  reject(err: unknown): void;
}

export type IncomingOutcome = 'accepted' | 'soft_failed' | 'rejected';

/** What became of an event received from another server (RoomWriter.persistIncoming). */
export interface IncomingResult {
  eventId: string;
  outcome: IncomingOutcome;
  /** Why it was rejected, or why it soft-failed (the auth rule that refused it). */
  reason?: string;
  /** Resolves with the event's stream position once committed. */
  persisted: Promise<number>;
  /** The event was already stored; nothing was written. */
  duplicate?: boolean;
}

/** persistIncoming needs these events stored first (fetching them is the federation side's job). */
export class MissingEventsError extends MatrixError {
  readonly missing: string[];
  constructor(missing: string[]) {
    super(400, 'M_BAD_STATE', `Unknown prev_events or auth_events: ${missing.slice(0, 10).join(', ')}`);
    this.missing = missing;
  }
}

/** A committed event, as persistence listeners see it. */
export interface PersistedEvent {
  roomId: string;
  eventId: string;
  event: IdentifiedPdu;
  streamOrdering: number;
}

export type PersistListener = (events: PersistedEvent[]) => void | Promise<void>;

/** An event queued for persisting (no stream position yet). */
export type QueuedEvent = Omit<PersistedEvent, 'streamOrdering'>;

export class LruMap<K, V> extends Map<K, V> {
  private readonly max: number;
  constructor(max: number) {
    super();
    this.max = max;
  }
  touch(k: K): V | undefined {
    const v = super.get(k);
    if (v !== undefined) {
      super.delete(k);
      super.set(k, v);
    }
    return v;
  }
  override set(k: K, v: V): this {
    if (super.has(k)) super.delete(k);
    super.set(k, v);
    if (this.size > this.max) this.delete(this.keys().next().value as K);
    return this;
  }
}

function isAccepted(it: PendingItem): boolean {
  return !it.incoming || (it.incoming.rejectedReason === null && !it.incoming.softFailed);
}

function sameState(a: StateMap<string>, b: StateMap<string>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

export class RoomWriter {
  private readonly hs: Homeserver;
  readonly stream: EventStreamPositions;
  readonly stateGroups: StateGroupStore;
  readonly authIndex: AuthChainIndex;
  private readonly heads = new LruMap<string, RoomHead>(5_000);
  /** Per room: chain id → highest seq (only chains this process has looked at). */
  private readonly chainTips = new LruMap<string, Map<string, number>>(5_000);
  private readonly events = new LruMap<string, IdentifiedPdu>(50_000);
  private readonly locks = new Map<string, Promise<void>>();
  private readonly pending = new Map<string, PendingItem[]>();
  private readonly inFlight = new Set<string>();
  /** Per room: the `persisted` promise of its last queued event (to wait until the room is written). */
  private readonly tails = new Map<string, Promise<number>>();
  private activeFlushes = 0;
  readonly persistListeners: PersistListener[] = [];
  /**
   * The push actions of events about to be persisted, written in the same statement or transaction as
   * the events (set by the notifications service): unread counts then never lag behind the timeline,
   * and a crash cannot leave an event without its notifications.
   */
  pushActionsOf: ((events: QueuedEvent[]) => Promise<PushActionRow[]>) | null = null;

  constructor(hs: Homeserver) {
    this.hs = hs;
    this.stream = new EventStreamPositions(hs.db, {
      instance: `${hs.serverName}/${process.pid}/${randomBytes(4).toString('hex')}`,
      multiWriter: hs.redis !== null,
      now: () => hs.now(),
    });
    this.stateGroups = new StateGroupStore(hs.db);
    this.authIndex = new AuthChainIndex(hs.db);
  }

  async init(): Promise<void> {
    await this.stream.init();
  }

  // -------------------------------------------------------------------------------------------------
  // Reading

  /** Events by id (from the cache or the database); missing ids are absent from the result. */
  async getPdus(ids: string[]): Promise<Map<string, IdentifiedPdu>> {
    const out = new Map<string, IdentifiedPdu>();
    const missing: string[] = [];
    for (const id of ids) {
      const e = this.events.touch(id);
      if (e) out.set(id, e);
      else missing.push(id);
    }
    if (missing.length > 0) {
      for (const s of await getEventsByIds(this.hs.db, missing)) {
        const e = { eventId: s.eventId, pdu: s.pdu };
        this.events.set(s.eventId, e);
        out.set(s.eventId, e);
      }
    }
    return out;
  }

  async getPdu(id: string): Promise<IdentifiedPdu | undefined> {
    return (await this.getPdus([id])).get(id);
  }

  /** The room's head (loaded on first use), or undefined for a room this server does not have. */
  async head(roomId: string): Promise<RoomHead | undefined> {
    const h = this.heads.touch(roomId);
    if (h) return h;
    const room = await getRoom(this.hs.db, roomId);
    if (!room || room.state_group === null) return undefined;
    const rv = getRoomVersion(room.room_version);
    if (!rv) return undefined;
    const extremities = await getForwardExtremities(this.hs.db, roomId);
    const g = await this.stateGroups.get(room.state_group);
    const head: RoomHead = { roomId, rv, extremities, stateGroup: room.state_group, stateGroupDepth: g.deltaDepth, state: g.state };
    this.heads.set(roomId, head);
    return head;
  }

  // -------------------------------------------------------------------------------------------------
  // Writing

  private async lock<T>(roomId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(roomId) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    this.locks.set(roomId, tail);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (this.locks.get(roomId) === tail) this.locks.delete(roomId);
    }
  }

  /**
   * Runs `fn` with the room locked. Events it appends are queued for persistence when it returns;
   * if it throws they are discarded and the room is as before. Throws M_NOT_FOUND for unknown rooms.
   */
  async withRoom<T>(roomId: string, fn: (ctx: RoomWriteContext) => Promise<T>): Promise<T> {
    const result = await this.lock(roomId, async () => {
      const head = await this.head(roomId);
      if (!head) throw new MatrixError(404, 'M_NOT_FOUND', 'Unknown room');
      return this.runInRoom(head, null, fn);
    });
    this.kick();
    return result;
  }

  /**
   * Creates a room: builds and authorises its m.room.create event (room id generated, or derived from
   * the event in v12), then runs `fn` to append the rest. Nothing is written if `fn` throws.
   */
  async createRoom<T>(rv: RoomVersion, create: EventDraft, fn: (ctx: RoomWriteContext) => Promise<T>): Promise<{ roomId: string; result: T }> {
    // Two identical create events (same sender, content and millisecond) would have the same id, and
    // so in v12 the same room id: on a clash the timestamp moves on by a millisecond.
    for (let attempt = 0; ; attempt++) {
      const now = this.hs.now() + attempt;
      const { roomId, event } = buildEvent({
        rv,
        roomId: rv.roomIdFromCreateEvent ? null : generateRoomId(this.hs.serverName),
        draft: create,
        prevEvents: [],
        authEvents: [],
        serverName: this.hs.serverName,
        key: this.hs.keys.current,
        now,
      });
      const auth = checkEventAuthWithAuthEvents(rv, event, []);
      if (!auth.allowed) throw new MatrixError(400, 'M_INVALID_ROOM_STATE', auth.reason);
      const result = await this.lock(roomId, async () => {
        if (this.heads.has(roomId) || this.pending.has(roomId) || (await getRoom(this.hs.db, roomId))) return CLASH;
        const state: StateMap<string> = new Map([[CREATE_KEY, event.eventId]]);
        const chain: ChainPosition = { chainId: event.eventId, seq: 1, reach: new Map() };
        const group = this.stateGroups.plan(event.eventId, roomId, null, null, 0, state);
        const head: RoomHead = { roomId, rv, extremities: [{ eventId: event.eventId, depth: event.pdu.depth }], stateGroup: group.groupId, stateGroupDepth: 0, state };
        const item: Omit<PendingItem, 'resolve' | 'reject'> = {
          roomId,
          event,
          json: JSON.stringify(event.pdu),
          stateGroupBefore: group.groupId,
          stateGroup: group.groupId,
          newGroup: group,
          chain,
          prevIds: [],
          authIds: [],
          roomStateGroup: group.groupId,
          extremities: [event.eventId],
          stateChange: [CREATE_KEY, event.eventId],
          newRoom: { roomVersion: rv.id, creator: create.sender, createdTs: now },
        };
        return { value: await this.runInRoom(head, item, fn) };
      });
      if (result === CLASH) {
        if (attempt < 20) continue;
        throw new MatrixError(400, 'M_ROOM_IN_USE', 'Room already exists');
      }
      this.kick();
      return { roomId, result: result.value };
    }
  }

  private async runInRoom<T>(
    startHead: RoomHead,
    first: Omit<PendingItem, 'resolve' | 'reject'> | null,
    fn: (ctx: RoomWriteContext) => Promise<T>,
  ): Promise<T> {
    const roomId = startHead.roomId;
    const rv = startHead.rv;
    let head = startHead;
    const items: PendingItem[] = [];
    const appended: AppendedEvent[] = [];
    const tipsUndo: Array<[string, number | undefined]> = [];
    let tips = this.chainTips.touch(roomId);
    if (!tips) this.chainTips.set(roomId, (tips = new Map()));
    const chainTips = tips;

    const enqueue = (base: Omit<PendingItem, 'resolve' | 'reject'>): AppendedEvent => {
      let resolve!: (p: number) => void;
      let reject!: (e: unknown) => void;
      const persisted = new Promise<number>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      // Callers that never await `persisted` must not cause unhandled rejections.
      persisted.catch(() => undefined);
      items.push({ ...base, resolve, reject });
      this.events.set(base.event.eventId, base.event);
      if (base.chain) this.authIndex.remember(base.event.eventId, base.chain);
      if (base.newGroup) this.stateGroups.remember(base.newGroup, head.state);
      const a = { eventId: base.event.eventId, event: base.event, persisted };
      appended.push(a);
      return a;
    };

    if (first) {
      chainTips.set(first.event.eventId, 1);
      tipsUndo.push([first.event.eventId, undefined]);
      enqueue(first);
    }

    const ctx: RoomWriteContext = {
      roomId,
      rv,
      stateIds: () => head.state,
      extremities: () => head.extremities,
      stateEvent: async (type, sk) => {
        const id = head.state.get(stateKey(type, sk));
        return id === undefined ? undefined : this.getPdu(id);
      },
      append: async (draft, opts = {}) => {
        // Auth events: selected from the current state, which is the state before the new event
        // since its prev_events are all the forward extremities.
        const wanted = authEventTypesFor(rv, draft).map(([t, k]) => stateKey(t, k));
        if (!wanted.includes(CREATE_KEY)) wanted.push(CREATE_KEY);
        const ids = wanted.map((k) => head.state.get(k)).filter((x): x is string => x !== undefined);
        const pdus = await this.getPdus(ids);
        const authState: StateMap<IdentifiedPdu> = new Map();
        for (const k of wanted) {
          const id = head.state.get(k);
          const e = id === undefined ? undefined : pdus.get(id);
          if (e) authState.set(k, e);
        }
        const authIds = selectAuthEvents(rv, draft, authState);
        const authEvents = authIds.map((id) => pdus.get(id)!);
        const prevRefs = [...head.extremities].sort((a, b) => b.depth - a.depth).slice(0, MAX_PREV_EVENTS);
        const prevMap = await this.getPdus(prevRefs.map((p) => p.eventId));
        const prevEvents = prevRefs.map((p) => prevMap.get(p.eventId)).filter((e): e is IdentifiedPdu => e !== undefined);
        if (prevEvents.length !== prevRefs.length) throw new Error(`room ${roomId}: forward extremity missing`);
        checkDraftLimits(draft);
        const { event } = buildEvent({ rv, roomId, draft, prevEvents, authEvents, serverName: this.hs.serverName, key: this.hs.keys.current, now: this.hs.now() });
        const json = JSON.stringify(event.pdu);
        // client-server-api "Size limits": the whole federation-format event must fit in 65536 bytes.
        if (Buffer.byteLength(json) > MAX_PDU_BYTES) throw new MatrixError(413, 'M_TOO_LARGE', 'Event too large');

        // Authorisation against the auth events. Locally the state before the event is the current
        // state and the auth events are its relevant part, so this is also the "current state" check
        // (server-server-api "Checks performed on receipt of a PDU", steps 5 and 6).
        const result = checkEventAuthWithAuthEvents(rv, event, authEvents, {
          createEvent: authState.get(CREATE_KEY),
          isSignedBy: (_e, server) => server === this.hs.serverName,
        });
        if (!result.allowed) throw forbidden(result.reason);

        const prevIds = prevEvents.map((e) => e.eventId);
        const extremities = [...head.extremities.filter((x) => !prevIds.includes(x.eventId)), { eventId: event.eventId, depth: event.pdu.depth }];
        let stateGroup = head.stateGroup;
        let newGroup: NewStateGroup | null = null;
        let chain: ChainPosition | null = null;
        let stateChange: [StateKey, string] | null = null;
        let nextState = head.state;
        let groupDepth = head.stateGroupDepth;
        if (isStateEvent(event.pdu)) {
          const key = stateKey(event.pdu.type, event.pdu.state_key!);
          nextState = new Map(head.state);
          nextState.set(key, event.eventId);
          newGroup = this.stateGroups.plan(event.eventId, roomId, head.stateGroup, head.state, head.stateGroupDepth, nextState);
          stateGroup = newGroup.groupId;
          groupDepth = newGroup.deltaDepth;
          stateChange = [key, event.eventId];
          chain = await this.chainPosition(event, authEvents, chainTips, tipsUndo);
        }
        const before = head.stateGroup;
        head = { roomId, rv, extremities, stateGroup, stateGroupDepth: groupDepth, state: nextState };
        let txn: EventTxnIdsTable | undefined;
        if (opts.txn) txn = { ...opts.txn, room_id: roomId, event_id: event.eventId, created_ts: this.hs.now() };
        return enqueue({
          roomId,
          event,
          json,
          stateGroupBefore: before,
          stateGroup,
          newGroup,
          chain,
          prevIds,
          authIds,
          roomStateGroup: stateGroup,
          extremities: extremities.map((x) => x.eventId),
          stateChange,
          ...(txn ? { txn } : {}),
        });
      },
    };

    try {
      const result = await fn(ctx);
      if (items.length > 0) {
        this.heads.set(roomId, head);
        this.startPush(items);
        let q = this.pending.get(roomId);
        if (!q) this.pending.set(roomId, (q = []));
        q.push(...items);
        this.setTail(roomId, appended.at(-1)!.persisted);
      }
      return result;
    } catch (err) {
      // Discard: the head was never published; undo chain tips and drop the unpersisted events from caches.
      for (let i = tipsUndo.length - 1; i >= 0; i--) {
        const [c, v] = tipsUndo[i]!;
        if (v === undefined) chainTips.delete(c);
        else chainTips.set(c, v);
      }
      for (const it of items) this.dropFromCaches(it);
      throw err;
    }
  }

  private dropFromCaches(it: PendingItem): void {
    this.events.delete(it.event.eventId);
    this.authIndex.forget(it.event.eventId);
    if (it.newGroup) this.stateGroups.forget(it.newGroup.groupId);
    for (const g of it.incoming?.extraGroups ?? []) this.stateGroups.forget(g.groupId);
  }

  private setTail(roomId: string, p: Promise<number>): void {
    this.tails.set(roomId, p);
    const clear = () => {
      if (this.tails.get(roomId) === p) this.tails.delete(roomId);
    };
    p.then(clear, clear);
  }

  /** Waits (under the room's lock) until every queued event of the room is committed. */
  private async drain(roomId: string): Promise<void> {
    const tail = this.tails.get(roomId);
    if (!tail) return;
    this.kick();
    try {
      await tail;
    } catch {
      throw new MatrixError(500, 'M_UNKNOWN', 'An earlier event in this room failed to persist');
    }
  }

  /** The auth-relevant part of `state` for `event` (its auth event types and the create event). */
  private async authStateFor(rv: RoomVersion, event: IdentifiedPdu, state: StateMap<string>): Promise<StateMap<IdentifiedPdu>> {
    const pdu = event.pdu;
    const draft: EventDraft = { type: pdu.type, sender: pdu.sender, content: pdu.content, ...(typeof pdu.state_key === 'string' ? { state_key: pdu.state_key } : {}) };
    const wanted = authEventTypesFor(rv, draft).map(([t, k]) => stateKey(t, k));
    if (!wanted.includes(CREATE_KEY)) wanted.push(CREATE_KEY);
    const ids = wanted.map((k) => state.get(k)).filter((x): x is string => x !== undefined);
    const pdus = await this.getPdus(ids);
    const out: StateMap<IdentifiedPdu> = new Map();
    for (const k of wanted) {
      const id = state.get(k);
      const e = id === undefined ? undefined : pdus.get(id);
      if (e) out.set(k, e);
    }
    return out;
  }

  /**
   * Persists an event received from another server: server-server-api "Checks performed on receipt of
   * a PDU", steps 4–6 (the caller has done 1–3: format, signatures, hashes, and passes `isSignedBy` /
   * `verifySignature` for the rules that look at signatures). All its prev_events and auth_events must
   * be stored already (MissingEventsError otherwise).
   *
   * - Fails auth against its auth events (4) or against the state before it (5): rejected. Kept with
   *   its reason; changes no state; never a forward extremity; never served.
   * - Passes those but fails against the current state (6): soft-failed. Kept with its own state (so it
   *   takes part in state resolution if later events cite it), but not a forward extremity, no change
   *   to the current state, never served.
   * - Otherwise accepted: a forward extremity; the current state is the resolution of the states at
   *   all forward extremities (the state after it when it extends every extremity).
   */
  async persistIncoming(
    roomId: string,
    event: IdentifiedPdu,
    opts: { isSignedBy?: (event: IdentifiedPdu, serverName: string) => boolean; verifySignature?: (signed: JsonObject, publicKey: string) => boolean } = {},
  ): Promise<IncomingResult> {
    const out = await this.lock(roomId, () =>
      this.checkIncoming(roomId, event, opts).catch((err: unknown) => {
        if (!this.pending.get(roomId)?.some((it) => it.event.eventId === event.eventId)) {
          this.events.delete(event.eventId);
          this.authIndex.forget(event.eventId);
        }
        throw err;
      }),
    );
    this.kick();
    return out;
  }

  private async checkIncoming(
    roomId: string,
    event: IdentifiedPdu,
    opts: { isSignedBy?: (event: IdentifiedPdu, serverName: string) => boolean; verifySignature?: (signed: JsonObject, publicKey: string) => boolean },
  ): Promise<IncomingResult> {
    {
      if (!(await this.head(roomId))) throw new MatrixError(404, 'M_NOT_FOUND', 'Unknown room');
      await this.drain(roomId);
      const head = await this.head(roomId);
      if (!head) throw new MatrixError(404, 'M_NOT_FOUND', 'Unknown room');
      const rv = head.rv;
      const pdu = event.pdu;
      if (pdu.type === 'm.room.create') throw new MatrixError(400, 'M_BAD_STATE', 'A room has one m.room.create event');
      if (!rv.roomIdFromCreateEvent || pdu.room_id !== undefined) {
        if (pdu.room_id !== roomId) throw new MatrixError(400, 'M_BAD_STATE', 'The event belongs to another room');
      }
      const [existing] = await getEventsByIds(this.hs.db, [event.eventId]);
      if (existing) {
        const outcome: IncomingOutcome = existing.rejectedReason !== null ? 'rejected' : existing.softFailed ? 'soft_failed' : 'accepted';
        return { eventId: event.eventId, outcome, duplicate: true, persisted: Promise.resolve(existing.streamOrdering), ...(existing.rejectedReason !== null ? { reason: existing.rejectedReason } : {}) };
      }
      const prevIds = [...new Set(refIds(pdu.prev_events))];
      const authIds = [...new Set(refIds(pdu.auth_events))];
      const rows = new Map((await getEventsByIds(this.hs.db, [...new Set([...prevIds, ...authIds])])).map((r) => [r.eventId, r]));
      const missing = [...prevIds, ...authIds].filter((id) => !rows.has(id) || (prevIds.includes(id) && rows.get(id)!.stateGroup === null));
      if (prevIds.length === 0) throw new MatrixError(400, 'M_BAD_STATE', 'The event has no prev_events');
      if (missing.length > 0) throw new MissingEventsError([...new Set(missing)]);
      const authEvents = authIds.map((id) => ({ eventId: id, pdu: rows.get(id)!.pdu }));
      const createEvent = await this.getPdu(head.state.get(CREATE_KEY)!);
      let rejectedReason: string | null = null;
      let softFailReason: string | undefined;

      // 4. Against its auth events.
      const r4 = checkEventAuthWithAuthEvents(rv, event, authEvents, {
        ...opts,
        ...(createEvent ? { createEvent } : {}),
        isRejected: (id) => rows.get(id)?.rejectedReason != null,
      });
      if (!r4.allowed) rejectedReason = r4.reason;

      // 5. Against the state before it: the state after its prev event, or the resolution of several.
      const firstGroup = rows.get(prevIds[0]!)!.stateGroup!;
      const first = await this.stateGroups.get(firstGroup);
      const extraGroups: NewStateGroup[] = [];
      let before = first.state;
      let beforeGroup = firstGroup;
      let beforeDepth = first.deltaDepth;
      if (prevIds.length > 1) {
        const sets = [first.state];
        for (const id of prevIds.slice(1)) sets.push((await this.stateGroups.get(rows.get(id)!.stateGroup!)).state);
        before = await this.resolve(rv, sets);
        const g = this.stateGroups.plan(`${event.eventId}/before`, roomId, firstGroup, first.state, first.deltaDepth, before);
        extraGroups.push(g);
        beforeGroup = g.groupId;
        beforeDepth = g.deltaDepth;
      }
      if (rejectedReason === null) {
        const r5 = checkEventAuth(rv, event, await this.authStateFor(rv, event, before), opts);
        if (!r5.allowed) rejectedReason = r5.reason;
      }
      // 6. Against the current state.
      if (rejectedReason === null) {
        const r6 = checkEventAuth(rv, event, await this.authStateFor(rv, event, head.state), opts);
        if (!r6.allowed) softFailReason = r6.reason;
      }

      let after = before;
      let afterGroup = beforeGroup;
      let afterDepth = beforeDepth;
      let newGroup: NewStateGroup | null = null;
      let chain: ChainPosition | null = null;
      if (rejectedReason === null && isStateEvent(pdu)) {
        after = new Map(before);
        after.set(stateKey(pdu.type, pdu.state_key!), event.eventId);
        newGroup = this.stateGroups.plan(event.eventId, roomId, beforeGroup, before, beforeDepth, after);
        afterGroup = newGroup.groupId;
        afterDepth = newGroup.deltaDepth;
        let tips = this.chainTips.touch(roomId);
        if (!tips) this.chainTips.set(roomId, (tips = new Map()));
        chain = await this.chainPosition(event, authEvents, tips, []);
      }
      // Resolving a fork below reads the event itself (and its auth chain position) through the caches.
      this.events.set(event.eventId, event);
      if (chain) this.authIndex.remember(event.eventId, chain);

      let nextHead: RoomHead = head;
      const stateChanges: Array<[StateKey, string | null]> = [];
      const memberships: Array<{ userId: string; membership: string; eventId: string; sender: string }> = [];
      if (rejectedReason === null && softFailReason === undefined) {
        const extremities = [...head.extremities.filter((x) => !prevIds.includes(x.eventId)), { eventId: event.eventId, depth: pdu.depth }];
        let current = after;
        let currentGroup = afterGroup;
        let currentDepth = afterDepth;
        if (extremities.length > 1) {
          const others = extremities.filter((x) => x.eventId !== event.eventId).map((x) => x.eventId);
          const sets = [after];
          for (const r of await getEventsByIds(this.hs.db, others)) if (r.stateGroup) sets.push((await this.stateGroups.get(r.stateGroup)).state);
          current = await this.resolve(rv, sets);
          if (!sameState(current, after)) {
            const g = this.stateGroups.plan(`${event.eventId}/current`, roomId, afterGroup, after, afterDepth, current);
            extraGroups.push(g);
            currentGroup = g.groupId;
            currentDepth = g.deltaDepth;
          } else current = after;
        }
        for (const [k, id] of current) if (head.state.get(k) !== id) stateChanges.push([k, id]);
        for (const k of head.state.keys()) if (!current.has(k)) stateChanges.push([k, null]);
        const memberIds = stateChanges.filter(([k, id]) => id !== null && k.startsWith('m.room.member\u0000')).map(([, id]) => id!);
        const memberPdus = await this.getPdus(memberIds);
        for (const id of memberIds) {
          const m = id === event.eventId ? event : memberPdus.get(id);
          if (!m || typeof m.pdu.state_key !== 'string') continue;
          const membership = typeof m.pdu.content['membership'] === 'string' ? (m.pdu.content['membership'] as string) : 'leave';
          memberships.push({ userId: m.pdu.state_key, membership, eventId: id, sender: m.pdu.sender });
        }
        nextHead = { roomId, rv, extremities, stateGroup: currentGroup, stateGroupDepth: currentDepth, state: current };
      }

      let resolve!: (p: number) => void;
      let reject!: (e: unknown) => void;
      const persisted = new Promise<number>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      persisted.catch(() => undefined);
      const item: PendingItem = {
        roomId,
        event,
        json: JSON.stringify(pdu),
        stateGroupBefore: beforeGroup,
        stateGroup: afterGroup,
        newGroup,
        chain,
        prevIds,
        authIds,
        roomStateGroup: nextHead.stateGroup,
        extremities: nextHead.extremities.map((x) => x.eventId),
        stateChange: null,
        incoming: { rejectedReason, softFailed: softFailReason !== undefined, stateChanges, memberships, extraGroups },
        resolve,
        reject,
      };
      for (const g of extraGroups) this.stateGroups.remember(g, g.groupId.endsWith('/before') ? before : nextHead.state);
      if (newGroup) this.stateGroups.remember(newGroup, after);
      this.heads.set(roomId, nextHead);
      this.startPush([item]);
      let q = this.pending.get(roomId);
      if (!q) this.pending.set(roomId, (q = []));
      q.push(item);
      this.setTail(roomId, persisted);
      const outcome: IncomingOutcome = rejectedReason !== null ? 'rejected' : softFailReason !== undefined ? 'soft_failed' : 'accepted';
      const reason = rejectedReason ?? softFailReason;
      return { eventId: event.eventId, outcome, persisted, ...(reason !== undefined ? { reason } : {}) };
    }
  }

  private async chainPosition(
    event: IdentifiedPdu,
    authEvents: IdentifiedPdu[],
    tips: Map<string, number>,
    undo: Array<[string, number | undefined]>,
  ): Promise<ChainPosition | null> {
    const positions = await this.authIndex.positions(authEvents.map((a) => a.eventId));
    const authPositions: AuthEventPosition[] = [];
    for (const a of authEvents) {
      const p = positions.get(a.eventId);
      // An auth event without a position (an outlier) makes the index unusable for this event;
      // auth chain difference then falls back to walking auth events.
      if (!p) return null;
      authPositions.push({ ...p, type: a.pdu.type, stateKey: a.pdu.state_key ?? '' });
    }
    const same = authPositions.find((a) => a.type === event.pdu.type && a.stateKey === event.pdu.state_key);
    if (same && !tips.has(same.chainId)) tips.set(same.chainId, await this.authIndex.chainTip(same.chainId));
    const pos = assignChainPosition(event.eventId, event.pdu.type, event.pdu.state_key!, authPositions, (c, s) => (tips.get(c) ?? 0) === s);
    undo.push([pos.chainId, tips.get(pos.chainId)]);
    tips.set(pos.chainId, pos.seq);
    return pos;
  }

  /**
   * Starts flushing if a room has queued events and fewer than MAX_FLUSHES flushes run. A flush takes
   * the queued events of every room that has no batch in flight and commits them in one transaction:
   * under load one commit (one WAL flush) carries many rooms' events. A room never has two batches in
   * flight, so its events commit in order.
   */
  private kick(): void {
    while (this.activeFlushes < MAX_FLUSHES && this.hasReadyRoom()) {
      this.activeFlushes++;
      void this.flushLoop();
    }
  }

  private hasReadyRoom(): boolean {
    for (const [roomId, q] of this.pending) if (q.length > 0 && !this.inFlight.has(roomId)) return true;
    return false;
  }

  private takeReady(): Array<[string, PendingItem[]]> {
    const out: Array<[string, PendingItem[]]> = [];
    let budget = MAX_BATCH_EVENTS;
    for (const [roomId, q] of this.pending) {
      if (budget <= 0) break;
      if (q.length === 0 || this.inFlight.has(roomId)) continue;
      const items = q.splice(0, budget);
      budget -= items.length;
      if (q.length === 0) this.pending.delete(roomId);
      this.inFlight.add(roomId);
      out.push([roomId, items]);
    }
    return out;
  }

  private async flushLoop(): Promise<void> {
    try {
      for (;;) {
        const groups = this.takeReady();
        if (groups.length === 0) break;
        try {
          try {
            await this.persist(groups);
          } catch (err) {
            if (groups.length === 1) throw err;
            // One room's trouble must not fail the others: retry room by room.
            for (const g of groups) {
              try {
                await this.persist([g]);
              } catch (e) {
                await this.failRoom(g[0], g[1], e);
              }
            }
          }
        } catch (err) {
          await this.failRoom(groups[0]![0], groups[0]![1], err);
        } finally {
          for (const [roomId] of groups) this.inFlight.delete(roomId);
        }
      }
    } finally {
      this.activeFlushes--;
      this.kick();
    }
  }

  /** A batch failed to persist: its events and every later queued event of the room fail; the head is reloaded. */
  private async failRoom(roomId: string, items: PendingItem[], err: unknown): Promise<void> {
    this.hs.logger.error({ err, roomId }, 'persisting events failed');
    for (const it of items) {
      this.dropFromCaches(it);
      it.reject(err);
    }
    await this.lock(roomId, async () => {
      const rest = this.pending.get(roomId)?.splice(0) ?? [];
      this.pending.delete(roomId);
      for (const it of rest) {
        this.dropFromCaches(it);
        it.reject(new MatrixError(500, 'M_UNKNOWN', 'An earlier event in this room failed to persist'));
      }
      this.heads.delete(roomId);
      this.chainTips.delete(roomId);
    });
  }

  /** Commits several rooms' batches in one transaction; throws (positions released) on failure. */
  private async persist(groups: Array<[string, PendingItem[]]>): Promise<void> {
    const total = groups.reduce((n, [, items]) => n + items.length, 0);
    const positions = await this.stream.allocate(total);
    const membershipOf = new Map<string, string>();
    const batches: PersistBatch[] = [];
    const all: Array<{ roomId: string; item: PendingItem; position: number }> = [];
    let p = 0;
    for (const [roomId, items] of groups) {
      const last = items.at(-1)!;
      const memberships: PersistBatch['memberships'] = [];
      const redactions: PersistBatch['redactions'] = [];
      const events: PersistBatch['events'] = [];
      for (const it of items) {
        const position = positions[p++]!;
        all.push({ roomId, item: it, position });
        const pdu = it.event.pdu;
        if (it.incoming) {
          for (const m of it.incoming.memberships) {
            membershipOf.set(m.eventId, m.membership);
            memberships.push({ ...m, streamOrdering: position });
          }
        } else if (pdu.type === 'm.room.member' && typeof pdu.state_key === 'string') {
          const m = typeof pdu.content['membership'] === 'string' ? (pdu.content['membership'] as string) : 'leave';
          membershipOf.set(it.event.eventId, m);
          memberships.push({ userId: pdu.state_key, membership: m, eventId: it.event.eventId, sender: pdu.sender, streamOrdering: position });
        }
        const target = redactsOf(pdu);
        // Rejected and soft-failed redactions redact nothing.
        if (target && isAccepted(it)) redactions.push({ redactionId: it.event.eventId, targetId: target });
        events.push({
          eventId: it.event.eventId,
          pdu,
          json: it.json,
          streamOrdering: position,
          stateGroupBefore: it.stateGroupBefore,
          stateGroup: it.stateGroup,
          prevEventIds: it.prevIds,
          authEventIds: it.authIds,
          authChain: it.chain ? { chainId: it.chain.chainId, seq: it.chain.seq } : null,
          rejectedReason: it.incoming?.rejectedReason ?? null,
          softFailed: it.incoming?.softFailed ?? false,
        });
      }
      const newRoom = items.find((it) => it.newRoom)?.newRoom;
      batches.push({
        roomId,
        ...(newRoom ? { newRoom } : {}),
        events,
        stateGroup: last.roomStateGroup,
        extremities: last.extremities,
        stateChanges: items.flatMap((it): Array<[StateKey, string | null]> => it.incoming?.stateChanges ?? (it.stateChange ? [it.stateChange] : [])),
        memberships,
        redactions,
        txnIds: items.flatMap((it) => (it.txn ? [it.txn] : [])),
      });
    }
    // Rejected and soft-failed events are never relayed to clients (server-server-api "Soft failure").
    const persisted: PersistedEvent[] = all
      .filter((a) => isAccepted(a.item))
      .map((a) => ({ roomId: a.roomId, eventId: a.item.event.eventId, event: a.item.event, streamOrdering: a.position }));
    const pushActions = (await Promise.all(all.map((a) => a.item.push ?? []))).flat();
    try {
      const items = groups.flatMap(([, its]) => its);
      const newGroups = items.flatMap((it) => [...(it.incoming?.extraGroups ?? []), ...(it.newGroup ? [it.newGroup] : [])]);
      const chains = items.flatMap((it) => (it.chain ? [{ eventId: it.event.eventId, position: it.chain }] : []));
      if (newGroups.length === 0 && chains.length === 0 && !this.stream.multiWriter && isSingleStatementBatch(batches)) {
        // Messages only: one statement, atomic without BEGIN/COMMIT round trips.
        await writeBatches(this.hs.db, batches, (id) => membershipOf.get(id) ?? null, pushActions);
      } else {
        await this.hs.db.transaction().execute(async (tx) => {
          await this.stateGroups.insert(tx, newGroups);
          await this.authIndex.insert(tx, chains);
          await writeBatches(tx, batches, (id) => membershipOf.get(id) ?? null, pushActions);
          await this.stream.clearInFlight(tx, positions);
        });
      }
    } catch (err) {
      await this.stream.finished(positions, false);
      throw err;
    }
    await this.stream.finished(positions, true);
    for (const { item, position } of all) item.resolve(position);
    for (const [roomId] of groups) {
      const ofRoom = persisted.filter((p) => p.roomId === roomId);
      if (ofRoom.length > 0) this.publish(roomId, ofRoom.at(-1)!.streamOrdering, ofRoom);
    }
  }

  /**
   * Starts the evaluation of the push actions of queued items (pushActionsOf), against the room's state
   * as they are queued. Rejected and soft-failed events notify no one. An evaluation that fails is
   * logged and the events persist without push actions: one malformed event or rule must not stop a room.
   */
  private startPush(items: PendingItem[]): void {
    const evaluate = this.pushActionsOf;
    if (!evaluate) return;
    const accepted = items.filter(isAccepted);
    if (accepted.length === 0) return;
    const p = evaluate(accepted.map((it) => ({ roomId: it.roomId, eventId: it.event.eventId, event: it.event }))).catch((err: unknown): PushActionRow[] => {
      this.hs.logger.warn({ err }, 'push rule evaluation failed; events persisted without push actions');
      return [];
    });
    // Each item's rows go with its own batch (a flush may take part of the queue).
    if (accepted.length === 1) accepted[0]!.push = p;
    else {
      const byEvent = p.then((rows) => Map.groupBy(rows, (r) => r.eventId));
      for (const it of accepted) it.push = byEvent.then((m) => m.get(it.event.eventId) ?? []);
    }
  }

  private publish(roomId: string, position: number, persisted: PersistedEvent[]): void {
    const log = (err: unknown) => this.hs.logger.warn({ err, roomId }, 'notifying about persisted events failed');
    this.hs.bus.publish('room:' + roomId, { stream: 'events', position }).catch(log);
    // Membership changes also wake their target (an invitee is not yet listening on the room).
    const targets = new Set<string>();
    for (const p of persisted) {
      if (p.event.pdu.type === 'm.room.member' && typeof p.event.pdu.state_key === 'string') targets.add(p.event.pdu.state_key);
    }
    for (const t of targets) this.hs.bus.publish('user:' + t, { stream: 'events', position, room_id: roomId }).catch(log);
    for (const l of this.persistListeners) {
      try {
        void Promise.resolve(l(persisted)).catch(log);
      } catch (err) {
        log(err);
      }
    }
  }

  /** State resolution of several state sets (room state at a fork), using the auth chain index. */
  async resolve(rv: RoomVersion, stateSets: StateMap<string>[]): Promise<StateMap<string>> {
    return resolveState({
      roomVersion: rv,
      stateSets,
      fetchEvent: (id) => this.getPdu(id),
      fetchEvents: (ids) => this.getPdus(ids),
      authChainDifference: async (sets) => (await this.authIndex.authChainDifference(sets)) ?? this.walkAuthChainDifference(sets),
    });
  }

  private walkAuthChainDifference(sets: StateMap<string>[]): Promise<Set<string>> {
    return authChainDifference(sets, (id) => this.getPdu(id));
  }

  /** Ids referenced by an event's prev_events. */
  static prevIds(e: IdentifiedPdu): string[] {
    return refIds(e.pdu.prev_events);
  }
}
