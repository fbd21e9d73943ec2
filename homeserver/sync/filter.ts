// Sync filters (client-server-api "Filtering", definitions/sync_filter.yaml, event_filter.yaml,
// room_event_filter.yaml) as the sync engine uses them: parsed once per request, then matched
// against events. `types`/`senders` entries may use `*` as a wildcard; `not_*` win over the lists.
import { validateFilter } from '../../spec/filters.ts';
import { badJson } from '../errors.ts';

export interface EventFilter {
  limit?: number;
  types?: string[];
  not_types?: string[];
  senders?: string[];
  not_senders?: string[];
}

export interface RoomEventFilter extends EventFilter {
  rooms?: string[];
  not_rooms?: string[];
  contains_url?: boolean;
  lazy_load_members?: boolean;
  include_redundant_members?: boolean;
  unread_thread_notifications?: boolean;
}

export interface RoomFilter {
  rooms?: string[];
  not_rooms?: string[];
  include_leave?: boolean;
  account_data?: RoomEventFilter;
  ephemeral?: RoomEventFilter;
  state?: RoomEventFilter;
  timeline?: RoomEventFilter;
}

export interface SyncFilter {
  event_fields?: string[];
  event_format?: 'client' | 'federation';
  account_data?: EventFilter;
  presence?: EventFilter;
  room?: RoomFilter;
}

export const DEFAULT_TIMELINE_LIMIT = 10;
export const MAX_TIMELINE_LIMIT = 500;

/** Parses a filter given inline (JSON starting with `{`) or checks a stored one. */
export function parseSyncFilter(value: unknown): SyncFilter {
  const problem = validateFilter(value);
  if (problem) throw badJson(`Invalid filter: ${problem}`);
  return value as SyncFilter;
}

function globToRegExp(glob: string): RegExp {
  return new RegExp(`^${glob.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`, 's');
}

const compiled = new Map<string, RegExp>();
/** Whether `value` matches a filter entry (`*` matches any run of characters). */
export function wildcardMatches(pattern: string, value: string): boolean {
  if (!pattern.includes('*')) return pattern === value;
  let re = compiled.get(pattern);
  if (!re) {
    if (compiled.size > 10_000) compiled.clear();
    compiled.set(pattern, (re = globToRegExp(pattern)));
  }
  return re.test(value);
}

function anyMatches(list: readonly string[] | undefined, value: string): boolean {
  return list !== undefined && list.some((p) => wildcardMatches(p, value));
}

/** Whether an event passes an event filter's types and senders lists. */
export function eventAllowed(f: EventFilter | undefined, e: { type: string; sender?: string }): boolean {
  if (!f) return true;
  if (anyMatches(f.not_types, e.type)) return false;
  if (f.types !== undefined && !anyMatches(f.types, e.type)) return false;
  if (e.sender !== undefined) {
    if (f.not_senders?.includes(e.sender)) return false;
    if (f.senders !== undefined && !f.senders.includes(e.sender)) return false;
  }
  return true;
}

/** Whether the filter lets no event through at all (`types: []`, `not_types: ["*"]`, `senders: []`, `limit: 0`). */
export function excludesEverything(f: EventFilter | undefined): boolean {
  if (!f) return false;
  return (f.types !== undefined && f.types.length === 0) || (f.not_types ?? []).includes('*') || (f.senders !== undefined && f.senders.length === 0) || f.limit === 0;
}

/** Whether a room passes a room list / not_rooms pair. */
export function roomAllowed(f: { rooms?: string[]; not_rooms?: string[] } | undefined, roomId: string): boolean {
  if (!f) return true;
  if (f.not_rooms?.includes(roomId)) return false;
  if (f.rooms !== undefined && !f.rooms.includes(roomId)) return false;
  return true;
}

/** Filters events and applies the filter's limit (keeping the newest). */
export function filterEvents<T extends { type: string; sender?: string }>(f: EventFilter | undefined, events: T[]): T[] {
  const kept = f ? events.filter((e) => eventAllowed(f, e)) : events;
  const limit = f?.limit;
  return limit !== undefined && kept.length > limit ? kept.slice(kept.length - limit) : kept;
}

/** contains_url: true keeps only events whose content has a `url`, false only those without. */
export function containsUrlAllowed(f: RoomEventFilter | undefined, content: unknown): boolean {
  if (f?.contains_url === undefined) return true;
  const has = content !== null && typeof content === 'object' && typeof (content as Record<string, unknown>)['url'] === 'string';
  return f.contains_url ? has : !has;
}

export function timelineLimit(f: RoomFilter | undefined): number {
  const l = f?.timeline?.limit;
  if (l === undefined) return DEFAULT_TIMELINE_LIMIT;
  return Math.min(l, MAX_TIMELINE_LIMIT);
}

/**
 * SQL-side version of a timeline filter's types/senders: LIKE patterns for the types (a `*` becomes
 * `%`, and `%`/`_` are escaped) so the limit applies to matching events.
 */
export function likePattern(glob: string): string {
  return glob.replace(/[\\%_]/g, '\\$&').replace(/\*/g, '%');
}

/**
 * event_fields (sync_filter.yaml): keeps only the listed dot-separated paths of each event
 * (`\.` escapes a dot in a name).
 */
export function projectFields<T extends object>(event: T, fields: readonly string[] | undefined): T {
  if (!fields) return event;
  const out: Record<string, unknown> = {};
  for (const f of fields) {
    const path = splitPath(f);
    let src: unknown = event;
    for (const p of path) {
      if (src === null || typeof src !== 'object' || Array.isArray(src) || !Object.hasOwn(src, p)) {
        src = undefined;
        break;
      }
      src = (src as Record<string, unknown>)[p];
    }
    if (src === undefined) continue;
    let dst = out;
    for (let i = 0; i < path.length - 1; i++) {
      const k = path[i]!;
      const next = dst[k];
      if (next === null || typeof next !== 'object') dst[k] = {};
      dst = dst[k] as Record<string, unknown>;
    }
    dst[path.at(-1)!] = src;
  }
  return out as T;
}

function splitPath(s: string): string[] {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '\\' && i + 1 < s.length && (s[i + 1] === '.' || s[i + 1] === '\\')) {
      cur += s[++i];
    } else if (c === '.') {
      parts.push(cur);
      cur = '';
    } else cur += c;
  }
  parts.push(cur);
  return parts;
}
