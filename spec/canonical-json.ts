// Canonical JSON (appendices.md "Signing JSON > Canonical JSON").
//
// The shortest UTF-8 JSON encoding with object keys sorted by Unicode code point, numbers restricted
// to integers in [-(2**53)+1, (2**53)-1] without exponent or fraction (`-0` is written `0`, see the
// spec's example), and strings escaped minimally per the spec's grammar: only `"`, `\` and the ASCII
// control characters, the latter as \b \t \n \f \r or \u00XX with lowercase hex. Everything else,
// including DEL, U+2028/U+2029 and all non-ASCII, is written raw as UTF-8. Lone surrogates are not
// Unicode scalar values, so they have no UTF-8 encoding and no canonical form: we reject them.
//
// This is on the hot path of every event (hashing, signing, verifying). What gets hashed and signed
// is bytes, so the encoder writes UTF-8 straight into a reusable buffer: building a JS string and
// then encoding it costs about twice as much (string ropes must be flattened, and Buffer.from on a
// non-Latin-1 string is slow). The fast walk tracks no JSON path; when it fails, a second, slower
// walk finds the path of the offending value for the error message.

export class CanonicalJsonError extends Error {
  /** JSONPath-like location of the offending value, e.g. `$.content.users["@a:b"]`. */
  readonly path: string;
  constructor(message: string, path: string) {
    super(`${message} at ${path}`);
    this.name = 'CanonicalJsonError';
    this.path = path;
  }
}

export interface CanonicalJsonOptions {
  /**
   * Room versions 1–5 do not enforce canonical JSON (rooms/fragments/v1-canonical-json.md), and
   * their events may carry floats (e.g. power levels, v1-floaty-power-levels.md) or integers outside
   * the safe range. With this flag such finite numbers are written with ECMAScript's shortest
   * round-trip form instead of being rejected, so hashes/signatures of those events can still be
   * checked. NaN and ±Infinity are never accepted (they are not JSON). Best effort: once a value has
   * been parsed into a JS number its original spelling (e.g. `5.0`, big integers) is lost.
   */
  readonly allowNonCanonicalNumbers?: boolean;
}

const MAX_SAFE = Number.MAX_SAFE_INTEGER; // 2**53 - 1
const OBJECT_PROTO = Object.prototype;

// Sentinel thrown by the fast encoder; the slow walk then produces the real error with a path.
const FAIL: unique symbol = Symbol('canonical-json-fail');

// A key containing a UTF-16 unit at or above U+D800 may sort differently by code unit than by code
// point (surrogates D800–DFFF encode astral code points, which must sort *after* U+E000–U+FFFF).
const NEEDS_CP_SORT = /[\uD800-\uFFFF]/;

/** Compares two strings by Unicode code point (not UTF-16 code unit). */
export function compareCodePoints(a: string, b: string): number {
  const n = a.length < b.length ? a.length : b.length;
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    // Only the relative order of surrogates vs U+E000..U+FFFF differs between the two orders:
    // lift surrogates above the BMP so that astral characters compare greater.
    if (x >= 0xd800 && y >= 0xd800) {
      if (x <= 0xdfff) x += 0x10000;
      if (y <= 0xdfff) y += 0x10000;
    }
    return x - y;
  }
  return a.length - b.length;
}

function sortedKeys(obj: object): string[] {
  const keys = Object.keys(obj);
  if (keys.length < 2) return keys;
  keys.sort(); // default sort compares by UTF-16 code unit: identical to code point order unless…
  for (let i = 0; i < keys.length; i++) {
    if (NEEDS_CP_SORT.test(keys[i]!)) {
      keys.sort(compareCodePoints);
      break;
    }
  }
  return keys;
}

function isPlainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v);
  return proto === OBJECT_PROTO || proto === null;
}

const HEX = '0123456789abcdef';
// Strings with nothing to escape and no surrogate at all go to node's native UTF-8 writer.
const NEEDS_CARE = /["\\\u0000-\u001f\ud800-\udfff]/;
const NATIVE_MIN = 24; // below this, the JS loop beats the regex + native call
const INITIAL_SIZE = 64 * 1024;
const KEEP_MAX = 1024 * 1024; // a buffer grown past this for one huge value is not kept

/** Appends canonical JSON as UTF-8 to a growable buffer. One shared instance serves the hot path. */
class Writer {
  buf: Buffer;
  pos = 0;
  busy = false;
  lenient = false;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  ascii(s: string): void {
    const n = s.length;
    this.reserve(n);
    const b = this.buf;
    let p = this.pos;
    for (let i = 0; i < n; i++) b[p++] = s.charCodeAt(i);
    this.pos = p;
  }

  byte(c: number): void {
    this.reserve(1);
    this.buf[this.pos++] = c;
  }

  string(s: string): void {
    const len = s.length;
    if (len >= NATIVE_MIN && !NEEDS_CARE.test(s)) {
      this.reserve(len * 3 + 2);
      const b = this.buf;
      b[this.pos++] = 0x22;
      this.pos += b.write(s, this.pos, 'utf8');
      b[this.pos++] = 0x22;
      return;
    }
    this.reserve(len * 6 + 2); // worst case: every unit a \u00XX escape
    const b = this.buf;
    let p = this.pos;
    b[p++] = 0x22;
    for (let i = 0; i < len; i++) {
      let c = s.charCodeAt(i);
      if (c < 0x80) {
        if (c >= 0x20 && c !== 0x22 && c !== 0x5c) {
          b[p++] = c;
          continue;
        }
        b[p++] = 0x5c;
        switch (c) {
          case 0x22: b[p++] = 0x22; break; // \"
          case 0x5c: b[p++] = 0x5c; break; // \\
          case 0x08: b[p++] = 0x62; break; // \b
          case 0x09: b[p++] = 0x74; break; // \t
          case 0x0a: b[p++] = 0x6e; break; // \n
          case 0x0c: b[p++] = 0x66; break; // \f
          case 0x0d: b[p++] = 0x72; break; // \r
          default: // \u00XX, lowercase hex
            b[p++] = 0x75; b[p++] = 0x30; b[p++] = 0x30;
            b[p++] = HEX.charCodeAt(c >> 4); b[p++] = HEX.charCodeAt(c & 15);
        }
      } else if (c < 0x800) {
        b[p++] = 0xc0 | (c >> 6);
        b[p++] = 0x80 | (c & 0x3f);
      } else if (c >= 0xd800 && c <= 0xdfff) {
        const d = i + 1 < len ? s.charCodeAt(i + 1) : 0;
        if (c > 0xdbff || d < 0xdc00 || d > 0xdfff) throw FAIL; // lone surrogate
        i++;
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        b[p++] = 0xf0 | (c >> 18);
        b[p++] = 0x80 | ((c >> 12) & 0x3f);
        b[p++] = 0x80 | ((c >> 6) & 0x3f);
        b[p++] = 0x80 | (c & 0x3f);
      } else {
        b[p++] = 0xe0 | (c >> 12);
        b[p++] = 0x80 | ((c >> 6) & 0x3f);
        b[p++] = 0x80 | (c & 0x3f);
      }
    }
    b[p++] = 0x22;
    this.pos = p;
  }

  value(v: unknown): void {
    switch (typeof v) {
      case 'string':
        this.string(v);
        return;
      case 'number':
        if (v <= MAX_SAFE && v >= -MAX_SAFE && Number.isInteger(v)) this.ascii(v === 0 ? '0' : '' + v);
        else if (this.lenient && Number.isFinite(v)) this.ascii('' + v);
        else throw FAIL;
        return;
      case 'boolean':
        this.ascii(v ? 'true' : 'false');
        return;
      case 'object': {
        if (v === null) {
          this.ascii('null');
          return;
        }
        if (Array.isArray(v)) {
          this.byte(0x5b); // [
          const len = v.length;
          for (let i = 0; i < len; i++) {
            if (i !== 0) this.byte(0x2c); // ,
            this.value(v[i]);
          }
          this.byte(0x5d); // ]
          return;
        }
        if (!isPlainObject(v)) throw FAIL;
        const keys = sortedKeys(v);
        const o = v as Record<string, unknown>;
        this.byte(0x7b); // {
        for (let i = 0; i < keys.length; i++) {
          const k = keys[i]!;
          if (i !== 0) this.byte(0x2c);
          this.string(k);
          this.byte(0x3a); // :
          this.value(o[k]);
        }
        this.byte(0x7d); // }
        return;
      }
      default:
        // undefined, function, bigint, symbol: not representable in JSON.
        throw FAIL;
    }
  }
}

const shared = new Writer(INITIAL_SIZE);

/**
 * Encodes `value` and hands the bytes (a view valid only during the call) to `use`. Re-entrant calls
 * (a getter that itself encodes JSON) get a private writer instead of clobbering the shared one.
 */
function encode<R>(value: unknown, options: CanonicalJsonOptions | undefined, use: (bytes: Buffer) => R): R {
  const lenient = options?.allowNonCanonicalNumbers === true;
  const w = shared.busy ? new Writer(1024) : shared;
  w.busy = true;
  w.pos = 0;
  w.lenient = lenient;
  try {
    try {
      w.value(value);
    } catch (e) {
      fail(value, lenient, e);
    }
    return use(w.buf.subarray(0, w.pos));
  } finally {
    w.busy = false;
    if (w.buf.length > KEEP_MAX) w.buf = Buffer.allocUnsafe(INITIAL_SIZE);
  }
}

// ---- slow path: locate and describe the first offending value ----

const SIMPLE_KEY = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

function childPath(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return SIMPLE_KEY.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

function describe(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (typeof v === 'number') return String(v);
  if (typeof v === 'bigint') return `bigint ${v}n`;
  if (typeof v === 'object' && v !== null) return Object.getPrototypeOf(v)?.constructor?.name ?? 'object';
  return typeof v;
}

function diagnose(v: unknown, path: string, lenient: boolean, seen: Set<object>): CanonicalJsonError | null {
  switch (typeof v) {
    case 'string':
      return v.isWellFormed() ? null : new CanonicalJsonError('string contains a lone UTF-16 surrogate (not encodable as UTF-8)', path);
    case 'number':
      if (Number.isNaN(v) || !Number.isFinite(v)) return new CanonicalJsonError(`${v} is not a JSON number`, path);
      if (lenient) return null;
      if (!Number.isInteger(v)) return new CanonicalJsonError(`float ${v} is not allowed (integers only)`, path);
      if (v > MAX_SAFE || v < -MAX_SAFE) {
        return new CanonicalJsonError(`integer ${v} is outside [-(2**53)+1, (2**53)-1]`, path);
      }
      return null;
    case 'boolean':
      return null;
    case 'object': {
      if (v === null) return null;
      if (seen.has(v)) return new CanonicalJsonError('circular reference', path);
      seen.add(v);
      if (Array.isArray(v)) {
        for (let i = 0; i < v.length; i++) {
          const e = diagnose(v[i], childPath(path, i), lenient, seen);
          if (e) return e;
        }
      } else {
        if (!isPlainObject(v)) return new CanonicalJsonError(`${describe(v)} is not a plain object`, path);
        for (const k of sortedKeys(v)) {
          if (!k.isWellFormed()) return new CanonicalJsonError('key contains a lone UTF-16 surrogate', childPath(path, k));
          const e = diagnose((v as Record<string, unknown>)[k], childPath(path, k), lenient, seen);
          if (e) return e;
        }
      }
      seen.delete(v);
      return null;
    }
    default:
      return new CanonicalJsonError(`${describe(v)} is not a JSON value`, path);
  }
}

function fail(value: unknown, lenient: boolean, cause: unknown): never {
  // Anything but our sentinel or a stack overflow (deep or circular structure) is not ours to explain.
  if (cause !== FAIL && !(cause instanceof RangeError)) throw cause;
  let e: CanonicalJsonError | null;
  try {
    e = diagnose(value, '$', lenient, new Set());
  } catch (inner) {
    if (inner instanceof RangeError) throw new CanonicalJsonError('value is nested too deeply', '$');
    throw inner;
  }
  if (e) throw e;
  if (cause instanceof RangeError) throw new CanonicalJsonError('value is nested too deeply', '$');
  throw new CanonicalJsonError('value is not encodable as canonical JSON', '$');
}

const toText = (b: Buffer): string => b.toString('utf8');
const toCopy = (b: Buffer): Buffer => {
  const out = Buffer.allocUnsafe(b.length);
  b.copy(out);
  return out;
};

/**
 * Encodes `value` as canonical JSON text. Throws {@link CanonicalJsonError} (with the JSON path) for
 * floats, integers outside the safe range, NaN/Infinity, undefined, functions, bigints, symbols,
 * non-plain objects (Date, Map, Buffer, class instances…), lone surrogates and cycles.
 */
export function canonicalJson(value: unknown, options?: CanonicalJsonOptions): string {
  return encode(value, options, toText);
}

/** {@link canonicalJson} as UTF-8 bytes: what is hashed and signed. A fresh Buffer the caller owns. */
export function canonicalJsonBytes(value: unknown, options?: CanonicalJsonOptions): Buffer {
  return encode(value, options, toCopy);
}

/**
 * Encodes `value` and passes the canonical bytes to `use` without copying them; the view is only
 * valid until `use` returns (hashing and signing consume it synchronously). Same errors as
 * {@link canonicalJson}.
 */
export function withCanonicalJsonBytes<R>(value: unknown, options: CanonicalJsonOptions | undefined, use: (bytes: Uint8Array) => R): R {
  return encode(value, options, use);
}
