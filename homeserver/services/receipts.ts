// Receipts (modules/receipts.md) and read markers (modules/read_markers.md).
//
// A receipt row per (room, type, user, thread); thread '' is an unthreaded receipt. Rows move to a new
// position of the `receipts` stream when they change (sync/ordered-stream.ts). `m.read` is shared with
// the room; `m.read.private` only with its owner. Both move the user's read position, which unread
// counts are measured from (services/notifications.ts). Read receipts never move backwards: a receipt
// for an event older than the current one of the same (type, thread) is accepted and ignored.
import { sql } from 'kysely';
import { forbidden, invalidParam, notFound } from '../errors.ts';
import type { Homeserver } from '../homeserver.ts';
import type { Requester } from '../http/api.ts';
import { orderedPosition, orderedWrite, RECEIPTS_STREAM } from '../sync/ordered-stream.ts';
import type { SyncContribution, SyncRequestInfo, SyncStream } from '../sync/extensions.ts';

export interface ReceiptsTable {
  room_id: string;
  receipt_type: string;
  user_id: string;
  thread_id: string;
  event_id: string;
  event_stream_ordering: number;
  ts: number;
  stream_id: number;
}

declare module '../storage/schema.ts' {
  interface Tables {
    receipts: ReceiptsTable;
  }
}

declare module '../homeserver.ts' {
  interface Services {
    receipts: ReceiptService;
  }
}

export const RECEIPT_TYPES = ['m.read', 'm.read.private'] as const;
export type ReceiptType = (typeof RECEIPT_TYPES)[number];

export interface ReceiptRow {
  roomId: string;
  type: string;
  userId: string;
  threadId: string;
  eventId: string;
  ts: number;
}

/** One m.receipt event per room from receipt rows (modules/receipts.md "Events"). */
export function receiptEvent(rows: ReceiptRow[]): { type: 'm.receipt'; content: Record<string, Record<string, Record<string, Record<string, unknown>>>> } {
  const content: Record<string, Record<string, Record<string, Record<string, unknown>>>> = {};
  for (const r of rows) {
    const byType = (content[r.eventId] ??= {});
    const byUser = (byType[r.type] ??= {});
    byUser[r.userId] = r.threadId === '' ? { ts: r.ts } : { ts: r.ts, thread_id: r.threadId };
  }
  return { type: 'm.receipt', content };
}

export class ReceiptService {
  private readonly hs: Homeserver;
  constructor(hs: Homeserver) {
    this.hs = hs;
  }

  /** The event must be an accepted event of the room the requester is joined to; returns its stream position. */
  private async checkEvent(requester: Requester, roomId: string, eventId: string): Promise<number> {
    const rooms = this.hs.services.rooms;
    const m = await rooms.getMembership(roomId, requester.userId);
    if (m?.membership !== 'join') throw forbidden('You are not joined to this room');
    const e = await rooms.getEvent(eventId);
    if (!e || e.roomId !== roomId || e.rejectedReason !== null || e.outlier) throw notFound('Unknown event');
    return e.streamOrdering;
  }

  /**
   * POST /rooms/{roomId}/receipt/{type}/{eventId}. `threadId` is undefined for an unthreaded receipt,
   * 'main' or a thread root's event id otherwise (receipts.yaml).
   */
  async sendReceipt(requester: Requester, roomId: string, type: string, eventId: string, threadId: string | undefined): Promise<void> {
    if (threadId !== undefined && (threadId === '' || (threadId !== 'main' && !threadId.startsWith('$')))) {
      throw invalidParam('thread_id must be "main" or the event id of a thread root');
    }
    if (type === 'm.fully_read') {
      if (threadId !== undefined) throw invalidParam('thread_id cannot be used with m.fully_read');
      await this.setFullyRead(requester, roomId, eventId);
      return;
    }
    if (!(RECEIPT_TYPES as readonly string[]).includes(type)) throw invalidParam(`Unknown receipt type ${type}`);
    const ordering = await this.checkEvent(requester, roomId, eventId);
    await this.store(requester.userId, roomId, type, eventId, ordering, threadId ?? '');
  }

  /** POST /rooms/{roomId}/read_markers. */
  async setReadMarkers(requester: Requester, roomId: string, body: { fullyRead?: string; read?: string; readPrivate?: string }): Promise<void> {
    if (body.read !== undefined) await this.sendReceipt(requester, roomId, 'm.read', body.read, undefined);
    if (body.readPrivate !== undefined) await this.sendReceipt(requester, roomId, 'm.read.private', body.readPrivate, undefined);
    if (body.fullyRead !== undefined) await this.setFullyRead(requester, roomId, body.fullyRead);
  }

  /** m.fully_read is room account data the server manages (modules/read_markers.md). */
  async setFullyRead(requester: Requester, roomId: string, eventId: string): Promise<void> {
    await this.checkEvent(requester, roomId, eventId);
    await this.hs.services.accounts.accountData.set(requester.userId, roomId, 'm.fully_read', { event_id: eventId });
  }

  private async store(userId: string, roomId: string, type: string, eventId: string, ordering: number, threadId: string): Promise<void> {
    const ts = this.hs.now();
    const position = await orderedWrite(this.hs.db, RECEIPTS_STREAM, async (tx, next) => {
      const cur = await tx
        .selectFrom('receipts')
        .select(['event_id', 'event_stream_ordering'])
        .where('room_id', '=', roomId)
        .where('receipt_type', '=', type)
        .where('user_id', '=', userId)
        .where('thread_id', '=', threadId)
        .executeTakeFirst();
      if (cur && (cur.event_id === eventId || Number(cur.event_stream_ordering) > ordering)) return 0;
      const id = await next();
      await tx
        .insertInto('receipts')
        .values({ room_id: roomId, receipt_type: type, user_id: userId, thread_id: threadId, event_id: eventId, event_stream_ordering: ordering, ts, stream_id: id })
        .onConflict((oc) =>
          oc.columns(['room_id', 'receipt_type', 'user_id', 'thread_id']).doUpdateSet({ event_id: eventId, event_stream_ordering: ordering, ts, stream_id: id }),
        )
        .execute();
      return id;
    });
    if (position === 0) return;
    // Private receipts wake only their owner; others wake the room.
    const channel = type === 'm.read.private' ? `user:${userId}` : `room:${roomId}`;
    await this.hs.bus.publish(channel, { stream: 'receipts', position, room_id: roomId });
  }

  currentPosition(): Promise<number> {
    return orderedPosition(this.hs.db, RECEIPTS_STREAM);
  }

  /** Receipts visible to `userId` in `roomIds` with positions in (since, upTo] (since null: all). */
  async visibleReceipts(userId: string, roomIds: readonly string[], since: number | null, upTo: number): Promise<Map<string, ReceiptRow[]>> {
    const out = new Map<string, ReceiptRow[]>();
    if (roomIds.length === 0) return out;
    let q = this.hs.db
      .selectFrom('receipts')
      .select(['room_id', 'receipt_type', 'user_id', 'thread_id', 'event_id', 'ts'])
      .where(sql<boolean>`room_id = any(${[...roomIds]}::text[])`)
      .where('stream_id', '<=', upTo)
      .where((eb) => eb.or([eb('receipt_type', '=', 'm.read'), eb.and([eb('receipt_type', '=', 'm.read.private'), eb('user_id', '=', userId)])]));
    if (since !== null) q = q.where('stream_id', '>', since);
    for (const r of await q.execute()) {
      let list = out.get(r.room_id);
      if (!list) out.set(r.room_id, (list = []));
      list.push({ roomId: r.room_id, type: r.receipt_type, userId: r.user_id, threadId: r.thread_id, eventId: r.event_id, ts: Number(r.ts) });
    }
    return out;
  }

  /** The `receipts` sync stream: one m.receipt event per room in its ephemeral events. */
  syncStream(): SyncStream {
    return {
      name: 'receipts',
      currentPosition: () => this.currentPosition(),
      positionOf: { table: RECEIPTS_STREAM.table, column: RECEIPTS_STREAM.column },
      quietWhenUnchanged: true,
      collect: async (info: SyncRequestInfo): Promise<SyncContribution> => {
        const byRoom = await this.visibleReceipts(info.requester.userId, info.joinedRoomIds, info.since, info.upTo);
        if (byRoom.size === 0) return {};
        const roomEphemeral: Record<string, unknown[]> = {};
        for (const [roomId, rows] of byRoom) roomEphemeral[roomId] = [receiptEvent(rows)];
        return { roomEphemeral };
      },
    };
  }
}

export function initReceipts(hs: Homeserver): ReceiptService {
  const s = new ReceiptService(hs);
  hs.services.receipts = s;
  hs.services.syncStreams.register(s.syncStream());
  return s;
}

