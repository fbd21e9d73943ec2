// Glob-style matching as the spec's appendix defines it ("Glob-style matching"): `*` matches zero or
// more characters, `?` exactly one; every other character is literal. Used by push rules.
//
// Matching runs as a simulation of the pattern's NFA over the value, O(value × pattern) in the worst
// case. A compiled regular expression would backtrack exponentially on patterns such as `*a*a*a*b`
// against long bodies, and bodies come from anyone in the room.
//
// Characters are Unicode code points, so `?` matches one emoji, not half a surrogate pair.
// "Case-insensitive" is implementation-defined in the spec; here two code points are equal when their
// lower-case or their upper-case forms are equal (so `Σ`, `σ` and `ς` all compare equal).

type Token =
  | { t: 'star' }
  | { t: 'any' }
  | { t: 'char'; lower: string; upper: string };

export interface GlobMatchOptions {
  /**
   * Match any substring that starts and ends at a word boundary instead of the whole value (the rule
   * for `content.body` and for content-kind rules). A word boundary is the start or end of the value,
   * or any character not in `[A-Za-z0-9_]`.
   */
  wordBoundary?: boolean;
  /** Treat `*` and `?` as literal characters (used for display names, which are not patterns). */
  literal?: boolean;
}

const cache = new Map<string, Token[]>();
const CACHE_LIMIT = 2048;

function compile(pattern: string, literal: boolean): Token[] {
  const cacheKey = (literal ? 'L' : 'G') + pattern;
  const hit = cache.get(cacheKey);
  if (hit) return hit;
  const tokens: Token[] = [];
  for (const ch of pattern) {
    if (!literal && ch === '*') {
      // Consecutive stars mean the same as one.
      if (tokens.length === 0 || tokens[tokens.length - 1]!.t !== 'star') tokens.push({ t: 'star' });
    } else if (!literal && ch === '?') {
      tokens.push({ t: 'any' });
    } else {
      tokens.push({ t: 'char', lower: ch.toLowerCase(), upper: ch.toUpperCase() });
    }
  }
  if (cache.size >= CACHE_LIMIT) cache.clear();
  cache.set(cacheKey, tokens);
  return tokens;
}

/** `[A-Z]`, `[a-z]`, `[0-9]` or `_`: the characters that are NOT word boundaries. */
export function isWordChar(codePoint: string | undefined): boolean {
  if (codePoint === undefined || codePoint.length !== 1) return false;
  const c = codePoint.charCodeAt(0);
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f;
}

const ASCII = /^[\x00-\x7f]*$/;
const WILDCARD = /[*?]/;

/**
 * The common case, without the NFA: an ASCII pattern with no wildcards against an ASCII value, where
 * case-insensitive equality is plain lower-casing (push rules run this for every member of a room on
 * every event: display names and user names against message bodies).
 */
function literalAsciiMatches(pattern: string, value: string, wordBoundary: boolean): boolean {
  const p = pattern.toLowerCase();
  const v = value.toLowerCase();
  if (!wordBoundary) return p === v;
  // A match starts at the start of the value or after a non-word character, and ends at the end of
  // the value or before a non-word character (as in the NFA below).
  for (let i = v.indexOf(p); i !== -1; i = v.indexOf(p, i + 1)) {
    const end = i + p.length;
    if ((i === 0 || !isWordChar(v[i - 1])) && (end === v.length || !isWordChar(v[end]))) return true;
    if (i >= v.length) break;
  }
  return false;
}

/** Whether `pattern` matches `value` (whole value, or a word-bounded substring), case-insensitively. */
export function globMatches(pattern: string, value: string, options: GlobMatchOptions = {}): boolean {
  const wordBoundary = options.wordBoundary === true;
  if ((options.literal === true || !WILDCARD.test(pattern)) && ASCII.test(pattern) && ASCII.test(value)) {
    return literalAsciiMatches(pattern, value, wordBoundary);
  }
  const tokens = compile(pattern, options.literal === true);
  const chars = Array.from(value);
  const n = chars.length;
  const m = tokens.length;

  // active[p]: the first p tokens have matched the text consumed so far (from some start position).
  let active = new Uint8Array(m + 1);
  let next = new Uint8Array(m + 1);

  const close = (states: Uint8Array): void => {
    // A star may match nothing, so reaching it also reaches the token after it.
    for (let p = 0; p < m; p++) if (states[p] && tokens[p]!.t === 'star') states[p + 1] = 1;
  };
  // Position k (between chars[k-1] and chars[k]) ends a match when it is the end of the value or,
  // for word-boundary matching, when the next character is a boundary character.
  const canEndAt = (k: number): boolean => k === n || (wordBoundary && !isWordChar(chars[k]));

  active[0] = 1;
  close(active);
  if (active[m] && canEndAt(0)) return true;

  for (let k = 0; k < n; k++) {
    next.fill(0);
    let any = false;
    const ch = chars[k]!;
    let lower: string | undefined;
    let upper: string | undefined;
    for (let p = 0; p < m; p++) {
      if (!active[p]) continue;
      const tok = tokens[p]!;
      if (tok.t === 'star') {
        next[p] = 1;
        any = true;
      } else if (tok.t === 'any') {
        next[p + 1] = 1;
        any = true;
      } else {
        lower ??= ch.toLowerCase();
        upper ??= ch.toUpperCase();
        if (tok.lower === lower || tok.upper === upper) {
          next[p + 1] = 1;
          any = true;
        }
      }
    }
    // A new match may start after any boundary character.
    if (wordBoundary && !isWordChar(ch)) {
      next[0] = 1;
      any = true;
    }
    // Whole-value matching cannot recover from no live state; boundary matching may restart later.
    if (!any && !wordBoundary) return false;
    close(next);
    if (next[m] && canEndAt(k + 1)) return true;
    [active, next] = [next, active];
  }
  return false;
}
