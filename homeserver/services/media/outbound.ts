// Outbound HTTP on behalf of users (URL previews, redirect targets given by remote servers) without
// letting anyone reach the internal network: every address is checked after DNS resolution, the
// connection goes to exactly the address that was checked (no second lookup, so no DNS rebinding),
// and every redirect is checked again the same way. Bodies are read with a byte cap and a deadline.
import { lookup as dnsLookup } from 'node:dns/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { BlockList, isIP } from 'node:net';
import type { LookupFunction } from 'node:net';

// Special-purpose ranges (IANA IPv4/IPv6 special-purpose registries) that are never fetched.
const DENIED_V4 = [
  '0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8', '169.254.0.0/16', '172.16.0.0/12', '192.0.0.0/24',
  '192.0.2.0/24', '192.88.99.0/24', '192.168.0.0/16', '198.18.0.0/15', '198.51.100.0/24', '203.0.113.0/24',
  '224.0.0.0/4', '240.0.0.0/4', '255.255.255.255/32',
];
const DENIED_V6 = [
  '::/128', '::1/128', '::/96', '100::/64', '2001::/23', '2001:db8::/32', 'fc00::/7', 'fe80::/10', 'fec0::/10', 'ff00::/8',
];

export class OutboundRefused extends Error {}
export class OutboundFailed extends Error {}
export class OutboundTooLarge extends Error {}

function addRange(list: BlockList, cidr: string): void {
  const [addr, bits] = cidr.split('/');
  const family = isIP(addr ?? '');
  if (!family) throw new Error(`not an address range: ${cidr}`);
  const prefix = bits === undefined ? (family === 4 ? 32 : 128) : Number(bits);
  list.addSubnet(addr!, prefix, family === 4 ? 'ipv4' : 'ipv6');
}

/** Which addresses outbound requests may connect to. */
export class IpPolicy {
  private readonly denied = new BlockList();
  private readonly allowed = new BlockList();
  constructor(extraDenied: readonly string[] = [], allowed: readonly string[] = []) {
    for (const r of [...DENIED_V4, ...DENIED_V6, ...extraDenied]) addRange(this.denied, r);
    for (const r of allowed) addRange(this.allowed, r);
  }

  /** IPv4 addresses hidden inside IPv6 ones (mapped, NAT64, 6to4) are judged as IPv4. */
  private static embeddedV4(ip: string): string | null {
    const lower = ip.toLowerCase();
    const mapped = /^(?:::ffff:|::ffff:0:|64:ff9b::)(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
    if (mapped) return mapped[1]!;
    const groups = expandV6(lower);
    if (!groups) return null;
    const v4 = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
    if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) return v4(groups[6]!, groups[7]!); // ::ffff:a.b.c.d
    if (groups[0] === 0x64 && groups[1] === 0xff9b && groups.slice(2, 6).every((g) => g === 0)) return v4(groups[6]!, groups[7]!); // NAT64
    if (groups[0] === 0x2002) return v4(groups[1]!, groups[2]!); // 6to4
    return null;
  }

  isAllowed(ip: string): boolean {
    const family = isIP(ip);
    if (family === 0) return false;
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (this.allowed.check(ip, type)) return true;
    if (this.denied.check(ip, type)) return false;
    if (family === 6) {
      const v4 = IpPolicy.embeddedV4(ip);
      if (v4) return this.isAllowed(v4);
    }
    return true;
  }
}

function expandV6(ip: string): number[] | null {
  let s = ip;
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(s);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    s = s.slice(0, v4.index) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const fill = halves.length === 2 ? 8 - head.length - tail.length : 0;
  const parts = [...head, ...Array(Math.max(0, fill)).fill('0'), ...tail];
  if (parts.length !== 8) return null;
  return parts.map((p) => parseInt(p, 16));
}

/** Resolves a host to one address every answer of which passes the policy; throws OutboundRefused. */
export async function resolveChecked(host: string, policy: IpPolicy): Promise<{ address: string; family: 4 | 6 }> {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  const literal = isIP(bare);
  if (literal) {
    if (!policy.isAllowed(bare)) throw new OutboundRefused(`address ${bare} is not allowed`);
    return { address: bare, family: literal as 4 | 6 };
  }
  let answers: { address: string; family: number }[];
  try {
    answers = await dnsLookup(bare, { all: true, verbatim: true });
  } catch (err) {
    throw new OutboundFailed(`cannot resolve ${bare}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  if (answers.length === 0) throw new OutboundFailed(`cannot resolve ${bare}`);
  // Any denied answer refuses the host: otherwise a name with one public and one private address
  // could be steered to the private one.
  for (const a of answers) if (!policy.isAllowed(a.address)) throw new OutboundRefused(`${bare} resolves to ${a.address}, which is not allowed`);
  return { address: answers[0]!.address, family: answers[0]!.family as 4 | 6 };
}

export interface OutboundOptions {
  policy: IpPolicy;
  timeoutMs: number;
  maxRedirects: number;
  userAgent: string;
  headers?: Record<string, string>;
  /** Aborts everything when fired (the caller's deadline). */
  signal?: AbortSignal;
}

export interface OutboundResponse {
  url: string;
  status: number;
  headers: IncomingMessage['headers'];
  /** The body stream; the caller reads it (with readCapped) or destroys it. */
  body: IncomingMessage;
}

/** GET with checked addresses and redirects followed (each one checked). */
export async function safeGet(rawUrl: string, opts: OutboundOptions): Promise<OutboundResponse> {
  const deadline = AbortSignal.timeout(opts.timeoutMs);
  const signal = opts.signal ? AbortSignal.any([opts.signal, deadline]) : deadline;
  let url = rawUrl;
  for (let hop = 0; ; hop++) {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new OutboundFailed('not a valid URL');
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new OutboundRefused(`scheme ${u.protocol} is not allowed`);
    if (u.username || u.password) throw new OutboundRefused('URLs with credentials are not fetched');
    const { address, family } = await resolveChecked(u.hostname, opts.policy);
    signal.throwIfAborted();
    const res = await requestPinned(u, address, family, opts, signal);
    const status = res.statusCode ?? 0;
    const location = res.headers.location;
    if ([301, 302, 303, 307, 308].includes(status) && location) {
      res.resume();
      if (hop >= opts.maxRedirects) throw new OutboundFailed('too many redirects');
      url = new URL(location, u).href;
      continue;
    }
    return { url: u.href, status, headers: res.headers, body: res };
  }
}

function requestPinned(u: URL, address: string, family: 4 | 6, opts: OutboundOptions, signal: AbortSignal): Promise<IncomingMessage> {
  // The connection goes to the checked address whatever the resolver would say now.
  const pinned: LookupFunction = (_host, options, cb) => {
    if ((options as { all?: boolean }).all) (cb as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [{ address, family }]);
    else cb(null, address, family);
  };
  const request = u.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(
      u,
      {
        method: 'GET',
        lookup: pinned,
        signal,
        headers: { 'user-agent': opts.userAgent, accept: '*/*', 'accept-encoding': 'identity', ...(opts.headers ?? {}) },
      },
      resolve,
    );
    req.on('error', (err) => reject(signal.aborted ? new OutboundFailed('timed out') : new OutboundFailed(err.message)));
    req.end();
  });
}

/**
 * Reads a body up to `max` bytes. With `truncate`, stops quietly at the cap (enough of a page to find
 * its <head>); otherwise a larger body throws OutboundTooLarge.
 */
export async function readCapped(res: IncomingMessage, max: number, truncate: boolean): Promise<Buffer> {
  const declared = Number(res.headers['content-length']);
  if (!truncate && Number.isFinite(declared) && declared > max) {
    res.destroy();
    throw new OutboundTooLarge(`body of ${declared} bytes exceeds ${max}`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const c of res as AsyncIterable<Buffer>) {
      if (size + c.length > max) {
        if (!truncate) throw new OutboundTooLarge(`body exceeds ${max} bytes`);
        chunks.push(c.subarray(0, max - size));
        size = max;
        break;
      }
      chunks.push(c);
      size += c.length;
    }
  } catch (err) {
    if (err instanceof OutboundTooLarge) throw err;
    throw new OutboundFailed((err as Error).message);
  } finally {
    res.destroy();
  }
  return Buffer.concat(chunks, size);
}
