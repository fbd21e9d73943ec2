// Identifier grammar (appendices.md "Identifier Grammar": "Server Name", "Common Identifier Format",
// "User Identifiers", "Historical User IDs", "Room IDs", "Room Aliases", "Event IDs"; event id formats
// from rooms/v1.md, v3.md, fragments/v4-event-ids.md).
//
// Two levels of strictness: identifiers we *mint* follow the current grammar
// (isValidLocalpartForRegistration); identifiers we *receive* (event senders, state keys, room ids)
// follow the lenient historical grammar the spec says servers MUST accept.

import type { EventIdFormat } from './room-versions.ts';

/** Every user id, room id, room alias and event id: at most 255 bytes including sigil and domain. */
export const MAX_IDENTIFIER_BYTES = 255;

export type ServerNameKind = 'dns' | 'ipv4' | 'ipv6';

export interface ParsedServerName {
  /**
   * The grammar's `hostname`, exactly as written: a DNS name, a dotted-quad, or an IPv6 literal
   * *including* its square brackets (`[1234:5678::abcd]`), ready to be put in a URL authority.
   */
  host: string;
  port?: number;
  kind: ServerNameKind;
}

export interface ParsedIdentifier {
  localpart: string;
  serverName: string;
}

function utf8Length(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

/** UTF-8 is never shorter than UTF-16 code units, so `s.length` bounds the byte length from below. */
function withinByteLimit(s: string): boolean {
  return s.length <= MAX_IDENTIFIER_BYTES && utf8Length(s) <= MAX_IDENTIFIER_BYTES;
}

// ---- server names ----

const DNS_NAME_RE = /^[A-Za-z0-9.-]{1,255}$/;
const DOTTED_QUAD_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const PORT_RE = /^\d{1,5}$/;
const HEX16_RE = /^[0-9A-Fa-f]{1,4}$/;

function isIPv4(s: string): boolean {
  const m = DOTTED_QUAD_RE.exec(s);
  if (!m) return false;
  for (let i = 1; i <= 4; i++) if (Number(m[i]) > 255) return false;
  return true;
}

/**
 * IPv6 text form per RFC 3513 section 2.2 (which the spec references): eight groups of 1–4 hex digits,
 * at most one `::` standing for one or more zero groups, optionally ending in a dotted-quad IPv4 that
 * counts as two groups. No zone ids (`%`): the spec's IPv6char does not include them.
 */
export function isIPv6(s: string): boolean {
  if (s.length < 2 || s.length > 45) return false; // IPv6address = 2*45IPv6char
  const dbl = s.indexOf('::');
  if (dbl !== -1 && s.indexOf('::', dbl + 1) !== -1) return false;
  const countGroups = (part: string, allowV4Tail: boolean): number => {
    if (part === '') return 0;
    const groups = part.split(':');
    let n = 0;
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i]!;
      if (allowV4Tail && i === groups.length - 1 && g.includes('.')) {
        if (!isIPv4(g)) return -1;
        n += 2;
      } else if (HEX16_RE.test(g)) {
        n += 1;
      } else {
        return -1;
      }
    }
    return n;
  };
  if (dbl === -1) return countGroups(s, true) === 8;
  const head = countGroups(s.slice(0, dbl), false);
  const tail = countGroups(s.slice(dbl + 2), true);
  return head >= 0 && tail >= 0 && head + tail <= 7;
}

/**
 * Parses `server_name = hostname [ ":" port ]` (appendices.md "Server Name"). Returns null when the
 * string is not a server name. Server names are case-sensitive; they are returned as written.
 * Ports must be 1–5 digits and at most 65535 (the grammar allows 99999; no such port exists).
 * A dotted quad of numbers is taken as an IPv4 literal and must have every part ≤ 255.
 */
export function parseServerName(s: string): ParsedServerName | null {
  if (typeof s !== 'string' || s.length === 0 || s.length > 255 + 6) return null;
  let host: string;
  let portText: string | undefined;
  let kind: ServerNameKind;
  if (s[0] === '[') {
    const close = s.indexOf(']');
    if (close === -1) return null;
    host = s.slice(0, close + 1);
    const rest = s.slice(close + 1);
    if (rest !== '') {
      if (rest[0] !== ':') return null;
      portText = rest.slice(1);
    }
    if (!isIPv6(host.slice(1, -1))) return null;
    kind = 'ipv6';
  } else {
    const colon = s.indexOf(':');
    if (colon === -1) host = s;
    else {
      host = s.slice(0, colon);
      portText = s.slice(colon + 1);
    }
    if (!DNS_NAME_RE.test(host)) return null;
    if (DOTTED_QUAD_RE.test(host)) {
      if (!isIPv4(host)) return null;
      kind = 'ipv4';
    } else {
      kind = 'dns';
    }
  }
  if (portText === undefined) return { host, kind };
  if (!PORT_RE.test(portText)) return null;
  const port = Number(portText);
  if (port > 65535) return null;
  return { host, port, kind };
}

export function isValidServerName(s: string): boolean {
  return parseServerName(s) !== null;
}

// ---- the `&localpart:domain` shape ----

/**
 * Splits `&localpart:domain` at the first `:` (localparts never contain one), checks the domain is a
 * server name, the localpart has no NUL and no lone surrogate, and the whole is at most 255 bytes.
 */
function parseSigilled(s: string, sigil: string, allowEmptyLocalpart: boolean): ParsedIdentifier | null {
  if (typeof s !== 'string' || s[0] !== sigil || !withinByteLimit(s)) return null;
  const colon = s.indexOf(':');
  if (colon === -1) return null;
  const localpart = s.slice(1, colon);
  const serverName = s.slice(colon + 1);
  if (!allowEmptyLocalpart && localpart.length === 0) return null;
  if (localpart.includes('\u0000') || !localpart.isWellFormed()) return null;
  if (!isValidServerName(serverName)) return null;
  return { localpart, serverName };
}

// ---- user ids ----

const LOCALPART_RE = /^[a-z0-9._=\-/+]+$/;

/**
 * A user id as servers MUST accept it (appendices.md "Historical User IDs"): the localpart may be any
 * non-surrogate code points except `:` and NUL, including control characters and the empty string;
 * the domain a valid server name; at most 255 bytes in total.
 */
export function parseUserId(s: string): ParsedIdentifier | null {
  return parseSigilled(s, '@', true);
}

export function isValidUserId(s: string): boolean {
  return parseUserId(s) !== null;
}

/**
 * Whether a user id also meets the current grammar (appendices.md "User Identifiers", v1.8+): the
 * localpart is non-empty and only `a-z 0-9 . _ = - / +`. Non-compliant ids are still valid (above).
 */
export function isCompliantUserId(s: string): boolean {
  const p = parseUserId(s);
  return p !== null && LOCALPART_RE.test(p.localpart);
}

/**
 * The strict grammar for new accounts: `a-z`, `0-9`, `.`, `_`, `=`, `-`, `/` and (since v1.8) `+`.
 * With `serverName`, also checks the resulting `@localpart:serverName` fits in 255 bytes.
 */
export function isValidLocalpartForRegistration(localpart: string, serverName?: string): boolean {
  if (typeof localpart !== 'string' || !LOCALPART_RE.test(localpart)) return false;
  if (serverName === undefined) return localpart.length <= MAX_IDENTIFIER_BYTES - 3; // '@' ':' + 1-char domain
  return isValidServerName(serverName) && 2 + localpart.length + utf8Length(serverName) <= MAX_IDENTIFIER_BYTES;
}

// ---- room ids ----

const DOMAINLESS_HASH_ID_RE = /^[A-Za-z0-9_-]{43}$/; // URL-safe unpadded base64 of a SHA-256
const STD_HASH_ID_RE = /^[A-Za-z0-9+/]{43}$/; // standard unpadded base64 of a SHA-256

/**
 * `!opaque:domain` (room versions 1–11; opaque part: non-empty, any non-surrogate code points but `:`
 * and NUL) or, from room version 12, `!` followed by the 43 URL-safe base64 characters of the create
 * event's reference hash (appendices.md "Room IDs"). At most 255 bytes.
 */
export function isValidRoomId(s: string): boolean {
  if (typeof s !== 'string' || s[0] !== '!') return false;
  if (s.length === 44 && DOMAINLESS_HASH_ID_RE.test(s.slice(1))) return true;
  return parseSigilled(s, '!', false) !== null;
}

/** The server name of a room id with a domain; null for v12 domainless ids and invalid ids. */
export function roomIdServerName(s: string): string | null {
  if (typeof s !== 'string' || s[0] !== '!') return null;
  return parseSigilled(s, '!', false)?.serverName ?? null;
}

// ---- event ids ----

/**
 * An event id in any room version's format, or — with `format` — in that one:
 * 'v1' `$opaque:domain` (room versions 1–2), 'v3' `$` + 43 standard base64 chars, 'v4' `$` + 43
 * URL-safe base64 chars (the reference hash). At most 255 bytes (appendices.md "Event IDs").
 */
export function isValidEventId(s: string, format?: EventIdFormat): boolean {
  if (typeof s !== 'string' || s[0] !== '$') return false;
  const hashForm = s.length === 44 ? s.slice(1) : null;
  switch (format) {
    case 'v1':
      return parseSigilled(s, '$', false) !== null;
    case 'v3':
      return hashForm !== null && STD_HASH_ID_RE.test(hashForm);
    case 'v4':
      return hashForm !== null && DOMAINLESS_HASH_ID_RE.test(hashForm);
    default:
      if (hashForm !== null && (STD_HASH_ID_RE.test(hashForm) || DOMAINLESS_HASH_ID_RE.test(hashForm))) return true;
      return parseSigilled(s, '$', false) !== null;
  }
}

// ---- room aliases ----

/**
 * `#localpart:domain`: localpart non-empty, any non-surrogate code points except `:` and NUL; domain a
 * server name; at most 255 bytes (appendices.md "Room Aliases").
 */
export function parseRoomAlias(s: string): ParsedIdentifier | null {
  return parseSigilled(s, '#', false);
}

export function isValidRoomAlias(s: string): boolean {
  return parseRoomAlias(s) !== null;
}
