// Send-to-device messaging (client-server-api modules/send_to_device.md): per-device inboxes,
// delivered in order through /sync's `to_device`, deleted once the client acknowledges them by syncing
// with a newer token.
//
// Positions are per device: each inbox row counts the messages ever written to it (last_seq), and a
// message's position is that count. A sync token belongs to one device, so the to_device entry of the
// token is a position in the requesting device's own inbox. Writers to one inbox serialise on its row
// (UPDATE ... RETURNING inside the transaction that inserts the message), so an inbox's messages commit
// in position order and last_seq is always a committed position; writers to different devices never
// wait for each other.
//
// Backlog policy: an inbox holds at most MAX_PENDING_PER_DEVICE undelivered messages; when a new
// message would exceed that, the OLDEST pending messages of that inbox are dropped. Why drop rather
// than refuse: PUT /sendToDevice has no way to report a per-device failure (its response is `{}`),
// and refusing the whole request would let one abandoned device of one recipient stop a sender from
// sharing room keys with everyone else. A device that has not synced for that long is the one that
// loses messages, and the newest messages (current room keys, current verification requests) are the
// ones it still gets. The cap keeps an abandoned device from growing the table without bound.
import { sql } from 'kysely';
import type { Homeserver } from '../homeserver.ts';
import type { Requester } from '../http/api.ts';
import type { SyncContribution, SyncRequestInfo, SyncStream } from '../sync/extensions.ts';
import { badJson, invalidParam } from '../errors.ts';
import { isValidUserId } from '../../spec/identifiers.ts';

export interface ToDeviceInboxTable {
  user_id: string;
  device_id: string;
  last_seq: number;
  acked_seq: number;
}
export interface ToDeviceMessagesTable {
  user_id: string;
  device_id: string;
  seq: number;
  sender: string;
  type: string;
  content: string;
}
export interface ToDeviceTxnsTable {
  user_id: string;
  device_id: string;
  txn_id: string;
  created_ts: number;
}

declare module '../storage/schema.ts' {
  interface Tables {
    to_device_inbox: ToDeviceInboxTable;
    to_device_messages: ToDeviceMessagesTable;
    to_device_txns: ToDeviceTxnsTable;
  }
}

/** Undelivered messages kept per device; older ones are dropped beyond this (see the policy above). */
export const MAX_PENDING_PER_DEVICE = 5000;
/** Messages per /sync response (send_to_device.md recommends 100). */
export const MAX_PER_SYNC = 100;
/** Transaction ids are remembered this long for idempotency. */
const TXN_TTL_MS = 24 * 3600_000;
/** Recipients (devices) in one request. */
const MAX_RECIPIENTS = 10_000;

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export interface ToDeviceEvent {
  sender: string;
  type: string;
  content: Record<string, unknown>;
}

export class ToDeviceService {
  private readonly hs: Homeserver;
  /** Tests lower this to see the backlog policy at work. */
  maxPendingPerDevice = MAX_PENDING_PER_DEVICE;
  /**
   * Per device (user\0device): a position its inbox's acked_seq is known to have reached. acked_seq
   * only ever grows (greatest(...) below), so a lower bound seen here stays true whatever other
   * processes do, and an acknowledgement at or below it has nothing to do: a long-poll re-syncing with
   * an unchanged to_device position costs no statement.
   */
  private readonly ackedAtLeast = new Map<string, number>();
  constructor(hs: Homeserver) {
    this.hs = hs;
  }

  /** PUT /sendToDevice/{eventType}/{txnId}. Returns false when the transaction id was already used (nothing sent again). */
  async send(requester: Requester, eventType: string, txnId: string, body: Record<string, unknown>): Promise<boolean> {
    const messages = body.messages;
    if (!isObject(messages)) throw badJson('messages must be an object');
    // Validate everything before writing anything.
    const wanted: Array<{ userId: string; deviceId: string; content: string }> = [];
    for (const [userId, devices] of Object.entries(messages)) {
      if (!isObject(devices)) throw badJson(`messages.${userId} must map device ids to contents`);
      if (!isValidUserId(userId)) throw invalidParam(`${userId} is not a user id`);
      for (const [deviceId, content] of Object.entries(devices)) {
        if (!isObject(content)) throw badJson(`messages.${userId}.${deviceId} must be an object`);
        wanted.push({ userId, deviceId, content: JSON.stringify(content) });
      }
    }
    const local = wanted.filter((w) => this.hs.services.accounts.isLocalUser(w.userId));
    // Messages to other servers go over federation once it exists (federation issue); dropped until then.
    const targets = await this.expand(local);
    if (targets.length > MAX_RECIPIENTS) throw invalidParam(`At most ${MAX_RECIPIENTS} devices per request`);

    const senderDevice = requester.deviceId ?? '';
    const now = this.hs.now();
    const sent = await this.hs.db.transaction().execute(async (tx) => {
      const fresh = await tx
        .insertInto('to_device_txns')
        .values({ user_id: requester.userId, device_id: senderDevice, txn_id: txnId, created_ts: now })
        .onConflict((oc) => oc.columns(['user_id', 'device_id', 'txn_id']).doNothing())
        .returning('txn_id')
        .executeTakeFirst();
      if (!fresh) return false;
      if (targets.length === 0) return true;
      const us = targets.map((t) => t.userId);
      const ds = targets.map((t) => t.deviceId);
      // Rows are locked in (user, device) order, so two senders never deadlock on each other's inboxes.
      const { rows } = await sql<{ user_id: string; device_id: string; last_seq: string }>`
        insert into to_device_inbox as i (user_id, device_id, last_seq)
        select u, d, 1 from unnest(${us}::text[], ${ds}::text[]) as t(u, d) order by u, d
        on conflict (user_id, device_id) do update set last_seq = i.last_seq + 1
        returning i.user_id, i.device_id, i.last_seq`.execute(tx);
      const seqOf = new Map(rows.map((r) => [`${r.user_id}\u0000${r.device_id}`, Number(r.last_seq)]));
      const seqs = targets.map((t) => seqOf.get(`${t.userId}\u0000${t.deviceId}`)!);
      await sql`
        insert into to_device_messages (user_id, device_id, seq, sender, type, content)
        select u, d, s, ${requester.userId}, ${eventType}, c
        from unnest(${us}::text[], ${ds}::text[], ${seqs}::bigint[], ${targets.map((t) => t.content)}::text[]) as t(u, d, s, c)`.execute(tx);
      await sql`
        delete from to_device_messages m
        using unnest(${us}::text[], ${ds}::text[], ${seqs}::bigint[]) as t(u, d, s)
        where m.user_id = t.u and m.device_id = t.d and m.seq <= t.s - ${this.maxPendingPerDevice}::bigint`.execute(tx);
      return true;
    });
    if (sent) {
      const log = (err: unknown) => this.hs.logger.warn({ err }, 'to_device notification failed');
      for (const u of new Set(targets.map((t) => t.userId))) await this.hs.bus.publish(`user:${u}`, { stream: 'to_device' }).catch(log);
      if (Math.random() < 0.01) void this.sweepTxns().catch(log);
    }
    return sent;
  }

  /** `*` becomes every device of the user; unknown devices are skipped. One message per device (an explicit id wins over `*`). */
  private async expand(wanted: Array<{ userId: string; deviceId: string; content: string }>): Promise<Array<{ userId: string; deviceId: string; content: string }>> {
    if (wanted.length === 0) return [];
    const users = [...new Set(wanted.map((w) => w.userId))];
    const { rows } = await sql<{ user_id: string; device_id: string }>`select user_id, device_id from devices where user_id = any(${users}::text[])`.execute(this.hs.db);
    const devicesOf = new Map<string, Set<string>>();
    for (const r of rows) {
      let s = devicesOf.get(r.user_id);
      if (!s) devicesOf.set(r.user_id, (s = new Set()));
      s.add(r.device_id);
    }
    const out = new Map<string, { userId: string; deviceId: string; content: string }>();
    for (const w of wanted) {
      if (w.deviceId !== '*') continue;
      for (const d of devicesOf.get(w.userId) ?? []) out.set(`${w.userId}\u0000${d}`, { userId: w.userId, deviceId: d, content: w.content });
    }
    for (const w of wanted) {
      if (w.deviceId === '*' || !devicesOf.get(w.userId)?.has(w.deviceId)) continue;
      out.set(`${w.userId}\u0000${w.deviceId}`, w);
    }
    return [...out.values()].sort((a, b) => (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : 0));
  }

  private async sweepTxns(): Promise<void> {
    await this.hs.db.deleteFrom('to_device_txns').where('created_ts', '<', this.hs.now() - TXN_TTL_MS).execute();
  }

  /**
   * The position a sync response may cover for this device: the inbox's last position, or — when more
   * than MAX_PER_SYNC messages are pending above the acknowledged position — the position of the
   * MAX_PER_SYNC-th of them, so the rest waits for the next sync instead of being acknowledged unseen.
   * The sync engine acknowledges the `since` position before asking for this (see acknowledge).
   */
  async currentPosition(userId: string, deviceId: string): Promise<number> {
    const inbox = await this.hs.db.selectFrom('to_device_inbox').select(['last_seq', 'acked_seq']).where('user_id', '=', userId).where('device_id', '=', deviceId).executeTakeFirst();
    return this.positionFromInbox(userId, deviceId, inbox ?? null);
  }

  /** currentPosition from the device's inbox row (read by the caller, e.g. in the sync engine's positions statement). */
  async positionFromInbox(userId: string, deviceId: string, inbox: { last_seq: unknown; acked_seq: unknown } | null): Promise<number> {
    if (!inbox || inbox.last_seq === null || inbox.last_seq === undefined) return 0;
    const acked = Number(inbox.acked_seq);
    const last = Number(inbox.last_seq);
    this.noteAcked(userId, deviceId, acked);
    // At most last_seq - acked_seq messages are pending (fewer when the backlog policy dropped some):
    // when that is within one response, the cap below is last_seq itself.
    if (last - acked <= MAX_PER_SYNC) return last;
    const cap = await this.hs.db
      .selectFrom('to_device_messages')
      .select('seq')
      .where('user_id', '=', userId)
      .where('device_id', '=', deviceId)
      .where('seq', '>', acked)
      .orderBy('seq')
      .offset(MAX_PER_SYNC - 1)
      .limit(1)
      .executeTakeFirst();
    return Number(cap?.seq ?? last);
  }

  /** Messages in (since, upTo], oldest first, at most MAX_PER_SYNC. */
  async pending(userId: string, deviceId: string, since: number, upTo: number): Promise<ToDeviceEvent[]> {
    if (upTo <= since) return [];
    const rows = await this.hs.db
      .selectFrom('to_device_messages')
      .select(['sender', 'type', 'content'])
      .where('user_id', '=', userId)
      .where('device_id', '=', deviceId)
      .where('seq', '>', since)
      .where('seq', '<=', upTo)
      .orderBy('seq')
      .limit(MAX_PER_SYNC)
      .execute();
    return rows.map((r) => ({ sender: r.sender, type: r.type, content: JSON.parse(r.content) as Record<string, unknown> }));
  }

  /** The client synced with a token at `position`: it has everything up to there, which is deleted. */
  async acknowledge(userId: string, deviceId: string, position: number): Promise<void> {
    if (position <= 0 || (this.ackedAtLeast.get(`${userId}\u0000${deviceId}`) ?? 0) >= position) return;
    const r = await this.hs.db
      .updateTable('to_device_inbox')
      .set({ acked_seq: sql<number>`greatest(acked_seq, ${position}::bigint)` })
      .where('user_id', '=', userId)
      .where('device_id', '=', deviceId)
      .where('acked_seq', '<', position)
      .executeTakeFirst();
    if (Number(r.numUpdatedRows) === 0) return;
    await this.hs.db.deleteFrom('to_device_messages').where('user_id', '=', userId).where('device_id', '=', deviceId).where('seq', '<=', position).execute();
    this.noteAcked(userId, deviceId, position);
  }

  private noteAcked(userId: string, deviceId: string, position: number): void {
    const k = `${userId}\u0000${deviceId}`;
    if ((this.ackedAtLeast.get(k) ?? 0) >= position) return;
    // Only an optimisation: forgetting everything now and then keeps the map bounded.
    if (this.ackedAtLeast.size >= 100_000) this.ackedAtLeast.clear();
    this.ackedAtLeast.set(k, position);
  }

  /** A deleted device's pending messages go (its inbox row stays, so its positions never go backwards). */
  async devicesDeleted(userId: string, deviceIds: string[]): Promise<void> {
    if (deviceIds.length === 0) return;
    await this.hs.db.deleteFrom('to_device_messages').where('user_id', '=', userId).where('device_id', 'in', deviceIds).execute();
    await this.hs.db.deleteFrom('to_device_txns').where('user_id', '=', userId).where('device_id', 'in', deviceIds).execute();
  }

  /** The `to_device` sync stream. */
  syncStream(): SyncStream {
    return {
      name: 'to_device',
      currentPosition: (requester: Requester) => (requester.deviceId ? this.currentPosition(requester.userId, requester.deviceId) : Promise.resolve(0)),
      positionColumns: {
        columns: (requester: Requester) => ({
          inbox: sql`(select json_build_array(last_seq, acked_seq) from to_device_inbox where user_id = ${requester.userId} and device_id = ${requester.deviceId ?? ''})`,
        }),
        position: (requester: Requester, v: Record<string, unknown>) => {
          const raw = v['inbox'];
          const inbox = (typeof raw === 'string' ? JSON.parse(raw) : raw) as [number, number] | null | undefined;
          return requester.deviceId ? this.positionFromInbox(requester.userId, requester.deviceId, inbox ? { last_seq: inbox[0], acked_seq: inbox[1] } : null) : Promise.resolve(0);
        },
      },
      collect: async (info: SyncRequestInfo): Promise<SyncContribution> => {
        const { userId, deviceId } = info.requester;
        if (!deviceId) return {};
        const events = await this.pending(userId, deviceId, info.since ?? 0, info.upTo);
        return events.length > 0 ? { top: { to_device: { events } } } : {};
      },
      acknowledge: (requester: Requester, position: number) => (requester.deviceId ? this.acknowledge(requester.userId, requester.deviceId, position) : Promise.resolve()),
    };
  }
}
