// The spec's error shape: {"errcode": "M_...", "error": "..."} with the spec's status code
// (client-server-api/_index.md "Standard error response", "Common error codes").

export class MatrixError extends Error {
  readonly status: number;
  readonly errcode: string;
  readonly extra: Record<string, unknown>;
  readonly headers: Record<string, string>;
  constructor(status: number, errcode: string, message: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.errcode = errcode;
    this.extra = extra;
    this.headers = headers;
  }
  toJSON(): Record<string, unknown> {
    return { errcode: this.errcode, error: this.message, ...this.extra };
  }
}

export const forbidden = (msg = 'Forbidden', extra?: Record<string, unknown>) => new MatrixError(403, 'M_FORBIDDEN', msg, extra);
export const notFound = (msg = 'Not found') => new MatrixError(404, 'M_NOT_FOUND', msg);
export const badJson = (msg: string) => new MatrixError(400, 'M_BAD_JSON', msg);
export const notJson = (msg = 'Content not JSON') => new MatrixError(400, 'M_NOT_JSON', msg);
export const invalidParam = (msg: string) => new MatrixError(400, 'M_INVALID_PARAM', msg);
export const missingParam = (msg: string) => new MatrixError(400, 'M_MISSING_PARAM', msg);
export const unrecognized = (status = 404, msg = 'Unrecognized request') => new MatrixError(status, 'M_UNRECOGNIZED', msg);
export const tooLarge = (msg = 'Request too large') => new MatrixError(413, 'M_TOO_LARGE', msg);
export const missingToken = () => new MatrixError(401, 'M_MISSING_TOKEN', 'Missing access token');
export const unknownToken = (softLogout = false, msg = 'Unknown or expired access token') =>
  new MatrixError(401, 'M_UNKNOWN_TOKEN', msg, softLogout ? { soft_logout: true } : {});
export const limitExceeded = (retryAfterMs: number) =>
  new MatrixError(429, 'M_LIMIT_EXCEEDED', 'Too many requests', { retry_after_ms: retryAfterMs }, { 'Retry-After': String(Math.max(1, Math.ceil(retryAfterMs / 1000))) });
export const unavailable = (msg = 'Service temporarily unavailable') => new MatrixError(503, 'M_UNKNOWN', msg, {}, { 'Retry-After': '5' });
export const unknown = (msg = 'Internal server error') => new MatrixError(500, 'M_UNKNOWN', msg);
