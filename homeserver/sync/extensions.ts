// How services contribute to /sync without the sync engine knowing their tables.
//
// A sync token is a vector of stream positions (one per stream: room events, account data, receipts,
// typing, presence, to-device, device lists, …). Each stream below is owned by one service, which
// registers a SyncStream with the sync engine. The engine asks every stream for its current position
// when it builds `next_batch`, and for what changed between the client's `since` position and that one.
// A stream's position only ever covers writes that have committed (DESIGN.md §3), so a token never
// skips a write that commits later with a lower position.
//
// Wake-ups: after a write commits, the owning service publishes on the bus channel `user:<userId>`
// (something for one user) or `room:<roomId>` (something for a room's members) the message
// `{ stream: <name>, position }`; sync long-polls subscribe to those channels.
import type { RawBuilder } from 'kysely';
import type { Requester } from '../http/api.ts';

export interface SyncRequestInfo {
  requester: Requester;
  /** The stream's position from the client's `since` token; null on an initial sync (or an unknown stream). */
  since: number | null;
  /** The position this response covers up to (the value that goes into next_batch). */
  upTo: number;
  /** Rooms the user is joined to at `upTo` (ids), for streams that are room-scoped. */
  joinedRoomIds: readonly string[];
  fullState: boolean;
  /** The parsed filter (sync engine's type; `unknown` here to keep this file dependency-free). */
  filter: unknown;
}

/** Parts of a /sync response a stream may fill. Room-scoped parts are keyed by room id. */
export interface SyncContribution {
  /** Top-level keys: to_device, device_lists, device_one_time_keys_count, device_unused_fallback_key_types, presence, account_data … */
  top?: Record<string, unknown>;
  /** Per joined room: ephemeral events (typing, receipts) to append to rooms.join[roomId].ephemeral.events. */
  roomEphemeral?: Record<string, unknown[]>;
  /** Per joined room: account data events to append to rooms.join[roomId].account_data.events. */
  roomAccountData?: Record<string, unknown[]>;
}

export interface SyncStream {
  /** Short stable name; it is the key in the sync token. */
  readonly name: string;
  /** The highest position at which every write of this stream has committed. */
  currentPosition(requester: Requester): Promise<number>;
  /**
   * Set when the position is max(column) of a table, whoever asks (the ordered streams): the engine
   * then reads all such positions in one query instead of calling currentPosition for each.
   */
  readonly positionOf?: { table: string; column: string };
  /**
   * For a position that depends on the requester (to-device: the device's inbox): scalar subqueries the
   * engine reads in its one positions statement, and the position computed from their values (which
   * may still query, rarely). Used instead of currentPosition when set.
   */
  readonly positionColumns?: {
    columns(requester: Requester): Record<string, RawBuilder<unknown>>;
    position(requester: Requester, values: Record<string, unknown>): Promise<number>;
  };
  /**
   * Set when collect reports only changes in (since, upTo], so it has nothing to say when since ===
   * upTo: the engine then skips the call (an idle long-poll woken by another stream costs less).
   */
  readonly quietWhenUnchanged?: boolean;
  /** What changed in (since, upTo] for this requester (everything relevant when since is null). */
  collect(info: SyncRequestInfo): Promise<SyncContribution>;
  /** Called when a sync response with this stream's position was requested again with a newer token: acknowledgement (to-device deletes delivered messages). */
  acknowledge?(requester: Requester, position: number): Promise<void>;
}

/** The registry the sync service exposes as `hs.services.syncStreams`. */
export class SyncStreams {
  readonly streams: SyncStream[] = [];
  register(s: SyncStream): void {
    if (this.streams.some((x) => x.name === s.name)) throw new Error(`sync stream ${s.name} registered twice`);
    this.streams.push(s);
  }
}
