import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson, MAX_JSON_DEPTH, parseCanonical } from './canonical-json.js';

describe('canonicalJson', () => {
  it('sorts object keys', () => {
    expect(canonicalJson('{"b":1,"a":2,"c":3}')).toBe('{"a":2,"b":1,"c":3}');
    expect(canonicalJson('{"b":1,"a":2}')).toBe(canonicalJson('{"a":2,"b":1}'));
  });

  it('sorts keys by UTF-16 code units, as JCS (RFC 8785) does', () => {
    const text = JSON.stringify({ '\uffff': 1, b: 2, '\u{1F600}': 3, a: 4, B: 5, é: 6, '': 7 });
    expect(canonicalJson(text)).toBe('{"":7,"B":5,"a":4,"b":2,"é":6,"\u{1F600}":3,"\uffff":1}');
  });

  it('sorts nested objects, also inside arrays', () => {
    expect(canonicalJson('{"z":{"y":1,"x":[3,{"d":1,"c":{"f":0,"e":0}}]},"a":null}')).toBe(
      '{"a":null,"z":{"x":[3,{"c":{"e":0,"f":0},"d":1}],"y":1}}',
    );
  });

  it('keeps array order', () => {
    expect(canonicalJson('[3,1,2]')).toBe('[3,1,2]');
    expect(canonicalJson('[3,1,2]')).not.toBe(canonicalJson('[1,2,3]'));
    expect(canonicalJson('[{"b":1,"a":1},[2,1]]')).toBe('[{"a":1,"b":1},[2,1]]');
  });

  it('keeps the last of duplicate keys, as JSON.parse does', () => {
    expect(canonicalJson('{"a":1,"a":2}')).toBe('{"a":2}');
    expect(canonicalJson('{"a":1,"b":0,"a":{"y":1,"x":2}}')).toBe('{"a":{"x":2,"y":1},"b":0}');
    expect(canonicalJson('{"a":1,"\\u0061":3}')).toBe('{"a":3}');
    expect(JSON.parse(canonicalJson('{"a":1,"b":0,"a":2}')!)).toEqual(JSON.parse('{"a":1,"b":0,"a":2}'));
  });

  it('normalises string escapes', () => {
    expect(canonicalJson('"\\u0041"')).toBe(canonicalJson('"A"'));
    expect(canonicalJson('"\\u0041"')).toBe('"A"');
    expect(canonicalJson('{"\\u0061":"\\/x"}')).toBe('{"a":"/x"}');
    expect(canonicalJson('"\\u00e9\\uD83D\\uDE00"')).toBe('"é\u{1F600}"');
    expect(canonicalJson('"a\\u000Ab"')).toBe(canonicalJson('"a\\nb"'));
    expect(canonicalJson('"tab\\there"')).toBe('"tab\\there"');
    expect(canonicalJson('"\\"\\\\"')).toBe('"\\"\\\\"');
  });

  it('keeps distinct strings distinct, lone surrogates included', () => {
    expect(canonicalJson('"\\ud800"')).not.toBe(canonicalJson('"\\ud801"'));
    expect(canonicalJson('"a"')).not.toBe(canonicalJson('"A"'));
  });

  it('keeps the exact text of numbers, so that big integers stay distinct', () => {
    expect(canonicalJson('12345678901234567890')).toBe('12345678901234567890');
    expect(canonicalJson('12345678901234567891')).toBe('12345678901234567891');
    expect(canonicalJson('{"amount":12345678901234567890}')).not.toBe(
      canonicalJson('{"amount":12345678901234567891}'),
    );
    // JSON.parse would make them equal: the reason for keeping the text.
    expect(JSON.parse('12345678901234567890')).toBe(JSON.parse('12345678901234567891'));
    for (const number of ['0', '-0', '1.5', '-1.25e-7', '1E+2', '0.1000']) {
      expect(canonicalJson(`[${number}]`)).toBe(`[${number}]`);
    }
  });

  it('drops insignificant white space (space, tab, LF, CR) everywhere', () => {
    expect(canonicalJson(' \t\r\n{ "b" :\n[ 1 ,\t2 ] , "a" : { } , "c" : [ ] }\r\n ')).toBe(
      '{"a":{},"b":[1,2],"c":[]}',
    );
    expect(canonicalJson('"  keep  the  spaces  "')).toBe('"  keep  the  spaces  "');
  });

  it('keeps literals and empty containers', () => {
    expect(canonicalJson('[true,false,null,{},[],""]')).toBe('[true,false,null,{},[],""]');
  });

  it.each([
    '',
    ' ',
    '{',
    '}',
    '[1,]',
    '{"a":1,}',
    '{"a":}',
    '{"a" 1}',
    '{a:1}',
    "{'a':1}",
    '["a"',
    '"abc',
    '"tab\there"', // a raw control character in a string
    '"\\x41"',
    '"\\u004"',
    '01',
    '1.',
    '.5',
    '+1',
    '-',
    '1e',
    'NaN',
    'Infinity',
    'undefined',
    'tru',
    'truex',
    '[truex]',
    'nul',
    '{} {}',
    '[1] x',
    '[1 2]',
    '\u00a01', // no-break space is not JSON white space
    '\f1',
  ])('returns null for invalid JSON %j, as JSON.parse refuses it', (text) => {
    expect(() => JSON.parse(text)).toThrow();
    expect(canonicalJson(text)).toBeNull();
  });

  it(`accepts ${MAX_JSON_DEPTH} levels of nesting and refuses one more`, () => {
    const nested = (levels: number, inner = '') => '['.repeat(levels) + inner + ']'.repeat(levels);
    expect(canonicalJson(nested(MAX_JSON_DEPTH))).toBe(nested(MAX_JSON_DEPTH));
    expect(canonicalJson(nested(MAX_JSON_DEPTH, '1'))).toBe(nested(MAX_JSON_DEPTH, '1'));
    expect(canonicalJson(nested(MAX_JSON_DEPTH + 1))).toBeNull();
    expect(canonicalJson(nested(MAX_JSON_DEPTH + 1, '1'))).toBeNull();
    const objects = (levels: number) => '{"a":'.repeat(levels) + '1' + '}'.repeat(levels);
    expect(canonicalJson(objects(MAX_JSON_DEPTH))).toBe(objects(MAX_JSON_DEPTH));
    expect(canonicalJson(objects(MAX_JSON_DEPTH + 1))).toBeNull();
  });

  it('returns null without throwing for 100000 levels of nesting', () => {
    const levels = 100_000;
    expect(canonicalJson('['.repeat(levels) + ']'.repeat(levels))).toBeNull();
    expect(canonicalJson('{"a":'.repeat(levels) + '1' + '}'.repeat(levels))).toBeNull();
    expect(canonicalJson('['.repeat(levels))).toBeNull();
  });

  describe('properties', () => {
    const json = fc.jsonValue({ maxDepth: 6 });

    it('means what the input means, and is its own canonical form', () => {
      fc.assert(
        fc.property(json, (value) => {
          const text = JSON.stringify(value);
          const canonical = canonicalJson(text);
          expect(canonical).not.toBeNull();
          expect(JSON.parse(canonical!)).toEqual(JSON.parse(text));
          expect(canonicalJson(canonical!)).toBe(canonical);
        }),
        { numRuns: 300 },
      );
    });

    it('does not depend on key order or white space', () => {
      fc.assert(
        fc.property(json, (value) => {
          const reordered = JSON.stringify(reverseKeys(value), null, 2);
          expect(canonicalJson(reordered)).toBe(canonicalJson(JSON.stringify(value)));
        }),
        { numRuns: 300 },
      );
    });
  });
});

function reverseKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reverseKeys);
  if (value === null || typeof value !== 'object') return value;
  // No prototype: a "__proto__" key must stay a plain member.
  const out = Object.create(null) as Record<string, unknown>;
  for (const key of Object.keys(value).reverse())
    out[key] = reverseKeys((value as Record<string, unknown>)[key]);
  return out;
}

describe('parseCanonical (the exact parser)', () => {
  // Oracles that share no code with either path: the value's keys sorted, everything else as
  // JSON.stringify writes it; and the value written with every string code unit escaped.
  const sortedText = (value: unknown): string => {
    if (Array.isArray(value)) return `[${value.map(sortedText).join(',')}]`;
    if (value === null || typeof value !== 'object') return JSON.stringify(value);
    const record = value as Record<string, unknown>;
    const keys = Object.keys(record).sort();
    return `{${keys.map((key) => `${JSON.stringify(key)}:${sortedText(record[key])}`).join(',')}}`;
  };
  const escaped = (text: string) =>
    `"${Array.from({ length: text.length }, (_, i) => `\\u${text.charCodeAt(i).toString(16).padStart(4, '0')}`).join('')}"`;
  const escapedText = (value: unknown): string => {
    if (typeof value === 'string') return escaped(value);
    if (Array.isArray(value)) return `[${value.map(escapedText).join(',')}]`;
    if (value === null || typeof value !== 'object') return JSON.stringify(value);
    const record = value as Record<string, unknown>;
    return `{${Object.keys(record)
      .map((key) => `${escaped(key)}:${escapedText(record[key])}`)
      .join(',')}}`;
  };

  it('writes what a sorted JSON.stringify writes, from plain or fully escaped text', () => {
    fc.assert(
      fc.property(fc.jsonValue({ stringUnit: 'binary' }), (value) => {
        const expected = sortedText(value);
        expect(parseCanonical(JSON.stringify(value))).toBe(expected);
        expect(parseCanonical(escapedText(value))).toBe(expected);
      }),
      { numRuns: 1_000 },
    );
  });

  it('escapes lone surrogates, raw or escaped, and keeps the last of keys spelt differently', () => {
    expect(parseCanonical('{"b":"\ud800","a":1.0}')).toBe('{"a":1.0,"b":"\\ud800"}');
    expect(parseCanonical('["\\uD800x"]')).toBe('["\\ud800x"]');
    expect(parseCanonical('{"a":1,"\\u0061":2.0,"b":3}')).toBe('{"a":2.0,"b":3}');
    expect(parseCanonical('{"\\u0061":1,"a":2.0}')).toBe('{"a":2.0}');
  });
});

describe('canonicalJson fast path', () => {
  it('agrees with the exact parser on random documents', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.json(),
          fc.jsonValue().map((value) => JSON.stringify(value, null, 1)),
        ),
        (text) => {
          expect(canonicalJson(text)).toBe(parseCanonical(text));
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it('agrees on number lexemes a double cannot keep, and on deep nesting', () => {
    for (const text of [
      '{"b":12345678901234567891,"a":1}',
      '[1.0, 1, -0, 0, 1e2, 100, 1E400, 0.1, 5e-324]',
      '{"id":"order-123456789012345678901","n":3}',
      `${'['.repeat(100)}1${']'.repeat(100)}`,
      `${'{"a":'.repeat(600)}1${'}'.repeat(600)}`,
      '[1234567890123456, 9007199254740993, -05, 007, -0.0, 2.50, 1e+5, 1E-2, 123456789012345]',
      '{"date":"2024-05-01","v":"1.10","e":"1e5","n":-0}',
      // A minus zero alone, wherever a number may start: at the start, after white space, `[`, `,`, `:`.
      '-0',
      ' -0',
      '[-0]',
      '[1, -0]',
      '[1,\t-0]',
      '{"a":\r\n-0}',
      '{"a":-0}',
    ]) {
      expect(canonicalJson(text)).toBe(parseCanonical(text));
    }
  });

  it('agrees when number-like text sits inside strings, next to numbers a double cannot keep', () => {
    for (const text of [
      '{"deliverOn":"2026-12-01","qty":1.50}',
      '{"sku":"sku-0","n":-0}',
      '{"zip":"01234","escaped":"a\\"-0\\\\","n":007}',
      '{"zip":"01234","escaped":"a\\"-0\\\\","n":7}',
      '["\\\\",1e2,"\\"1.0\\"",1]',
      '{"phone":"+49 030 1234","price":19.99,"big":"12345678901234567891"}',
    ]) {
      expect(canonicalJson(text)).toBe(parseCanonical(text));
    }
  });

  it('agrees on random documents whose strings and numbers look alike', () => {
    const lexeme = fc.constantFrom(
      '0',
      '-0',
      '7',
      '007',
      '1.0',
      '1.5',
      '2.50',
      '1e2',
      '1E400',
      '-12',
      '12345678901234567891',
    );
    const numberish = fc
      .array(fc.constantFrom('0', '1', '-', '.', 'e', '"', '\\', 'a', ' ', '+'), { maxLength: 8 })
      .map((units) => JSON.stringify(units.join('')));
    const scalar = fc.oneof(lexeme, numberish);
    const document = fc.letrec<{ value: string }>((tie) => ({
      value: fc.oneof(
        { depthSize: 'small' },
        scalar,
        fc.array(tie('value'), { maxLength: 4 }).map((items) => `[${items.join(',')}]`),
        fc
          .array(fc.tuple(numberish, tie('value')), { maxLength: 4 })
          .map((members) => `{${members.map(([key, value]) => `${key}:${value}`).join(',')}}`),
      ),
    })).value;
    fc.assert(
      fc.property(document, (text) => {
        expect(canonicalJson(text)).toBe(parseCanonical(text));
      }),
      { numRuns: 3_000 },
    );
  });

  it('agrees on arrays of objects that share their keys, in one order or in several', () => {
    for (const text of [
      '[{"b":1,"a":2},{"b":3,"a":4},{"a":5,"b":6},{"b":7,"a":8}]',
      '[{"b":1,"a":2},{"b":3,"a":{"d":1,"c":2}},{"b":1,"a":{"__proto__":1}}]',
      '[{"b":1,"a":2},{"1":1,"a":2},{"1":1,"a":2},{"b":1,"a":2}]',
      '{"x":[{"b":1,"a":2}],"y":{"b":[{"b":1,"a":2}],"a":{"10":1,"9":2}}}',
      '[[{"b":1,"a":2}],[{"b":1,"a":1.0}],[{"b":1,"a":2}]]',
      // Members already in order, holding objects that are not (and the other way round).
      '{"a":{"d":1,"c":2},"b":[{"b":1,"a":2}],"c":{"a":{"z":1,"y":2}}}',
      '{"b":{"a":1,"b":{"a":2,"b":3}},"a":[{"a":1,"b":2},{"a":{"1":1},"b":2}]}',
    ]) {
      expect(canonicalJson(text)).toBe(parseCanonical(text));
    }
    // Objects drawn from a few keys, integer-like and __proto__ among them, so that consecutive
    // objects often have the same keys in the same or another order.
    const key = fc.constantFrom('"a"', '"b"', '"ab"', '"1"', '"__proto__"', '"B"');
    const object = fc.uniqueArray(key, { maxLength: 4 }).chain((keys) =>
      fc
        .array(fc.constantFrom('1', '2.0', '"x"', '[]', '{"b":1,"a":2}', 'null'), {
          minLength: keys.length,
          maxLength: keys.length,
        })
        .map((values) => `{${keys.map((name, i) => `${name}:${values[i]}`).join(',')}}`),
    );
    const document = fc
      .array(
        fc.oneof(
          object,
          fc.array(object, { maxLength: 3 }).map((items) => `[${items.join(',')}]`),
        ),
        {
          maxLength: 8,
        },
      )
      .map((items) => `[${items.join(',')}]`);
    fc.assert(
      fc.property(document, (text) => {
        expect(canonicalJson(text)).toBe(parseCanonical(text));
      }),
      { numRuns: 3_000 },
    );
  });

  it('agrees on keys that engines order on their own (integer-like) and on __proto__', () => {
    for (const text of [
      '{"10":1,"9":2,"a":3,"1a":4,"":5}',
      '{"b":{"2":[1,{"z":0,"0":1}],"1":0},"a":1}',
      '{"__proto__":{"x":1},"a":{"__proto__":null}}',
      '{"constructor":1,"toJSON":"x","hasOwnProperty":2}',
    ]) {
      expect(canonicalJson(text)).toBe(parseCanonical(text));
    }
  });
});
