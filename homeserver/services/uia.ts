// User-interactive authentication (client-server-api "User-Interactive Authentication API").
// Sessions live in the database so any process can continue a session another one started. A session
// is bound to the endpoint (method + path without the version prefix) and to the requesting user.
import type { Homeserver } from '../homeserver.ts';
import type { ApiContext } from '../http/api.ts';
import { MatrixError, badJson, forbidden } from '../errors.ts';
import { randomId } from '../auth/secrets.ts';

export interface UiaSessionsTable {
  session_id: string;
  user_id: string | null;
  request_key: string;
  /** JSON array of completed stage types. */
  completed: string;
  /** JSON object of stage results (e.g. the registration token a session reserved). */
  data: string;
  created_ts: number;
  last_used_ts: number;
}

declare module '../storage/schema.ts' {
  interface Tables {
    uia_sessions: UiaSessionsTable;
  }
}

declare module '../homeserver.ts' {
  interface Services {
    uia: UiaService;
  }
}

export interface UiaFlow {
  stages: string[];
}

/** What a stage checker decides for one submitted auth dict. */
export type StageResult = { ok: true; data?: Record<string, unknown> } | { ok: false; errcode: string; error: string };

export interface StageContext {
  hs: Homeserver;
  ctx: ApiContext;
  /** The user the request acts for (null on registration). */
  userId: string | null;
  /** Data stored by earlier stages of this session. */
  data: Record<string, unknown>;
}

export type StageChecker = (auth: Record<string, unknown>, sc: StageContext) => Promise<StageResult>;

export interface UiaOptions {
  flows: UiaFlow[];
  params?: Record<string, Record<string, unknown>>;
  /** The requester (authenticated endpoints) or null (registration). */
  userId: string | null;
}

export interface UiaResult {
  sessionId: string;
  completed: string[];
  data: Record<string, unknown>;
}

/** Sessions older than this are forgotten (the client starts again). */
const SESSION_LIFETIME_MS = 30 * 60_000;

/** A 401 carrying the UIA body: flows, params, session, completed — plus errcode/error only when a stage failed. */
export class UiaRequired extends MatrixError {
  readonly body: Record<string, unknown>;
  constructor(body: Record<string, unknown>, failure?: { errcode: string; error: string }) {
    super(401, failure?.errcode ?? 'M_UNAUTHORIZED', failure?.error ?? 'Additional authentication required', {});
    this.body = failure ? { errcode: failure.errcode, error: failure.error, ...body } : body;
  }
  override toJSON(): Record<string, unknown> {
    return this.body;
  }
}

/** The endpoint a session belongs to: method and path with the version segment removed. */
function requestKey(ctx: ApiContext): string {
  return `${ctx.method} ${ctx.path.replace(/^\/_matrix\/client\/(?:v\d+|r0|unstable)\//, '/')}`;
}

export class UiaService {
  private readonly hs: Homeserver;
  private readonly checkers = new Map<string, StageChecker>();
  constructor(hs: Homeserver) {
    this.hs = hs;
    this.register('m.login.dummy', async () => ({ ok: true }));
  }

  /** Adds a stage type (m.login.password and m.login.registration_token are registered by the accounts module). */
  register(type: string, checker: StageChecker): void {
    this.checkers.set(type, checker);
  }

  /**
   * Runs one round of user-interactive auth for the request. Returns when a flow is complete; otherwise
   * throws UiaRequired (401). Call `finish` after the operation succeeds so the session cannot be replayed.
   */
  async authenticate(ctx: ApiContext, body: Record<string, unknown>, opts: UiaOptions): Promise<UiaResult> {
    const now = this.hs.now();
    const key = requestKey(ctx);
    const raw = body.auth;
    if (raw !== undefined && (raw === null || typeof raw !== 'object' || Array.isArray(raw))) throw badJson('auth must be an object');
    const auth = raw as Record<string, unknown> | undefined;

    const shape = (sessionId: string, completed: string[]) => ({
      flows: opts.flows,
      params: opts.params ?? {},
      session: sessionId,
      ...(completed.length ? { completed } : {}),
    });

    let session: UiaSessionsTable | undefined;
    if (auth && auth.session !== undefined) {
      if (typeof auth.session !== 'string') throw badJson('auth.session must be a string');
      session = await this.hs.db.selectFrom('uia_sessions').selectAll().where('session_id', '=', auth.session).executeTakeFirst();
      if (!session || now - session.created_ts > SESSION_LIFETIME_MS) {
        if (session) await this.hs.db.deleteFrom('uia_sessions').where('session_id', '=', session.session_id).execute();
        throw new MatrixError(400, 'M_UNKNOWN', 'Unknown or expired user-interactive auth session');
      }
      if (session.request_key !== key || session.user_id !== opts.userId) throw forbidden('This auth session belongs to another request');
    }
    if (!session) {
      session = {
        session_id: randomId(18),
        user_id: opts.userId,
        request_key: key,
        completed: '[]',
        data: '{}',
        created_ts: now,
        last_used_ts: now,
      };
      await this.hs.db.insertInto('uia_sessions').values(session).execute();
      if (Math.random() < 0.02) void this.sweep();
    }
    const completed = JSON.parse(session.completed) as string[];
    const data = JSON.parse(session.data) as Record<string, unknown>;

    const isDone = (done: string[]) => opts.flows.some((f) => f.stages.length > 0 && f.stages.every((s, i) => done[i] === s) && done.length >= f.stages.length);
    // No auth dict at all: the spec requires a 401 even when a dummy stage would pass.
    if (!auth) throw new UiaRequired(shape(session.session_id, completed));

    const type = auth.type;
    if (type !== undefined && typeof type !== 'string') throw badJson('auth.type must be a string');
    if (type !== undefined && !completed.includes(type)) {
      const next = [...completed, type];
      // Stages must follow one of the flows in order.
      const allowed = opts.flows.some((f) => next.every((s, i) => f.stages[i] === s));
      if (!allowed) throw new UiaRequired(shape(session.session_id, completed), { errcode: 'M_FORBIDDEN', error: `Auth stage ${type} is not expected now` });
      const checker = this.checkers.get(type);
      if (!checker) throw new UiaRequired(shape(session.session_id, completed), { errcode: 'M_UNRECOGNIZED', error: `Unknown auth type ${type}` });
      const result = await checker(auth, { hs: this.hs, ctx, userId: opts.userId, data });
      // Checkers throw MatrixErrors (e.g. M_LIMIT_EXCEEDED) for failures that are not a wrong credential.
      if (!result.ok) throw new UiaRequired(shape(session.session_id, completed), result);
      completed.push(type);
      Object.assign(data, result.data ?? {});
      await this.hs.db
        .updateTable('uia_sessions')
        .set({ completed: JSON.stringify(completed), data: JSON.stringify(data), last_used_ts: now })
        .where('session_id', '=', session.session_id)
        .execute();
    }
    if (!isDone(completed)) throw new UiaRequired(shape(session.session_id, completed));
    return { sessionId: session.session_id, completed, data };
  }

  /** Ends a session after the protected operation succeeded. */
  async finish(result: UiaResult): Promise<void> {
    await this.hs.db.deleteFrom('uia_sessions').where('session_id', '=', result.sessionId).execute();
  }

  /** Sessions that were abandoned; returns them so callers can release what they reserved. */
  async sweep(): Promise<void> {
    const cutoff = this.hs.now() - SESSION_LIFETIME_MS;
    const stale = await this.hs.db.deleteFrom('uia_sessions').where('created_ts', '<', cutoff).returning(['data']).execute();
    for (const fn of this.abandonListeners) {
      for (const s of stale) {
        try {
          await fn(JSON.parse(s.data) as Record<string, unknown>);
        } catch (err) {
          this.hs.logger.warn({ err }, 'uia abandon listener failed');
        }
      }
    }
  }

  /** Called with the data of sessions that expired unfinished (registration releases its token reservation). */
  readonly abandonListeners: Array<(data: Record<string, unknown>) => void | Promise<void>> = [];
}
