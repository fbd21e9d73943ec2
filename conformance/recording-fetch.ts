// A fetch that checks every Matrix JSON response it passes on against the spec (conformance/openapi.ts).
//
// Hand it to matrix-js-sdk (`createClient({ baseUrl, fetchFn })`) or call it directly in tests: responses
// under /_matrix/ and /.well-known/matrix/ are cloned, parsed and validated before the caller sees them;
// what does not conform is collected, and `assertNoViolations()` throws listing every field error.
import type { SpecValidator } from './openapi.ts';

type FetchInput = Parameters<typeof fetch>[0];

export interface Violation {
  method: string;
  path: string;
  /** 0 for a request body violation. */
  status: number;
  /** 'response' (the server's fault) or 'request' (the caller's, when checkRequests is on). */
  kind: 'response' | 'request';
  errors: string[];
}

export interface UnknownOperation {
  method: string;
  path: string;
  status: number;
}

export interface CheckingFetchOptions {
  /** The fetch to wrap (default: globalThis.fetch at call time). */
  fetch?: typeof fetch;
  /** Also validate JSON request bodies against the spec (recorded with kind 'request'). */
  checkRequests?: boolean;
  /** Called as each violation is recorded. */
  onViolation?: (v: Violation) => void;
  /** Exchanges to leave unchecked, e.g. an endpoint a test deliberately misuses. */
  ignore?: (method: string, path: string, status: number) => boolean;
}

export type CheckingFetch = typeof fetch & {
  getViolations(): Violation[];
  getUnknownOperations(): UnknownOperation[];
  /** How many responses were validated against a schema. */
  checkedCount(): number;
  /** Throws an Error listing method, path, status and each field error of every violation. */
  assertNoViolations(): void;
  /** Forgets everything recorded so far. */
  reset(): void;
};

function requestMethod(input: FetchInput, init?: RequestInit): string {
  if (init?.method) return init.method.toUpperCase();
  if (typeof Request !== 'undefined' && input instanceof Request) return input.method.toUpperCase();
  return 'GET';
}

function requestUrl(input: FetchInput): URL | null {
  try {
    if (input instanceof URL) return input;
    if (typeof input === 'string') return new URL(input);
    return new URL(input.url);
  } catch {
    return null;
  }
}

function isJsonType(contentType: string | null): boolean {
  if (!contentType) return false;
  const t = contentType.split(';')[0]!.trim().toLowerCase();
  return t === 'application/json' || t.endsWith('+json');
}

function isMatrixPath(path: string): boolean {
  return path.startsWith('/_matrix/') || path.startsWith('/.well-known/matrix/');
}

/** Formats violations one per line per field error. */
export function formatViolations(violations: Violation[]): string {
  const lines: string[] = [];
  for (const v of violations) {
    const head = v.kind === 'request' ? `${v.method} ${v.path} (request body)` : `${v.method} ${v.path} -> ${v.status}`;
    lines.push(head);
    for (const e of v.errors) lines.push(`    ${e}`);
  }
  return lines.join('\n');
}

export function createCheckingFetch(validator: SpecValidator, opts: CheckingFetchOptions = {}): CheckingFetch {
  let violations: Violation[] = [];
  let unknown: UnknownOperation[] = [];
  let checked = 0;

  const record = (v: Violation): void => {
    violations.push(v);
    opts.onViolation?.(v);
  };

  const checkRequestBody = (method: string, path: string, init?: RequestInit): void => {
    if (!opts.checkRequests || typeof init?.body !== 'string') return;
    const headers = new Headers(init.headers);
    if (headers.has('content-type') && !isJsonType(headers.get('content-type'))) return;
    let body: unknown;
    try {
      body = JSON.parse(init.body);
    } catch {
      return; // not JSON: nothing the JSON schemas can say
    }
    const r = validator.checkRequest(method, path, body);
    if (r && r !== 'unknown') record({ method, path, status: 0, kind: 'request', errors: r.errors });
  };

  const wrapped = async (input: FetchInput, init?: RequestInit): Promise<Response> => {
    const inner = opts.fetch ?? globalThis.fetch;
    const method = requestMethod(input, init);
    const url = requestUrl(input);
    const path = url?.pathname ?? '';
    if (url && isMatrixPath(path)) checkRequestBody(method, path, init);
    const res = await inner(input, init);
    if (!url || !isMatrixPath(path) || method === 'HEAD' || method === 'OPTIONS') return res;
    if (opts.ignore?.(method, path, res.status)) return res;
    const contentType = res.headers.get('content-type');
    if (!isJsonType(contentType)) {
      // A documented JSON response must come as JSON (media downloads and redirects are not JSON).
      const types = validator.responseContentTypes(method, path, res.status);
      if (types === 'unknown') {
        unknown.push({ method, path, status: res.status });
      } else if (types.length > 0 && types.every((t) => isJsonType(t)) && res.status !== 204) {
        record({ method, path, status: res.status, kind: 'response', errors: [`$: content-type is ${contentType ?? '(none)'}, the spec documents application/json`] });
      }
      return res;
    }
    let text: string;
    try {
      text = await res.clone().text();
    } catch {
      return res; // aborted or failed mid-body: the caller sees that error itself
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (e) {
      record({ method, path, status: res.status, kind: 'response', errors: [`$: body is not valid JSON (${(e as Error).message})`] });
      return res;
    }
    const r = validator.checkResponse(method, path, res.status, body);
    if (r === 'unknown') unknown.push({ method, path, status: res.status });
    else {
      checked++;
      if (r) record({ method: r.method, path: r.path, status: r.status, kind: 'response', errors: r.errors });
    }
    return res;
  };

  return Object.assign(wrapped, {
    getViolations: () => [...violations],
    getUnknownOperations: () => [...unknown],
    checkedCount: () => checked,
    assertNoViolations(): void {
      if (violations.length === 0) return;
      throw new Error(`${violations.length} exchange(s) do not conform to the Matrix spec:\n${formatViolations(violations)}`);
    },
    reset(): void {
      violations = [];
      unknown = [];
      checked = 0;
    },
  }) as CheckingFetch;
}
