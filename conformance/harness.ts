// The conformance harness: a real Axon server on 127.0.0.1 (port 0, fresh database), the spec validator,
// a checking fetch that validates every Matrix response, and matrix-js-sdk clients that go through it.
//
//   await withHarness(async (h) => {
//     const alice = h.newClient();
//     await alice.registerRequest({ username: 'alice', password: 'pw', auth: { type: 'm.login.dummy' } });
//   });
//
// After the test body the clients are stopped, the server is stopped, and any response that did not
// conform to the spec fails the test (listing method, path, status and each field error).
import { createHook, type AsyncHook } from 'node:async_hooks';
import { createClient, type MatrixClient } from 'matrix-js-sdk';
import { logger as globalSdkLogger, type Logger } from 'matrix-js-sdk/lib/logger.js';
import { SpecValidator } from './openapi.ts';
import { createCheckingFetch, type CheckingFetch, type CheckingFetchOptions } from './recording-fetch.ts';

type TestServerOptions = NonNullable<Parameters<typeof import('../homeserver/testing.ts').startTestServer>[0]>;

export interface Harness {
  /** The started server (for tests that reach into it, e.g. to link a second server for federation). */
  server: import('../homeserver/testing.ts').TestServer;
  baseUrl: string;
  serverName: string;
  validator: SpecValidator;
  /** Checks every /_matrix/ response; use it for raw calls too. */
  fetch: CheckingFetch;
  /** A matrix-js-sdk client whose every request goes through `fetch`. */
  newClient(userId?: string, accessToken?: string, deviceId?: string): MatrixClient;
}

export interface HarnessOptions {
  server?: TestServerOptions;
  fetch?: Omit<CheckingFetchOptions, 'fetch'>;
  /** Leave violations for the test to inspect instead of failing at the end. */
  allowViolations?: boolean;
}

// matrix-js-sdk arms a setTimeout for every request's local timeout (http-api/utils.js timeoutSignal)
// and never clears it, so a stopped client still holds the process open for up to ~2 minutes (the
// long-poll's timeout). The harness notes the timers made while a journey runs and unrefs them once its
// clients are stopped: they still fire if the process lives on, but no longer keep it alive.
const liveTimers = new Set<{ unref(): unknown }>();
let timerHook: AsyncHook | null = null;
function watchTimers(): void {
  timerHook ??= createHook({
    init(_id, type, _trigger, resource) {
      if (type === 'Timeout') liveTimers.add(resource as { unref(): unknown });
    },
    destroy() {},
  }).enable();
}
function releaseTimers(): void {
  for (const t of liveTimers) t.unref();
  liveTimers.clear();
}

// matrix-js-sdk also logs through a global logger besides the per-client one (room and RTC session
// logs, send queue): silence it too unless AXON_CONFORMANCE_LOG is set.
if (!process.env.AXON_CONFORMANCE_LOG) {
  const l = globalSdkLogger as unknown as { methodFactory: () => () => void; rebuild(): void };
  l.methodFactory = () => () => {};
  l.rebuild();
}

let validatorPromise: Promise<SpecValidator> | null = null;

/** The spec validator, loaded once per process. */
export function sharedValidator(): Promise<SpecValidator> {
  validatorPromise ??= SpecValidator.load();
  return validatorPromise;
}

/** A logger that drops everything unless AXON_CONFORMANCE_LOG is set (matrix-js-sdk is very chatty). */
function sdkLogger(): Logger | undefined {
  if (process.env.AXON_CONFORMANCE_LOG) return undefined;
  const noop = (): void => {};
  const quiet: Logger = { trace: noop, debug: noop, info: noop, warn: noop, error: noop, getChild: () => quiet };
  return quiet;
}

export async function withHarness(fn: (h: Harness) => Promise<void>, opts: HarnessOptions = {}): Promise<void> {
  watchTimers();
  const validator = await sharedValidator();
  const { startTestServer } = await import('../homeserver/testing.ts');
  const server = await startTestServer(opts.server);
  const checkingFetch = createCheckingFetch(validator, opts.fetch);
  const clients: MatrixClient[] = [];
  const logger = sdkLogger();
  const h: Harness = {
    server,
    baseUrl: server.baseUrl,
    serverName: server.serverName,
    validator,
    fetch: checkingFetch,
    newClient(userId?: string, accessToken?: string, deviceId?: string): MatrixClient {
      const client = createClient({
        baseUrl: server.baseUrl,
        fetchFn: checkingFetch,
        ...(userId !== undefined ? { userId } : {}),
        ...(accessToken !== undefined ? { accessToken } : {}),
        ...(deviceId !== undefined ? { deviceId } : {}),
        ...(logger ? { logger } : {}),
      });
      clients.push(client);
      return client;
    },
  };
  try {
    await fn(h);
  } finally {
    for (const c of clients) {
      try {
        c.stopClient();
      } catch {
        /* already stopped */
      }
    }
    await server.stop();
    releaseTimers();
  }
  if (!opts.allowViolations) checkingFetch.assertNoViolations();
}
