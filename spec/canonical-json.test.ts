import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CanonicalJsonError, canonicalJson, canonicalJsonBytes, compareCodePoints } from './canonical-json.ts';

// appendices.md "Canonical JSON > Examples": every input/output pair, inputs parsed from the spec's text.
const SPEC_EXAMPLES: Array<[string, string]> = [
  ['{}', '{}'],
  ['{\n    "one": 1,\n    "two": "Two"\n}', '{"one":1,"two":"Two"}'],
  ['{\n    "b": "2",\n    "a": "1"\n}', '{"a":"1","b":"2"}'],
  ['{"b":"2","a":"1"}', '{"a":"1","b":"2"}'],
  [
    `{
    "auth": {
        "success": true,
        "mxid": "@john.doe:example.com",
        "profile": {
            "display_name": "John Doe",
            "three_pids": [
                {
                    "medium": "email",
                    "address": "john.doe@example.org"
                },
                {
                    "medium": "msisdn",
                    "address": "123456789"
                }
            ]
        }
    }
}`,
    '{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}',
  ],
  ['{\n    "a": "日本語"\n}', '{"a":"日本語"}'],
  ['{\n    "本": 2,\n    "日": 1\n}', '{"日":1,"本":2}'],
  ['{\n    "a": "\\u65E5"\n}', '{"a":"日"}'],
  ['{\n    "a": null\n}', '{"a":null}'],
  ['{\n    "a": -0,\n    "b": 1e10\n}', '{"a":0,"b":10000000000}'],
];

test('canonical JSON: every example from the appendices', () => {
  for (const [input, expected] of SPEC_EXAMPLES) {
    assert.equal(canonicalJson(JSON.parse(input)), expected, `input ${input}`);
  }
});

test('canonical JSON: bytes are UTF-8 of the text', () => {
  assert.deepEqual([...canonicalJsonBytes({ a: '日' })], [...Buffer.from('{"a":"日"}', 'utf8')]);
  assert.equal(canonicalJsonBytes({ a: '日' }).length, 11); // 日 is 3 bytes in UTF-8
});

test('canonical JSON: minimal string escapes per the grammar', () => {
  // Short forms for \b \t \n \f \r, \" and \\, \u00XX lowercase for the other controls.
  assert.equal(canonicalJson('\b\t\n\f\r"\\'), '"\\b\\t\\n\\f\\r\\"\\\\"');
  assert.equal(canonicalJson('\u0000\u0001\u000b\u000e\u001f'), '"\\u0000\\u0001\\u000b\\u000e\\u001f"');
  // Not escaped: '/', DEL, U+2028/2029, non-ASCII, astral characters.
  assert.equal(canonicalJson('/\u007f\u2028\u2029é😀'), '"/\u007f\u2028\u2029é😀"');
});

test('canonical JSON: keys sort by code point, not UTF-16 code unit', () => {
  // U+1F600 (😀, surrogates D83D DE00) > U+FF21 (Ａ) by code point, but < by code unit.
  assert.equal(canonicalJson({ '😀': 1, 'Ａ': 2, a: 3 }), '{"a":3,"Ａ":2,"😀":1}');
  assert.ok(compareCodePoints('😀', '\uffff') > 0);
  assert.ok(compareCodePoints('\uffff', '😀') < 0);
  assert.ok(compareCodePoints('a', 'ab') < 0);
  assert.equal(compareCodePoints('x😀', 'x😀'), 0);
  // Integer-like keys, which JS enumerates first, sort as strings.
  assert.equal(canonicalJson({ b: 1, 10: 2, 9: 3, a: 4 }), '{"10":2,"9":3,"a":4,"b":1}');
});

test('canonical JSON: integers at the edges of the allowed range', () => {
  assert.equal(canonicalJson([2 ** 53 - 1, -(2 ** 53) + 1, 0, -1]), '[9007199254740991,-9007199254740991,0,-1]');
});

test('canonical JSON: rejects what it cannot encode, naming the JSON path', () => {
  const cases: Array<[unknown, RegExp]> = [
    [{ a: 1.5 }, /float 1\.5.* at \$\.a$/],
    [{ a: { b: [1, 2 ** 53] } }, /9007199254740992 is outside .* at \$\.a\.b\[1\]$/],
    [{ a: -(2 ** 53) }, /outside/],
    [{ x: NaN }, /NaN is not a JSON number at \$\.x$/],
    [{ x: Infinity }, /Infinity/],
    [{ 'a b': undefined }, /undefined is not a JSON value at \$\["a b"\]$/],
    [[1, , 3], /undefined .* at \$\[1\]$/], // eslint-disable-line no-sparse-arrays
    [{ f: () => 1 }, /function/],
    [{ n: 10n }, /bigint/],
    [{ s: Symbol('x') }, /symbol/],
    [{ d: new Date(0) }, /Date is not a plain object at \$\.d$/],
    [{ m: new Map() }, /Map is not a plain object/],
    [{ b: Buffer.from('x') }, /Buffer is not a plain object/],
    [{ s: 'a\ud800b' }, /lone UTF-16 surrogate.* at \$\.s$/],
    [{ ['\udc00']: 1 }, /lone UTF-16 surrogate/],
    [undefined, /at \$$/],
  ];
  for (const [value, re] of cases) {
    assert.throws(() => canonicalJson(value), (e: unknown) => e instanceof CanonicalJsonError && re.test(e.message), String(re));
  }
});

test('canonical JSON: circular and absurdly deep values throw CanonicalJsonError', () => {
  const o: Record<string, unknown> = { a: 1 };
  o['self'] = o;
  assert.throws(() => canonicalJson(o), (e: unknown) => e instanceof CanonicalJsonError && /circular reference at \$\.self$/.test(e.message));
  let deep: unknown = 1;
  for (let i = 0; i < 200_000; i++) deep = [deep];
  assert.throws(() => canonicalJson(deep), CanonicalJsonError);
});

test('canonical JSON: null-prototype objects are plain objects', () => {
  const o = Object.create(null) as Record<string, unknown>;
  o['b'] = 1;
  o['a'] = true;
  assert.equal(canonicalJson(o), '{"a":true,"b":1}');
});

test('canonical JSON: lenient numbers for room versions 1–5', () => {
  assert.equal(canonicalJson({ a: 50.57, b: 2 ** 53 }, { allowNonCanonicalNumbers: true }), '{"a":50.57,"b":9007199254740992}');
  assert.throws(() => canonicalJson({ a: NaN }, { allowNonCanonicalNumbers: true }), CanonicalJsonError);
});

test('canonical JSON: output round-trips through JSON.parse', () => {
  const v = { z: [1, { y: 'q"\\\n' }, null, false], a: { c: {}, b: [] }, 'é': -5 };
  const s = canonicalJson(v);
  assert.equal(s, '{"a":{"b":[],"c":{}},"z":[1,{"y":"q\\"\\\\\\n"},null,false],"é":-5}');
  assert.deepEqual(JSON.parse(s), v);
});

// A deliberately simple, independent reference: JSON.stringify of a copy whose keys are inserted in
// code point order (JSON.stringify escapes well-formed strings exactly as the spec's grammar does).
function reference(v: unknown): string {
  const sortCopy = (x: unknown): unknown => {
    if (Array.isArray(x)) return x.map(sortCopy);
    if (x !== null && typeof x === 'object') {
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(x).sort(compareCodePoints)) out[k] = sortCopy((x as Record<string, unknown>)[k]);
      return out;
    }
    return x;
  };
  // Integer-like keys would be re-ordered by the engine in `out`; this generator avoids them.
  return JSON.stringify(sortCopy(v));
}

test('canonical JSON agrees with an independent reference on random values', () => {
  let seed = 12345;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const alphabet = ['a', 'Z', ' ', '"', '\\', '/', '\n', '\t', '\u0000', '\u001f', '\u007f', 'é', '日', '\u2028', '😀', '\uffff', '\ue000', 'x'];
  const str = (): string => {
    const len = rnd(4) === 0 ? 20 + rnd(80) : rnd(8); // long strings exercise the native UTF-8 path
    let s = '';
    for (let i = 0; i < len; i++) s += alphabet[rnd(alphabet.length)];
    return s;
  };
  const value = (depth: number): unknown => {
    switch (depth > 3 ? rnd(4) : rnd(7)) {
      case 0: return str();
      case 1: return rnd(2) === 0 ? rnd(1000) - 500 : (rnd(2) ? 1 : -1) * (2 ** 53 - 1 - rnd(10));
      case 2: return [true, false, null][rnd(3)];
      case 3: return '';
      case 4: return Array.from({ length: rnd(5) }, () => value(depth + 1));
      default: {
        const o: Record<string, unknown> = {};
        for (let i = rnd(6); i > 0; i--) o['k' + str()] = value(depth + 1);
        return o;
      }
    }
  };
  for (let i = 0; i < 2000; i++) {
    const v = value(0);
    const expected = reference(v);
    assert.equal(canonicalJson(v), expected);
    assert.deepEqual(canonicalJsonBytes(v), Buffer.from(expected, 'utf8'));
  }
});

test('canonical JSON: long strings with and without escapes take the same grammar', () => {
  const plain = 'x'.repeat(30) + 'é😀';
  assert.equal(canonicalJson(plain), `"${plain}"`);
  assert.equal(canonicalJson('x'.repeat(30) + '\n'), `"${'x'.repeat(30)}\\n"`);
  assert.throws(() => canonicalJson('x'.repeat(30) + '\udfff'), CanonicalJsonError);
  // Values bigger than the initial 64 KiB buffer.
  const big = { a: 'ü'.repeat(100_000), b: Array.from({ length: 20_000 }, (_, i) => i) };
  assert.equal(canonicalJson(big), JSON.stringify(big));
  assert.equal(canonicalJsonBytes(big).length, Buffer.byteLength(JSON.stringify(big)));
});

test('canonical JSON: re-entrant use (a getter that encodes) does not corrupt output', () => {
  const inner = { z: 1, a: 'inner' };
  const outer = {
    get b(): string {
      return canonicalJson(inner);
    },
    a: 'x'.repeat(40),
  };
  assert.equal(canonicalJson(outer), `{"a":"${'x'.repeat(40)}","b":"{\\"a\\":\\"inner\\",\\"z\\":1}"}`);
});
