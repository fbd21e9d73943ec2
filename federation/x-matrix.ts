// X-Matrix request authentication (server-server-api.md "Request Authentication"): the signed JSON
// that wraps a request, the Authorization header that carries its signature, and the check of both.
// Pure: no I/O and no clock; fetching the origin's keys is the caller's business (see auth.ts).
import { signJson, verifyJsonSignature, type SigningKey } from '../spec/signing.ts';

export interface XMatrixParams {
  origin: string;
  /** Absent in requests from servers older than Matrix 1.3. */
  destination?: string;
  key: string;
  sig: string;
}

export class XMatrixParseError extends Error {}

/** What the signature covers: method, request target, both server names and the JSON body (if any). */
export interface SignedRequest {
  method: string;
  /** The request target as sent: the path from `/_matrix/...` plus `?` and the query, if any. */
  uri: string;
  origin: string;
  destination: string;
  /** The JSON-parsed request body; undefined when the request has none. */
  content?: unknown;
}

function requestJson(r: SignedRequest): Record<string, unknown> {
  const json: Record<string, unknown> = { method: r.method, uri: r.uri, origin: r.origin, destination: r.destination };
  if (r.content !== undefined) json.content = r.content;
  return json;
}

// RFC 9110 section 5.6.2: token characters.
const TOKEN_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function quote(v: string): string {
  if (/["\\\r\n]/.test(v)) throw new Error(`X-Matrix parameter value ${JSON.stringify(v)} cannot be sent safely`);
  return `"${v}"`;
}

/**
 * The Authorization header value for a request. Written the way older servers can read it: one space
 * after the scheme, lower-case names, quoted values, no spaces around commas, no backslashes.
 */
export function authorizationHeader(r: SignedRequest, key: SigningKey): string {
  const signed = signJson(requestJson(r), r.origin, key);
  const sig = signed.signatures[r.origin]![key.keyId]!;
  return `X-Matrix origin=${quote(r.origin)},destination=${quote(r.destination)},key=${quote(key.keyId)},sig=${quote(sig)}`;
}

/**
 * Parses an `X-Matrix` Authorization header (RFC 9110 section 11.4 credentials: the scheme, one or more
 * spaces, then comma-separated name=value parameters with optional whitespace around the commas).
 * Names are case-insensitive; values are tokens or quoted strings with backslash escapes. As the spec
 * asks for compatibility with older servers, an unquoted value may contain colons (server names with
 * ports, key ids). Unknown parameters are ignored; a repeated known one is an error.
 */
export function parseXMatrix(header: string): XMatrixParams {
  const m = /^x-matrix +(.*)$/is.exec(header);
  if (!m) throw new XMatrixParseError('not an X-Matrix Authorization header');
  const s = m[1]!;
  const params = new Map<string, string>();
  let i = 0;
  const skipWs = () => {
    while (i < s.length && (s[i] === ' ' || s[i] === '\t')) i++;
  };
  for (;;) {
    skipWs();
    const eq = s.indexOf('=', i);
    if (eq === -1) throw new XMatrixParseError('expected name=value');
    const name = s.slice(i, eq).trim().toLowerCase();
    if (!TOKEN_RE.test(name)) throw new XMatrixParseError(`bad parameter name ${JSON.stringify(name)}`);
    i = eq + 1;
    skipWs();
    let value = '';
    if (s[i] === '"') {
      i++;
      for (;;) {
        if (i >= s.length) throw new XMatrixParseError('unterminated quoted value');
        const c = s[i]!;
        if (c === '"') {
          i++;
          break;
        }
        if (c === '\\') {
          if (i + 1 >= s.length) throw new XMatrixParseError('unterminated escape');
          value += s[i + 1];
          i += 2;
          continue;
        }
        value += c;
        i++;
      }
    } else {
      const start = i;
      while (i < s.length && s[i] !== ',' && s[i] !== ' ' && s[i] !== '\t') i++;
      value = s.slice(start, i);
      // Tokens, plus ':' for older servers; '/', '+' and '=' turn up in unquoted base64 signatures.
      if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z:/=]+$/.test(value)) throw new XMatrixParseError(`bad value for ${name}`);
    }
    if (params.has(name)) throw new XMatrixParseError(`parameter ${name} given twice`);
    params.set(name, value);
    skipWs();
    if (i >= s.length) break;
    if (s[i] !== ',') throw new XMatrixParseError('expected a comma between parameters');
    i++;
  }
  const origin = params.get('origin');
  const key = params.get('key');
  // The header example and every server use `sig`; the parameter list calls it `signature`.
  const sig = params.get('sig') ?? params.get('signature');
  if (!origin) throw new XMatrixParseError('origin is missing');
  if (!key) throw new XMatrixParseError('key is missing');
  if (!sig) throw new XMatrixParseError('sig is missing');
  const destination = params.get('destination');
  return destination === undefined ? { origin, key, sig } : { origin, destination, key, sig };
}

/** Checks the header's signature over the request with the origin's public key for `params.key`. */
export function verifyXMatrix(params: XMatrixParams, r: Omit<SignedRequest, 'origin'>, publicKey: Uint8Array): boolean {
  const json = requestJson({ ...r, origin: params.origin });
  json.signatures = { [params.origin]: { [params.key]: params.sig } };
  return verifyJsonSignature(json, params.origin, params.key, publicKey);
}
