// Push rules for every member of a room at once: the same results as evaluatePushRules
// (spec/push-rules.ts) called member by member, at a fraction of the cost.
//
// What makes it cheap: in evaluatePushRules the only per-user inputs are the user's ruleset and their
// display name (conditionMatches reads ctx.displayName for contains_display_name and otherwise only
// room/event facts: member count, sender power, notification levels). Users who never edited their
// rules have rulesets that differ only where the predefined rules name the user
// (.m.rule.invite_for_me's `state_key` pattern, .m.rule.is_user_mention's `m.mentions.user_ids`
// value). So each ruleset is compiled into a *template*: the same rules with every condition whose
// pattern/value is exactly the user's id marked as user-bound. Rulesets with equal templates share
// one; per event, each distinct template evaluates its user-independent conditions once and keeps
// the rules that can still match, up to the first one that matches for everyone. Per member only the
// user-bound conditions and contains_display_name are left, checked with that user's own condition
// objects (so each result is exactly what evaluatePushRules gives, down to the returned rule object).
//
// Caching: compiled rulesets are kept per Ruleset object (WeakMap). Callers hand in immutable
// rulesets and get a new object when the user's rules change (services/push-rules.ts replaces its
// cached object on every edit and on the bus's invalidation), so an edit is picked up at once.

import {
  PUSH_RULE_KINDS,
  conditionMatches,
  ruleMatches,
  stripHistoricalActions,
  type PushAction,
  type PushCondition,
  type PushContext,
  type PushEvaluation,
  type PushRule,
  type PushRuleKind,
  type Ruleset,
} from './push-rules.ts';

export interface PushTarget {
  userId: string;
  /** The user's display name in this room (contains_display_name). */
  displayName?: string | null;
  /** The user's effective ruleset (mergeWithDefaults); never mutated, compiled once per object. */
  ruleset: Ruleset;
}

/** The per-room facts of a PushContext: the same for every member. */
export type SharedPushContext = Omit<PushContext, 'userId' | 'displayName'>;

interface TemplateRule {
  kind: PushRuleKind;
  /** A representative rule (the first ruleset compiled into this template): its user-independent parts equal everyone's. */
  rule: PushRule;
  /** Indexes into rule.conditions that depend on the user (user-bound values, contains_display_name). */
  dynamic: number[];
  /** The rule's actions with historical ones stripped (equal for every sharer: part of the key). */
  actions: PushAction[];
}

interface Template {
  /** Enabled rules in evaluation order. */
  rules: TemplateRule[];
}

interface CompiledRuleset {
  userId: string;
  template: Template;
  /** The user's own rule objects, aligned with template.rules. */
  rules: PushRule[];
}

const compiled = new WeakMap<Ruleset, CompiledRuleset>();
const templates = new Map<string, Template>();
const TEMPLATES_MAX = 10_000;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Whether the condition's outcome depends on which user is evaluated. */
function isUserBound(cond: PushCondition, userId: string): boolean {
  if (!isPlainObject(cond)) return false;
  if (cond.kind === 'contains_display_name') return true;
  if (cond.kind === 'event_match') return cond.pattern === userId;
  if (cond.kind === 'event_property_is' || cond.kind === 'event_property_contains') return cond.value === userId;
  return false;
}

/** A condition for the template key: a user-bound user id is left out (and marked), the rest kept verbatim. */
function conditionKey(cond: PushCondition, userId: string): unknown {
  if (!isPlainObject(cond) || cond.kind === 'contains_display_name' || !isUserBound(cond, userId)) return ['L', cond];
  const { pattern: _p, value: _v, ...rest } = cond;
  return ['U', cond.kind === 'event_match' ? 'pattern' : 'value', rest];
}

function compile(ruleset: Ruleset, userId: string): CompiledRuleset {
  const keyParts: unknown[] = [];
  const own: PushRule[] = [];
  const enabled: Array<{ kind: PushRuleKind; rule: PushRule }> = [];
  for (const kind of PUSH_RULE_KINDS) {
    for (const rule of ruleset[kind] ?? []) {
      if (rule.enabled !== true) continue; // "Disabled rules never match."
      enabled.push({ kind, rule });
      own.push(rule);
      const conditions = kind === 'override' || kind === 'underride' ? rule.conditions ?? [] : undefined;
      keyParts.push([
        kind,
        // room/sender rules match on their id; other kinds' ids do not affect the outcome.
        kind === 'room' || kind === 'sender' ? rule.rule_id : null,
        kind === 'content' ? (rule.pattern ?? null) : null,
        conditions === undefined ? null : Array.isArray(conditions) ? conditions.map((c) => conditionKey(c, userId)) : ['not-an-array', conditions],
        rule.actions ?? null,
      ]);
    }
  }
  const key = JSON.stringify(keyParts);
  let template = templates.get(key);
  if (!template) {
    template = {
      rules: enabled.map(({ kind, rule }) => {
        const conds = kind === 'override' || kind === 'underride' ? rule.conditions ?? [] : [];
        const dynamic: number[] = [];
        if (Array.isArray(conds)) conds.forEach((c, i) => isUserBound(c, userId) && dynamic.push(i));
        return { kind, rule, dynamic, actions: stripHistoricalActions(Array.isArray(rule.actions) ? rule.actions : []) };
      }),
    };
    if (templates.size >= TEMPLATES_MAX) templates.delete(templates.keys().next().value!);
    templates.set(key, template);
  }
  return { userId, template, rules: own };
}

function compiledFor(ruleset: Ruleset, userId: string): CompiledRuleset {
  const hit = compiled.get(ruleset);
  if (hit && hit.userId === userId) return hit;
  const c = compile(ruleset, userId);
  compiled.set(ruleset, c);
  return c;
}

/** One template's rules for one event: those whose user-independent part holds, up to the first that needs nothing more. */
interface Plan {
  /** Template rule indexes whose user-bound conditions remain to be checked, in order. */
  candidates: number[];
  /** The template rule index that matches for everyone once no candidate matched, or -1 (no match). */
  fallback: number;
}

function plan(template: Template, event: object, shared: PushContext): Plan {
  const candidates: number[] = [];
  for (let i = 0; i < template.rules.length; i++) {
    const tr = template.rules[i]!;
    if (tr.dynamic.length === 0) {
      if (ruleMatches(tr.kind, tr.rule, event, shared)) return { candidates, fallback: i };
      continue;
    }
    // override/underride with user-bound conditions (dynamic is only ever filled for those, with an array).
    const conds = tr.rule.conditions as PushCondition[];
    let staticHolds = true;
    for (let c = 0; c < conds.length && staticHolds; c++) {
      if (!tr.dynamic.includes(c)) staticHolds = conditionMatches(conds[c]!, event, shared);
    }
    if (staticHolds) candidates.push(i);
  }
  return { candidates, fallback: -1 };
}

/**
 * evaluatePushRules(target.ruleset, event, {...shared, userId, displayName}) for every target, in
 * order. Returned `actions` arrays may be shared between targets: do not mutate them.
 */
export function evaluatePushRulesForTargets(event: object, shared: SharedPushContext, targets: readonly PushTarget[]): Array<PushEvaluation | null> {
  const plans = new Map<Template, Plan>();
  const sharedCtx: PushContext = { ...shared, userId: '', displayName: null };
  const out: Array<PushEvaluation | null> = [];
  for (const t of targets) {
    const c = compiledFor(t.ruleset, t.userId);
    let p = plans.get(c.template);
    if (!p) plans.set(c.template, (p = plan(c.template, event, sharedCtx)));
    let hit = p.fallback;
    if (p.candidates.length > 0) {
      const ctx: PushContext = { ...shared, userId: t.userId, displayName: t.displayName ?? null };
      for (const i of p.candidates) {
        const conds = c.rules[i]!.conditions as PushCondition[];
        if (c.template.rules[i]!.dynamic.every((d) => conditionMatches(conds[d]!, event, ctx))) {
          hit = i;
          break;
        }
      }
    }
    out.push(hit < 0 ? null : { rule: c.rules[hit]!, actions: c.template.rules[hit]!.actions });
  }
  return out;
}
