// Reading request bodies: JSON with a size limit (M_TOO_LARGE 413), M_NOT_JSON for anything that
// does not parse, M_BAD_JSON when the JSON is not an object where one is required.
import type { Context } from 'koa';
import { MatrixError, notJson, tooLarge } from '../errors.ts';

export async function readRawBody(ctx: Context, limit: number): Promise<Buffer> {
  const declared = ctx.request.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) throw tooLarge(`Request body exceeds ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      ctx.req.pause();
      throw tooLarge(`Request body exceeds ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

const cache = new WeakMap<Context, unknown>();

/** The request's JSON body as an object. An empty body reads as {} (clients send none on some POSTs). */
export async function readJsonObject(ctx: Context): Promise<Record<string, unknown>> {
  if (cache.has(ctx)) return cache.get(ctx) as Record<string, unknown>;
  const limit = (ctx.state.maxJsonBodyBytes as number | undefined) ?? 1024 * 1024;
  const raw = await readRawBody(ctx, limit);
  let value: unknown;
  if (raw.length === 0) value = {};
  else {
    try {
      value = JSON.parse(raw.toString('utf8'));
    } catch {
      throw notJson('Content not JSON');
    }
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new MatrixError(400, 'M_NOT_JSON', 'Content must be a JSON object');
  cache.set(ctx, value);
  return value as Record<string, unknown>;
}
