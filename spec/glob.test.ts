import { test } from 'node:test';
import assert from 'node:assert/strict';
import { globMatches, isWordChar } from './glob.ts';

test('glob: * matches zero or more characters, ? exactly one (appendix "Glob-style matching")', () => {
  assert.equal(globMatches('lunc?*', 'Lunch plans'), true);
  assert.equal(globMatches('lunc?*', 'LUNCH'), true); // case-insensitive; * matches zero characters
  assert.equal(globMatches('lunc?*', ' lunch'), false); // leading space: the whole value must match
  assert.equal(globMatches('lunc?*', 'lunc'), false); // ? must match a character
  assert.equal(globMatches('*', ''), true);
  assert.equal(globMatches('?', ''), false);
  assert.equal(globMatches('', ''), true);
  assert.equal(globMatches('', 'x'), false);
  assert.equal(globMatches('a**b', 'ab'), true);
  assert.equal(globMatches('a*b', 'axxxb'), true);
  assert.equal(globMatches('a*b', 'axxxbc'), false);
  assert.equal(globMatches('a?c', 'abc'), true);
  assert.equal(globMatches('a?c', 'ac'), false);
});

test('glob: every other character is literal, regex metacharacters included', () => {
  assert.equal(globMatches('m.notice', 'm.notice'), true);
  assert.equal(globMatches('m.notice', 'mXnotice'), false);
  assert.equal(globMatches('[ab]+(c)|$^\\', '[AB]+(C)|$^\\'), true);
  assert.equal(globMatches('[ab]', 'a'), false);
});

test('glob: case-insensitive beyond ASCII; ? is one code point', () => {
  assert.equal(globMatches('ÉCOLE', 'école'), true);
  assert.equal(globMatches('ΣΟΦΙΑ', 'σοφια'), true);
  assert.equal(globMatches('ΣΟΦΟΣ', 'σοφος'), true); // final sigma: equal only as upper case
  assert.equal(globMatches('a🎉b', 'A🎉B'), true); // astral characters in the pattern are one character too
  assert.equal(globMatches('🎉?', '🎉🎊'), true);
  assert.equal(globMatches('a?b', 'a🎉b'), true); // one emoji is one character, not two UTF-16 units
  assert.equal(globMatches('a??b', 'a🎉b'), false);
});

test('glob: literal option makes * and ? ordinary characters', () => {
  assert.equal(globMatches('a*', 'abc', { literal: true }), false);
  assert.equal(globMatches('a*', 'A*', { literal: true }), true);
  assert.equal(globMatches('?', 'x', { literal: true }), false);
});

test('glob: word-boundary substring matching (the content.body rule)', () => {
  const wb = { wordBoundary: true };
  // The spec's examples for key content.body, pattern ex*ple.
  assert.equal(globMatches('ex*ple', 'An example event.', wb), true);
  assert.equal(globMatches('ex*ple', 'exple', wb), true); // matches at the start and end of the body
  assert.equal(globMatches('ex*ple', 'An exciting triple-whammy', wb), true); // spans words; - separates
  // Substrings must start and end at boundaries.
  assert.equal(globMatches('ex*ple', 'An examples event', wb), false);
  assert.equal(globMatches('cake', 'I like pancakes', wb), false);
  assert.equal(globMatches('cake', 'pancake', wb), false);
  assert.equal(globMatches('cake', 'CAKE!', wb), true);
  assert.equal(globMatches('cake', 'cake_lie', wb), false); // _ is a word character
  assert.equal(globMatches('cake', 'cake9', wb), false); // so are digits
  assert.equal(globMatches('cake', 'cake😀', wb), true); // anything else is a boundary
  assert.equal(globMatches('cake', 'écake', wb), true); // é is outside [A-Za-z0-9_]
  assert.equal(globMatches('cake', 'x cake', wb), true);
  // A match may start after a boundary found only late in the value.
  assert.equal(globMatches('tea', 'It is time for tea', wb), true);
  // Without wordBoundary the whole value must match.
  assert.equal(globMatches('cake', 'I like cake'), false);
});

test('glob: patterns that would backtrack exponentially as regexes stay fast', () => {
  const body = 'a'.repeat(20_000);
  const start = performance.now();
  assert.equal(globMatches('*a*a*a*a*a*a*a*b', body), false);
  assert.equal(globMatches('a*a*a*a*a*a*a*b', body, { wordBoundary: true }), false);
  assert.ok(performance.now() - start < 2000);
});

test('isWordChar follows [A-Za-z0-9_] exactly', () => {
  for (const c of ['a', 'z', 'A', 'Z', '0', '9', '_']) assert.equal(isWordChar(c), true, c);
  for (const c of [' ', '-', '.', 'é', 'ſ', '\u212a', '@', undefined]) assert.equal(isWordChar(c), false, String(c));
});
