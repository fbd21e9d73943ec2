// Sync tokens: opaque to clients, a vector of stream positions to us (DESIGN.md §3). Written as
// `s1~events.41~receipts.7~typing.3…`: characters that need no URL escaping, a version prefix so the
// format can change, and stream names so streams can be added or removed between releases (a stream
// missing from a token starts from scratch, as in an initial sync).
//
// prev_batch tokens of /sync timelines use the same format with only the `events` position: "events
// up to and including this position are before the gap". /messages reads them with eventsPosition().
import { MatrixError } from '../errors.ts';

export type StreamPositions = Map<string, number>;

const PREFIX = 's1';
const NAME = /^[a-z][a-z0-9_]{0,40}$/;

export function encodeToken(positions: StreamPositions): string {
  const parts = [PREFIX];
  for (const [name, p] of positions) parts.push(`${name}.${p}`);
  return parts.join('~');
}

/** Parses a token; null when it is not one of ours. */
export function decodeToken(token: string): StreamPositions | null {
  const parts = token.split('~');
  if (parts[0] !== PREFIX || token.length > 2_000) return null;
  const out: StreamPositions = new Map();
  for (const part of parts.slice(1)) {
    const dot = part.lastIndexOf('.');
    if (dot <= 0) return null;
    const name = part.slice(0, dot);
    const num = part.slice(dot + 1);
    if (!NAME.test(name) || !/^\d{1,16}$/.test(num)) return null;
    out.set(name, Number(num));
  }
  return out;
}

/** Parses a client-supplied token or fails with 400 M_INVALID_PARAM. */
export function requireToken(token: string, param = 'since'): StreamPositions {
  const t = decodeToken(token);
  if (!t) throw new MatrixError(400, 'M_INVALID_PARAM', `Invalid ${param} token`);
  return t;
}

/** A timeline gap token (prev_batch): events at positions <= `position` come before it. */
export function eventsToken(position: number): string {
  return encodeToken(new Map([['events', Math.max(0, position)]]));
}

/** The events position of a sync or prev_batch token (for /messages `from`/`to`), or null. */
export function eventsPosition(token: string): number | null {
  return decodeToken(token)?.get('events') ?? null;
}
