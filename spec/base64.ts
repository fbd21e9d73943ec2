// Unpadded Base64 (appendices.md "Unpadded Base64" and "URL-safe unpadded Base64").
// Encoding never pads. Decoding accepts input with or without `=` padding, as the spec asks
// ("implementations SHOULD accept input with or without padding characters"), but rejects anything
// else that is not Base64: node's own decoder silently skips invalid characters, which would let
// garbled signatures or keys decode to something.

const STD_RE = /^[A-Za-z0-9+/]*$/;
const URL_RE = /^[A-Za-z0-9_-]*$/;

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Standard alphabet, no padding: `UNPADDED_BASE64("fo") = "Zm8"`. */
export function encodeBase64(bytes: Uint8Array): string {
  const s = asBuffer(bytes).toString('base64');
  // At most two trailing `=`; slicing is cheaper than a regex replace on this hot path (signatures).
  if (s.charCodeAt(s.length - 1) !== 61 /* = */) return s;
  return s.charCodeAt(s.length - 2) === 61 ? s.slice(0, -2) : s.slice(0, -1);
}

/** URL-safe alphabet (`-` for 62, `_` for 63), no padding. Used for v4+ event ids and v12 room ids. */
export function encodeBase64Url(bytes: Uint8Array): string {
  return asBuffer(bytes).toString('base64url');
}

/** Strips valid padding and checks the length; returns the unpadded body or throws. */
function unpad(s: string, what: string): string {
  let body = s;
  const eq = s.indexOf('=');
  if (eq !== -1) {
    body = s.slice(0, eq);
    const pad = s.slice(eq);
    // Padding must be exactly what completes the last quantum to four characters.
    if (pad !== '=' && pad !== '==') throw new Error(`invalid ${what}: bad padding`);
    if (s.length % 4 !== 0) throw new Error(`invalid ${what}: padded length is not a multiple of 4`);
  }
  // One leftover character carries only 6 bits: not a whole byte, so no encoder produces it.
  if (body.length % 4 === 1) throw new Error(`invalid ${what}: impossible length ${body.length}`);
  return body;
}

function decode(s: string, re: RegExp, encoding: 'base64' | 'base64url', what: string): Uint8Array {
  if (typeof s !== 'string') throw new TypeError(`invalid ${what}: not a string`);
  const body = unpad(s, what);
  if (!re.test(body)) throw new Error(`invalid ${what}: character outside the alphabet`);
  const buf = Buffer.from(body, encoding);
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** Standard alphabet; accepts padded or unpadded input; throws on anything else. */
export function decodeBase64(s: string): Uint8Array {
  return decode(s, STD_RE, 'base64', 'base64');
}

/** URL-safe alphabet; accepts padded or unpadded input; throws on anything else (including `+` `/`). */
export function decodeBase64Url(s: string): Uint8Array {
  return decode(s, URL_RE, 'base64url', 'url-safe base64');
}

/** Like {@link decodeBase64} but returns null instead of throwing. */
export function tryDecodeBase64(s: unknown): Uint8Array | null {
  if (typeof s !== 'string') return null;
  try {
    return decodeBase64(s);
  } catch {
    return null;
  }
}
