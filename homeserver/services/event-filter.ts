// RoomEventFilter (definitions/room_event_filter.yaml) as used by /messages, /context and /search:
// parsing the `filter` query parameter or body field, and matching events.
import { validateFilter } from '../../spec/filters.ts';
import type { Pdu } from '../../spec/events.ts';
import { badJson } from '../errors.ts';

export interface RoomEventFilter {
  limit?: number;
  types?: string[];
  not_types?: string[];
  senders?: string[];
  not_senders?: string[];
  rooms?: string[];
  not_rooms?: string[];
  contains_url?: boolean;
  lazy_load_members?: boolean;
  include_redundant_members?: boolean;
}

/** Parses and validates a RoomEventFilter (an object, or its JSON text); M_BAD_JSON / M_NOT_JSON when invalid. */
export function parseRoomEventFilter(input: unknown): RoomEventFilter {
  if (input === undefined || input === null) return {};
  let f: unknown = input;
  if (typeof input === 'string') {
    if (input === '') return {};
    try {
      f = JSON.parse(input);
    } catch {
      throw badJson('filter is not valid JSON');
    }
  }
  if (f === null || typeof f !== 'object' || Array.isArray(f)) throw badJson('filter must be a JSON object');
  // A RoomEventFilter is the `timeline` part of a sync filter's room filter.
  const problem = validateFilter({ room: { timeline: f } });
  if (problem) throw badJson(`Invalid filter: ${problem.replace('room.timeline', 'filter')}`);
  return f as RoomEventFilter;
}

function typeMatches(pattern: string, type: string): boolean {
  if (!pattern.includes('*')) return pattern === type;
  const re = new RegExp('^' + pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$');
  return re.test(type);
}

/** Whether an event passes the filter (limit and lazy loading are the caller's business). */
export function matchesRoomEventFilter(f: RoomEventFilter, roomId: string, pdu: Pdu): boolean {
  if (f.rooms && !f.rooms.includes(roomId)) return false;
  if (f.not_rooms && f.not_rooms.includes(roomId)) return false;
  if (f.senders && !f.senders.includes(pdu.sender)) return false;
  if (f.not_senders && f.not_senders.includes(pdu.sender)) return false;
  if (f.types && !f.types.some((t) => typeMatches(t, pdu.type))) return false;
  if (f.not_types && f.not_types.some((t) => typeMatches(t, pdu.type))) return false;
  if (f.contains_url !== undefined) {
    const has = typeof pdu.content?.['url'] === 'string';
    if (has !== f.contains_url) return false;
  }
  return true;
}
