// Inbound request authentication (server-server-api.md "Request Authentication"): an incoming
// federation request is accepted only with an X-Matrix Authorization header whose destination (when
// given) is this server and whose signature over the method, target and body verifies with a current
// verify key of the claimed origin. Every failure is one error type that HTTP layers turn into
// 401 M_UNAUTHORIZED.
import { isValidServerName } from '../spec/identifiers.ts';
import { parseXMatrix, verifyXMatrix, XMatrixParseError } from './x-matrix.ts';

export class FederationAuthError extends Error {}

/** The keys the verifier needs: a current verify key of a server, or null when there is none. */
export interface VerifyKeyLookup {
  verifyKey(serverName: string, keyId: string): Promise<Uint8Array | null>;
}

export interface IncomingRequest {
  method: string;
  /** The request target exactly as received (path and query). */
  uri: string;
  /** The Authorization header(s), as the HTTP layer gives them. */
  authorization: string | string[] | undefined;
  /** The JSON-parsed body, undefined when the request has none. */
  content?: unknown;
}

export interface AuthenticatedOrigin {
  origin: string;
  keyId: string;
}

export class RequestAuthenticator {
  private readonly serverName: string;
  private readonly keys: VerifyKeyLookup;
  constructor(serverName: string, keys: VerifyKeyLookup) {
    this.serverName = serverName;
    this.keys = keys;
  }

  /**
   * The origin of a correctly signed request; throws FederationAuthError otherwise. With several
   * X-Matrix headers (one per key), the first one that verifies wins.
   */
  async authenticate(req: IncomingRequest): Promise<AuthenticatedOrigin> {
    const headers = (Array.isArray(req.authorization) ? req.authorization : req.authorization ? [req.authorization] : []).filter((h) => /^x-matrix\s/i.test(h));
    if (headers.length === 0) throw new FederationAuthError('Missing X-Matrix Authorization header');
    let last = new FederationAuthError('Invalid X-Matrix Authorization header');
    for (const h of headers.slice(0, 4)) {
      try {
        return await this.check(h, req);
      } catch (err) {
        if (!(err instanceof FederationAuthError)) throw err;
        last = err;
      }
    }
    throw last;
  }

  private async check(header: string, req: IncomingRequest): Promise<AuthenticatedOrigin> {
    let params;
    try {
      params = parseXMatrix(header);
    } catch (err) {
      if (err instanceof XMatrixParseError) throw new FederationAuthError(`Malformed X-Matrix Authorization header: ${err.message}`);
      throw err;
    }
    if (!isValidServerName(params.origin)) throw new FederationAuthError('X-Matrix origin is not a valid server name');
    // "If this property is included, but the value does not match the receiving server's name, the
    // receiving server must deny the request with an HTTP status code 401 Unauthorized."
    if (params.destination !== undefined && params.destination !== this.serverName) throw new FederationAuthError('X-Matrix destination is not this server');
    if (params.origin === this.serverName) throw new FederationAuthError('Requests claiming to come from this server are not accepted');
    if (!/^ed25519:[a-zA-Z0-9_]+$/.test(params.key)) throw new FederationAuthError('Unsupported X-Matrix key id');
    const publicKey = await this.keys.verifyKey(params.origin, params.key);
    if (!publicKey) throw new FederationAuthError(`No current key ${params.key} for ${params.origin}`);
    const ok = verifyXMatrix(params, { method: req.method, uri: req.uri, destination: this.serverName, ...(req.content !== undefined ? { content: req.content } : {}) }, publicKey);
    if (!ok) throw new FederationAuthError('X-Matrix signature does not verify');
    return { origin: params.origin, keyId: params.key };
  }
}
