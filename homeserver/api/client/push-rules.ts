// The push rules API (pushrules.yaml, client-server-api "Push Rules: API"): read the ruleset, add or
// replace a rule (placed with before/after), delete it, and read or change `enabled` and `actions`.
import { isPushRuleKind, isValidRuleId, validateActions, validateRuleBody, type PushAction, type PushCondition, type PushRuleKind } from '../../../spec/push-rules.ts';
import type { Homeserver } from '../../homeserver.ts';
import { clientPaths, type Api, type ApiContext } from '../../http/api.ts';
import { readJsonObject } from '../../http/body.ts';
import { requireAuth } from '../../auth/access-tokens.ts';
import { MatrixError, badJson, invalidParam } from '../../errors.ts';

function scopeAndKind(ctx: ApiContext): PushRuleKind {
  if (ctx.params.scope !== 'global') throw invalidParam('Unknown push rule scope (only "global" exists)');
  const kind = ctx.params.kind;
  if (!isPushRuleKind(kind)) throw invalidParam(`Unknown push rule kind: ${String(kind)}`);
  return kind;
}

function queryString(ctx: ApiContext, key: string): string | undefined {
  const v = ctx.query[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw invalidParam(`${key} must be given once`);
  return v;
}

export function pushRuleRoutes(api: Api, hs: Homeserver): void {
  const rules = () => hs.services.pushRules;
  const auth = requireAuth(hs.tokens);

  api.get('client', clientPaths('/pushrules/'), auth, async (ctx: ApiContext) => {
    ctx.body = { global: await rules().getRuleset(ctx.state.requester!.userId) };
  });

  api.get('client', clientPaths('/pushrules/:scope/'), auth, async (ctx: ApiContext) => {
    if (ctx.params.scope !== 'global') throw invalidParam('Unknown push rule scope (only "global" exists)');
    ctx.body = await rules().getRuleset(ctx.state.requester!.userId);
  });

  const rulePath = '/pushrules/:scope/:kind/:ruleId';

  api.get('client', clientPaths(rulePath), auth, async (ctx: ApiContext) => {
    ctx.body = await rules().getRule(ctx.state.requester!.userId, scopeAndKind(ctx), ctx.params.ruleId!);
  });

  api.put('client', clientPaths(rulePath), auth, async (ctx: ApiContext) => {
    const kind = scopeAndKind(ctx);
    const ruleId = ctx.params.ruleId!;
    const body = await readJsonObject(ctx);
    const problem = validateRuleBody(kind, body, ruleId);
    if (problem) throw new MatrixError(400, isValidRuleId(kind, ruleId) ? 'M_BAD_JSON' : 'M_INVALID_PARAM', problem);
    const before = queryString(ctx, 'before');
    const after = queryString(ctx, 'after');
    await rules().putRule(
      ctx.state.requester!.userId,
      kind,
      ruleId,
      {
        actions: body['actions'] as PushAction[],
        ...(body['conditions'] !== undefined ? { conditions: body['conditions'] as PushCondition[] } : {}),
        ...(typeof body['pattern'] === 'string' ? { pattern: body['pattern'] } : {}),
      },
      { ...(before !== undefined ? { before } : {}), ...(after !== undefined ? { after } : {}) },
    );
    ctx.body = {};
  });

  api.delete('client', clientPaths(rulePath), auth, async (ctx: ApiContext) => {
    await rules().deleteRule(ctx.state.requester!.userId, scopeAndKind(ctx), ctx.params.ruleId!);
    ctx.body = {};
  });

  api.get('client', clientPaths(`${rulePath}/enabled`), auth, async (ctx: ApiContext) => {
    const rule = await rules().getRule(ctx.state.requester!.userId, scopeAndKind(ctx), ctx.params.ruleId!);
    ctx.body = { enabled: rule.enabled };
  });

  api.put('client', clientPaths(`${rulePath}/enabled`), auth, async (ctx: ApiContext) => {
    const kind = scopeAndKind(ctx);
    const body = await readJsonObject(ctx);
    if (typeof body['enabled'] !== 'boolean') throw badJson('enabled must be true or false');
    await rules().setEnabled(ctx.state.requester!.userId, kind, ctx.params.ruleId!, body['enabled']);
    ctx.body = {};
  });

  api.get('client', clientPaths(`${rulePath}/actions`), auth, async (ctx: ApiContext) => {
    const rule = await rules().getRule(ctx.state.requester!.userId, scopeAndKind(ctx), ctx.params.ruleId!);
    ctx.body = { actions: rule.actions };
  });

  api.put('client', clientPaths(`${rulePath}/actions`), auth, async (ctx: ApiContext) => {
    const kind = scopeAndKind(ctx);
    const body = await readJsonObject(ctx);
    const problem = validateActions(body['actions']);
    if (problem) throw badJson(problem);
    await rules().setActions(ctx.state.requester!.userId, kind, ctx.params.ruleId!, body['actions'] as PushAction[]);
    ctx.body = {};
  });
}
