// Push rules per user (client-server-api "Push Rules", modules/push.md). The user's whole ruleset is
// stored as their global `m.push_rules` account data ({"global": ruleset}), which is also how clients
// receive it through /sync. What is stored is re-merged with the predefined rules on every read
// (spec/push-rules.ts mergeWithDefaults), so server-default rules follow the spec version this server
// implements while the user's own rules and their changes to defaults (enabled, actions) are kept.
import {
  PUSH_RULE_KINDS,
  isServerDefaultRuleId,
  mergeWithDefaults,
  upsertUserRule,
  type PushAction,
  type PushCondition,
  type PushRule,
  type PushRuleKind,
  type Ruleset,
  type UserRules,
} from '../../spec/push-rules.ts';
import { MatrixError, notFound } from '../errors.ts';
import type { Homeserver } from '../homeserver.ts';

declare module '../homeserver.ts' {
  interface Services {
    pushRules: PushRuleService;
  }
}

export const PUSH_RULES_TYPE = 'm.push_rules';
const CACHE_MAX = 20_000;
const INVALIDATE_CHANNEL = 'push_rules';

function storedRules(content: Record<string, unknown> | null): UserRules {
  const g = content?.['global'];
  if (g === null || typeof g !== 'object' || Array.isArray(g)) return {};
  const out: UserRules = {};
  for (const kind of PUSH_RULE_KINDS) {
    const list = (g as Record<string, unknown>)[kind];
    if (Array.isArray(list)) out[kind] = list.filter((r) => r !== null && typeof r === 'object' && !Array.isArray(r)) as UserRules[PushRuleKind];
  }
  return out;
}

function findRule(ruleset: Ruleset, kind: PushRuleKind, ruleId: string): PushRule | undefined {
  return ruleset[kind].find((r) => r.rule_id === ruleId);
}

export interface PutRuleBody {
  actions: PushAction[];
  conditions?: PushCondition[];
  pattern?: string;
}

export class PushRuleService {
  private readonly hs: Homeserver;
  private readonly cache = new Map<string, Ruleset>();

  constructor(hs: Homeserver) {
    this.hs = hs;
    // Another process changed someone's rules: forget our copy.
    hs.bus.subscribe(INVALIDATE_CHANNEL, (msg) => {
      if (typeof msg['user_id'] === 'string') this.cache.delete(msg['user_id']);
    });
  }

  private get accountData() {
    return this.hs.services.accounts.accountData;
  }

  /** The user's effective ruleset in evaluation order (cached; do not mutate). */
  async getRuleset(userId: string): Promise<Ruleset> {
    const hit = this.cache.get(userId);
    if (hit) return hit;
    const content = await this.accountData.get(userId, null, PUSH_RULES_TYPE);
    const ruleset = mergeWithDefaults(storedRules(content), userId);
    if (this.cache.size >= CACHE_MAX) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(userId, ruleset);
    return ruleset;
  }

  /** getRuleset for several users, in order; one wait for all, only for those not cached (push evaluation of a whole room). */
  async getRulesets(userIds: readonly string[]): Promise<Ruleset[]> {
    const out: Array<Ruleset | undefined> = userIds.map((u) => this.cache.get(u));
    const missing = out.flatMap((r, i) => (r ? [] : [i]));
    if (missing.length > 0) await Promise.all(missing.map(async (i) => (out[i] = await this.getRuleset(userIds[i]!))));
    return out as Ruleset[];
  }

  /** Read-modify-write of the stored ruleset under the account data lock. `fn` may throw a MatrixError (nothing is written). */
  private async modify(userId: string, fn: (ruleset: Ruleset) => Ruleset): Promise<void> {
    await this.accountData.update(userId, null, PUSH_RULES_TYPE, (current) => {
      const next = fn(mergeWithDefaults(storedRules(current), userId));
      return { global: mergeWithDefaults(next, userId) };
    });
    this.cache.delete(userId);
    await this.hs.bus.publish(INVALIDATE_CHANNEL, { user_id: userId });
  }

  async getRule(userId: string, kind: PushRuleKind, ruleId: string): Promise<PushRule> {
    const rule = findRule(await this.getRuleset(userId), kind, ruleId);
    if (!rule) throw notFound('Unknown push rule');
    return rule;
  }

  /** PUT /pushrules/global/{kind}/{ruleId} (body already validated). */
  async putRule(userId: string, kind: PushRuleKind, ruleId: string, body: PutRuleBody, position: { before?: string; after?: string }): Promise<void> {
    await this.modify(userId, (ruleset) => {
      const own = ruleset[kind].filter((r) => !r.default);
      const rule: Omit<PushRule, 'default' | 'enabled'> = { rule_id: ruleId, actions: body.actions };
      if (body.conditions !== undefined) rule.conditions = body.conditions;
      if (body.pattern !== undefined) rule.pattern = body.pattern;
      const placed = upsertUserRule(own, rule, position);
      if ('error' in placed) {
        // pushrules.yaml: an unknown before/after rule is 404; placing next to a default rule is 400.
        if (placed.error.startsWith('before/after rule not found')) throw notFound(placed.error);
        throw new MatrixError(400, 'M_UNKNOWN', placed.error);
      }
      return { ...ruleset, [kind]: [...placed, ...ruleset[kind].filter((r) => r.default)] };
    });
  }

  async deleteRule(userId: string, kind: PushRuleKind, ruleId: string): Promise<void> {
    await this.modify(userId, (ruleset) => {
      const rule = findRule(ruleset, kind, ruleId);
      if (!rule) throw notFound('Unknown push rule');
      if (rule.default || isServerDefaultRuleId(ruleId)) throw new MatrixError(400, 'M_UNKNOWN', 'Server-default rules cannot be deleted');
      return { ...ruleset, [kind]: ruleset[kind].filter((r) => r.rule_id !== ruleId) };
    });
  }

  async setEnabled(userId: string, kind: PushRuleKind, ruleId: string, enabled: boolean): Promise<void> {
    await this.modify(userId, (ruleset) => {
      if (!findRule(ruleset, kind, ruleId)) throw notFound('Unknown push rule');
      return { ...ruleset, [kind]: ruleset[kind].map((r) => (r.rule_id === ruleId ? { ...r, enabled } : r)) };
    });
  }

  async setActions(userId: string, kind: PushRuleKind, ruleId: string, actions: PushAction[]): Promise<void> {
    await this.modify(userId, (ruleset) => {
      if (!findRule(ruleset, kind, ruleId)) throw notFound('Unknown push rule');
      return { ...ruleset, [kind]: ruleset[kind].map((r) => (r.rule_id === ruleId ? { ...r, actions } : r)) };
    });
  }
}

export function initPushRules(hs: Homeserver): PushRuleService {
  const s = new PushRuleService(hs);
  hs.services.pushRules = s;
  return s;
}
