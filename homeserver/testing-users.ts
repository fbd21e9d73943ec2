// Test helper: registers a user through the HTTP API (open registration, m.login.dummy) and returns
// its credentials. Works against any test server whose registration mode is open (the test default).
export interface RegisteredUser {
  userId: string;
  accessToken: string;
  deviceId: string;
}

export async function registerUser(baseUrl: string, localpart: string, password = 'correct horse battery staple'): Promise<RegisteredUser> {
  const url = `${baseUrl}/_matrix/client/v3/register`;
  const post = (body: unknown) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  // First call without auth returns the UIA session; the second completes m.login.dummy.
  const first = await post({ username: localpart, password });
  const firstBody = (await first.json()) as { session?: string; errcode?: string; error?: string };
  if (first.status !== 401 || !firstBody.session) throw new Error(`register ${localpart}: ${first.status} ${JSON.stringify(firstBody)}`);
  const res = await post({ username: localpart, password, auth: { type: 'm.login.dummy', session: firstBody.session } });
  const body = (await res.json()) as { user_id?: string; access_token?: string; device_id?: string };
  if (res.status !== 200 || !body.user_id || !body.access_token || !body.device_id) throw new Error(`register ${localpart}: ${res.status} ${JSON.stringify(body)}`);
  return { userId: body.user_id, accessToken: body.access_token, deviceId: body.device_id };
}

export interface CallResult {
  status: number;
  body: Record<string, any>;
  headers: Headers;
}

/** A raw JSON call for tests: `call(baseUrl, 'POST', '/_matrix/client/v3/login', { body, token })`. */
export async function call(
  baseUrl: string,
  method: string,
  path: string,
  opts: { token?: string; body?: unknown; rawBody?: string } = {},
): Promise<CallResult> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  const res = await fetch(`${baseUrl}${path}`, {
    method,
    headers,
    ...(opts.rawBody !== undefined ? { body: opts.rawBody } : opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
  });
  const text = await res.text();
  let body: Record<string, any> = {};
  if (text) {
    try {
      body = JSON.parse(text) as Record<string, any>;
    } catch {
      body = { raw: text };
    }
  }
  return { status: res.status, body, headers: res.headers };
}

/** Logs in with a password; returns the raw result. */
export function loginWithPassword(baseUrl: string, user: string, password: string, extra: Record<string, unknown> = {}): Promise<CallResult> {
  return call(baseUrl, 'POST', '/_matrix/client/v3/login', {
    body: { type: 'm.login.password', identifier: { type: 'm.id.user', user }, password, ...extra },
  });
}
