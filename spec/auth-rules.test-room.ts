// Test helper (not a test file): builds a room's events in memory for the auth-rule tests.

import assert from 'node:assert/strict';
import type { IdentifiedPdu, JsonObject, Pdu, StateMap } from './events.ts';
import { stateKey } from './events.ts';
import type { AuthOptions, AuthResult } from './auth-rules.ts';
import { checkEventAuth, checkEventAuthWithAuthEvents } from './auth-rules.ts';
import { selectAuthEvents } from './auth-events.ts';
import type { RoomVersion } from './room-versions.ts';
import { getRoomVersion } from './room-versions.ts';

export const ALL_VERSIONS = ['1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11', '12'] as const;
export const versionsFrom = (n: number): string[] => ALL_VERSIONS.filter((v) => Number(v) >= n);
export const versionsBefore = (n: number): string[] => ALL_VERSIONS.filter((v) => Number(v) < n);

export const ALICE = '@alice:example.org';
export const BOB = '@bob:example.org';
export const CAROL = '@carol:example.org';
export const DAVE = '@dave:other.example';

export interface RoomOptions {
  creator?: string;
  /** Extra m.room.create content (merged over the version's defaults). */
  createContent?: JsonObject;
  /** m.room.power_levels content; null for no power-levels event. Default: creator at 100 (v12: {}). */
  powerLevels?: JsonObject | null;
  /** Join rule; null for no m.room.join_rules event. Default 'invite'. */
  joinRule?: string | null;
}

export interface EventSpec {
  type: string;
  sender: string;
  state_key?: string;
  content?: JsonObject;
  prev_events?: string[];
  redacts?: string;
  room_id?: string;
  auth_events?: string[];
}

/** A room being built: its events, current state, and a way to check candidate events. */
export class TestRoom {
  readonly rv: RoomVersion;
  readonly roomId: string;
  readonly creator: string;
  readonly events = new Map<string, IdentifiedPdu>();
  readonly state: StateMap<IdentifiedPdu> = new Map();
  readonly create: IdentifiedPdu;
  private n = 0;
  private last: string[] = [];

  constructor(version: string, opts: RoomOptions = {}) {
    const rv = getRoomVersion(version);
    if (rv === undefined) throw new Error(`unknown room version ${version}`);
    this.rv = rv;
    this.creator = opts.creator ?? ALICE;
    const domain = this.creator.slice(this.creator.indexOf(':') + 1);
    const createContent: JsonObject = { room_version: version, ...(rv.implicitRoomCreator ? {} : { creator: this.creator }) };
    Object.assign(createContent, opts.createContent ?? {});
    const createPdu: Pdu = {
      type: 'm.room.create',
      state_key: '',
      sender: this.creator,
      content: createContent,
      prev_events: [],
      auth_events: [],
      origin_server_ts: 0,
      depth: 1,
    };
    if (rv.roomIdFromCreateEvent) {
      const createId = '$createEventReferenceHash';
      this.roomId = '!createEventReferenceHash';
      this.create = { eventId: createId, pdu: createPdu };
    } else {
      this.roomId = `!room:${domain}`;
      createPdu.room_id = this.roomId;
      this.create = { eventId: this.nextId(), pdu: createPdu };
    }
    this.apply(this.create);
    this.send({ type: 'm.room.member', sender: this.creator, state_key: this.creator, content: { membership: 'join' } });
    const pl =
      opts.powerLevels === undefined ? (rv.privilegedCreators ? {} : { users: { [this.creator]: 100 } }) : opts.powerLevels;
    if (pl !== null) this.send({ type: 'm.room.power_levels', sender: this.creator, state_key: '', content: pl });
    const jr = opts.joinRule === undefined ? 'invite' : opts.joinRule;
    if (jr !== null) this.send({ type: 'm.room.join_rules', sender: this.creator, state_key: '', content: { join_rule: jr } });
  }

  private nextId(): string {
    this.n += 1;
    // v1/v2 event ids carry the server name; the others are opaque here.
    return this.rv.eventIdFormat === 'v1' ? `$e${this.n}:example.org` : `$e${this.n}`;
  }

  /** Builds an event on top of the current state (auth events chosen by the selection algorithm). */
  make(spec: EventSpec, eventId?: string): IdentifiedPdu {
    const content = spec.content ?? {};
    const base = { type: spec.type, sender: spec.sender, content, ...(spec.state_key === undefined ? {} : { state_key: spec.state_key }) };
    const pdu: Pdu = {
      ...base,
      room_id: spec.room_id ?? this.roomId,
      prev_events: spec.prev_events ?? [...this.last],
      auth_events: spec.auth_events ?? selectAuthEvents(this.rv, base, this.state),
      origin_server_ts: this.n,
      depth: this.n + 1,
    };
    if (spec.redacts !== undefined) pdu.redacts = spec.redacts;
    return { eventId: eventId ?? this.nextId(), pdu };
  }

  /** Checks an event against the current state. */
  check(ev: IdentifiedPdu, options?: AuthOptions): AuthResult {
    return checkEventAuth(this.rv, ev, this.state, options);
  }

  /** Checks an event against its own auth events (the check on receipt of a PDU). */
  checkAgainstAuthEvents(ev: IdentifiedPdu, options?: AuthOptions): AuthResult {
    const auth = ev.pdu.auth_events.map((id) => {
      const e = this.events.get(typeof id === 'string' ? id : id[0]);
      if (e === undefined) throw new Error(`unknown auth event ${String(id)}`);
      return e;
    });
    return checkEventAuthWithAuthEvents(this.rv, ev, auth, { ...options, createEvent: this.create });
  }

  /** Shorthand: build and check against the current state. */
  try(spec: EventSpec, options?: AuthOptions): AuthResult {
    return this.check(this.make(spec), options);
  }

  /** Builds, asserts allowed (against state and auth events), and applies an event. */
  send(spec: EventSpec, options?: AuthOptions): IdentifiedPdu {
    const ev = this.make(spec);
    if (ev.pdu.type !== 'm.room.create' || this.events.size > 0) {
      assert.deepEqual(this.check(ev, options), { allowed: true }, `${spec.type} from ${spec.sender} should be allowed`);
      assert.deepEqual(this.checkAgainstAuthEvents(ev, options), { allowed: true }, `${spec.type} should pass against its auth events`);
    }
    this.apply(ev);
    return ev;
  }

  /** Adds an event to the room without checks (to set up states the rules would not produce). */
  apply(ev: IdentifiedPdu): void {
    this.events.set(ev.eventId, ev);
    if (typeof ev.pdu.state_key === 'string') this.state.set(stateKey(ev.pdu.type, ev.pdu.state_key), ev);
    this.last = [ev.eventId];
  }

  /** Sets a membership directly (no checks). */
  force(userId: string, membership: string, sender: string = userId, extra: JsonObject = {}): IdentifiedPdu {
    const ev = this.make({ type: 'm.room.member', sender, state_key: userId, content: { membership, ...extra } });
    this.apply(ev);
    return ev;
  }

  join(userId: string): IdentifiedPdu {
    return this.send({ type: 'm.room.member', sender: userId, state_key: userId, content: { membership: 'join' } });
  }

  member(sender: string, target: string, membership: string, extra: JsonObject = {}): EventSpec {
    return { type: 'm.room.member', sender, state_key: target, content: { membership, ...extra } };
  }

  setPowerLevels(content: JsonObject): IdentifiedPdu {
    const ev = this.make({ type: 'm.room.power_levels', sender: this.creator, state_key: '', content });
    this.apply(ev);
    return ev;
  }

  setJoinRule(content: JsonObject): IdentifiedPdu {
    const ev = this.make({ type: 'm.room.join_rules', sender: this.creator, state_key: '', content });
    this.apply(ev);
    return ev;
  }
}

/** Asserts a rejection with the given rule name. */
export function assertRejected(r: AuthResult, rule: string, msg?: string): void {
  assert.equal(r.allowed, false, `${msg ?? ''} expected rejection by ${rule}, got allowed`);
  if (!r.allowed) assert.equal(r.rule, rule, `${msg ?? ''} ${r.reason}`);
}

export function assertAllowed(r: AuthResult, msg?: string): void {
  assert.deepEqual(r, { allowed: true }, msg);
}
