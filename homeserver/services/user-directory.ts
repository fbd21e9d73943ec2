// The user directory (client-server-api "User directory", users.yaml POST /user_directory/search).
//
// user_directory holds one row per searchable user: every active local user, and remote users while they
// are joined to a room here. Its `vector` is a tsvector of the accent-stripped, lower-cased words of the
// display name and the user id, built exactly (array_to_tsvector), so a GIN index answers "every word
// of the search term is a prefix of some word" ('ali':* & 'smi':*) without scanning the table.
// Triggers on users, profile_fields and room_memberships mark users stale (0006_history.ts); searches
// refresh stale users first.
//
// Who may be found: users who share a joined room with the searcher, or who are joined to a public room
// (join rule public, or world_readable history); every local user when
// user_directory.search_all_users is set.
import { sql } from 'kysely';
import { parseUserId } from '../../spec/identifiers.ts';
import type { Homeserver } from '../homeserver.ts';

/** Lower case, compatibility-decomposed, combining marks removed: "Ångström" → "angstrom". */
export function normaliseText(s: string): string {
  return s.normalize('NFKD').replace(/\p{M}/gu, '').toLowerCase();
}

/** The words of a text for the directory: runs of letters and digits of the normalised text. */
export function directoryWords(s: string): string[] {
  return normaliseText(s).split(/[^\p{L}\p{N}]+/u).filter((w) => w.length > 0);
}

/** The lexemes of a user: display name words, user id localpart words, the whole localpart and server name. */
export function userLexemes(userId: string, displayName: string | null): string[] {
  const parsed = parseUserId(userId);
  const localpart = parsed?.localpart ?? userId;
  const words = new Set<string>([...directoryWords(displayName ?? ''), ...directoryWords(localpart), ...directoryWords(parsed?.serverName ?? '')]);
  const whole = normaliseText(localpart);
  if (whole.length > 0) words.add(whole);
  // tsvector lexemes are limited to 2 KiB each.
  return [...words].filter((w) => Buffer.byteLength(w) < 2000);
}

export interface DirectoryResult {
  user_id: string;
  display_name?: string;
  avatar_url?: string;
}

export class UserDirectoryService {
  private readonly hs: Homeserver;
  private refreshing: Promise<void> | null = null;

  constructor(hs: Homeserver) {
    this.hs = hs;
  }

  async refreshStale(): Promise<void> {
    while (this.refreshing) await this.refreshing;
    this.refreshing = (async () => {
      for (;;) {
        const rows = await this.hs.db
          .deleteFrom('user_directory_stale')
          .where('user_id', 'in', (eb) => eb.selectFrom('user_directory_stale').select('user_id').limit(500))
          .returning('user_id')
          .execute();
        if (rows.length === 0) break;
        await this.update(rows.map((r) => r.user_id));
      }
    })();
    try {
      await this.refreshing;
    } finally {
      this.refreshing = null;
    }
  }

  /** Rebuilds the directory rows of these users from their profiles (local) or member events (remote). */
  async update(userIds: string[]): Promise<void> {
    const local = userIds.filter((u) => parseUserId(u)?.serverName === this.hs.serverName);
    const remote = userIds.filter((u) => parseUserId(u)?.serverName !== this.hs.serverName);
    const rows: Array<{ user_id: string; display_name: string | null; avatar_url: string | null; is_local: boolean }> = [];
    const gone: string[] = [];
    if (local.length > 0) {
      const users = await this.hs.db.selectFrom('users').select(['user_id', 'deactivated_ts', 'is_guest']).where('user_id', 'in', local).execute();
      const active = new Set(users.filter((u) => u.deactivated_ts === null && !u.is_guest).map((u) => u.user_id));
      const profiles = await this.hs.services.accounts.profiles.getBasicProfiles([...active]);
      for (const u of local) {
        if (!active.has(u)) {
          gone.push(u);
          continue;
        }
        const p = profiles.get(u) ?? {};
        rows.push({ user_id: u, display_name: p.displayname ?? null, avatar_url: p.avatar_url ?? null, is_local: true });
      }
    }
    for (const u of remote) {
      const member = await this.hs.db
        .selectFrom('current_state as cs')
        .innerJoin('events as e', 'e.event_id', 'cs.event_id')
        .select(['e.json'])
        .where('cs.type', '=', 'm.room.member')
        .where('cs.state_key', '=', u)
        .where('cs.membership', '=', 'join')
        .limit(1)
        .executeTakeFirst();
      if (!member) {
        gone.push(u);
        continue;
      }
      const c = (JSON.parse(member.json) as { content?: Record<string, unknown> }).content ?? {};
      rows.push({
        user_id: u,
        display_name: typeof c['displayname'] === 'string' ? c['displayname'] : null,
        avatar_url: typeof c['avatar_url'] === 'string' ? c['avatar_url'] : null,
        is_local: false,
      });
    }
    if (gone.length > 0) await this.hs.db.deleteFrom('user_directory').where('user_id', 'in', gone).execute();
    for (const r of rows) {
      const lexemes = userLexemes(r.user_id, r.display_name);
      const vector = sql`array_to_tsvector(${lexemes}::text[])`;
      await this.hs.db
        .insertInto('user_directory')
        .values({ ...r, vector })
        .onConflict((oc) => oc.column('user_id').doUpdateSet({ display_name: r.display_name, avatar_url: r.avatar_url, is_local: r.is_local, vector }))
        .execute();
    }
  }

  /** POST /user_directory/search. */
  async search(searcher: string, term: string, limit: number): Promise<{ results: DirectoryResult[]; limited: boolean }> {
    await this.refreshStale();
    await this.hs.services.roomDirectory.refreshStale();
    const words = directoryWords(term);
    if (words.length === 0) return { results: [], limited: false };
    // Quoted lexemes with prefix matching; words are letters and digits only, so need no escaping.
    const query = words.map((w) => `'${w}':*`).join(' & ');
    const searchAll = this.hs.config.user_directory.search_all_users;
    const rows = await sql<{ user_id: string; display_name: string | null; avatar_url: string | null }>`
      select d.user_id, d.display_name, d.avatar_url
      from user_directory d
      where d.vector @@ ${query}::tsquery
        and (d.user_id = ${searcher}
          ${searchAll ? sql`or d.is_local` : sql``}
          or exists (
            select 1 from room_memberships m
            where m.user_id = d.user_id and m.membership = 'join'
              and (m.room_id in (select room_id from room_memberships where user_id = ${searcher} and membership = 'join')
                or m.room_id in (select room_id from room_stats where join_rule = 'public' or history_visibility = 'world_readable'))))
      order by
        -- exact words before prefixes, then names before bare ids
        ts_rank(d.vector, ${words.map((w) => `'${w}'`).join(' | ')}::tsquery) desc,
        d.display_name is null,
        lower(coalesce(d.display_name, d.user_id)),
        d.user_id
      limit ${limit + 1}`.execute(this.hs.db);
    const results = rows.rows.slice(0, limit).map((r) => {
      const out: DirectoryResult = { user_id: r.user_id };
      if (r.display_name !== null) out.display_name = r.display_name;
      if (r.avatar_url !== null) out.avatar_url = r.avatar_url;
      return out;
    });
    return { results, limited: rows.rows.length > limit };
  }
}
