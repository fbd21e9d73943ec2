// Reporting content (modules/report_content.md, report_content.yaml): reports of events, rooms and users
// are stored in content_reports for the server's admins.
//   - An event report needs the reporter to be joined to the room (v1.8) and the event to exist there.
//   - Room and user reports must not depend on the reporter's memberships (v1.13, v1.14).
import { badJson, notFound } from '../errors.ts';
import type { Homeserver } from '../homeserver.ts';
import type { ContentReportsTable } from '../storage/history-store.ts';
import { parseUserId } from '../../spec/identifiers.ts';

declare module '../homeserver.ts' {
  interface Services {
    reports: ReportService;
  }
}

/** Longest reason kept (characters); longer reasons are refused rather than silently cut. */
export const MAX_REASON_LENGTH = 10_000;

/** The report's reason. Room and user reports require one (report_content.yaml: `required: [reason]`, may be blank). */
function reasonOf(body: Record<string, unknown>, required = false): string | null {
  const r = body['reason'];
  if (r === undefined || r === null) {
    if (required) throw badJson('reason is required');
    return null;
  }
  if (typeof r !== 'string') throw badJson('reason must be a string');
  if (r.length > MAX_REASON_LENGTH) throw badJson(`reason must be at most ${MAX_REASON_LENGTH} characters`);
  return r;
}

/** A stored report as admins see it. */
export type ContentReport = Omit<ContentReportsTable, 'id'> & { id: number };

export class ReportService {
  private readonly hs: Homeserver;
  constructor(hs: Homeserver) {
    this.hs = hs;
  }

  private async store(r: Omit<ContentReportsTable, 'id' | 'received_ts'>): Promise<void> {
    await this.hs.db.insertInto('content_reports').values({ ...r, received_ts: this.hs.now() }).execute();
  }

  async reportEvent(reporter: string, roomId: string, eventId: string, body: Record<string, unknown>): Promise<void> {
    const reason = reasonOf(body);
    const m = await this.hs.services.rooms.getMembership(roomId, reporter);
    const e = m?.membership === 'join' ? await this.hs.services.rooms.getEvent(eventId) : undefined;
    if (!e || e.roomId !== roomId) throw notFound('The event was not found or you are not joined to the room.');
    await this.store({ kind: 'event', reporter, room_id: roomId, event_id: eventId, target_user_id: e.pdu.sender, reason });
  }

  async reportRoom(reporter: string, roomId: string, body: Record<string, unknown>): Promise<void> {
    const reason = reasonOf(body, true);
    if (!(await this.hs.services.rooms.getRoomVersion(roomId))) throw notFound('The room was not found.');
    await this.store({ kind: 'room', reporter, room_id: roomId, event_id: null, target_user_id: null, reason });
  }

  async reportUser(reporter: string, userId: string, body: Record<string, unknown>): Promise<void> {
    const reason = reasonOf(body, true);
    const parsed = parseUserId(userId);
    if (!parsed) throw notFound('The user was not found.');
    if (parsed.serverName === this.hs.serverName) {
      const u = await this.hs.db.selectFrom('users').select('user_id').where('user_id', '=', userId).executeTakeFirst();
      if (!u) throw notFound('The user was not found.');
    }
    await this.store({ kind: 'user', reporter, room_id: null, event_id: null, target_user_id: userId, reason });
  }

  /** Reports for admins, newest first. */
  async list(opts: { limit?: number; beforeId?: number } = {}): Promise<ContentReport[]> {
    let q = this.hs.db.selectFrom('content_reports').selectAll().orderBy('id', 'desc').limit(opts.limit ?? 100);
    if (opts.beforeId !== undefined) q = q.where('id', '<', opts.beforeId);
    const rows = await q.execute();
    return rows.map((r) => ({ ...r, id: Number(r.id), received_ts: Number(r.received_ts) }));
  }
}
