import fc from 'fast-check';
import {
  DATATYPES,
  bf16ToNumber,
  configTypeToDatatype,
  deserializeBytesElements,
  halfToNumber,
  numberToBf16,
  numberToHalf,
  rawToValues,
  serializeBytesElements,
  valuesToRaw,
} from '../../src/inference/datatypes';

/** Brute force: the nearest half value (ties to even bits) among all 65536 encodings. */
const finiteHalves: [number, number][] = [];
for (let h = 0; h < 0x10000; h++) {
  const v = halfToNumber(h);
  if (Number.isFinite(v)) finiteHalves.push([h, v]);
}
// Sorted by value, the oracle needs only the two encodings around x.
const sortedHalves = [...finiteHalves].sort((a, b) => a[1] - b[1]);
function nearestHalf(x: number): number {
  let lo = 0;
  let hi = sortedHalves.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (sortedHalves[mid][1] <= x) lo = mid;
    else hi = mid;
  }
  const [a, b] = [sortedHalves[lo], sortedHalves[hi]];
  const da = Math.abs(a[1] - x);
  const db = Math.abs(b[1] - x);
  if (da !== db) return da < db ? a[1] : b[1];
  return (a[0] & 1) === 0 ? a[1] : b[1];
}

describe('datatypes', () => {
  test('half conversion rounds to nearest even (against brute force)', () => {
    fc.assert(
      fc.property(fc.float({ min: -65504, max: 65504, noNaN: true }), (x) => {
        const got = halfToNumber(numberToHalf(x));
        expect(Object.is(got, -0) ? 0 : got).toBe(Object.is(nearestHalf(x), -0) ? 0 : nearestHalf(x));
      }),
      { numRuns: 2000 },
    );
  });

  test('every half value round-trips', () => {
    const wrong = finiteHalves.filter(
      ([h, v]) => numberToHalf(v) !== h && !(v === 0 && numberToHalf(v) === (h ^ 0x8000)),
    );
    expect(wrong).toEqual([]);
    expect(halfToNumber(numberToHalf(Infinity))).toBe(Infinity);
    expect(Number.isNaN(halfToNumber(numberToHalf(NaN)))).toBe(true);
    expect(halfToNumber(numberToHalf(1e6))).toBe(Infinity);
  });

  test('bf16 keeps the top 16 bits of a float32, rounding to nearest even', () => {
    expect(bf16ToNumber(numberToBf16(1))).toBe(1);
    expect(bf16ToNumber(numberToBf16(0.5))).toBe(0.5);
    expect(bf16ToNumber(numberToBf16(1 + 2 ** -8))).toBe(1); // tie, even
    expect(bf16ToNumber(numberToBf16(1 + 3 * 2 ** -8))).toBe(1 + 2 ** -6); // tie, rounds up to even
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff }), (b) => {
        const v = bf16ToNumber(b);
        if (!Number.isNaN(v)) expect(numberToBf16(v)).toBe(b);
      }),
    );
  });

  test('BYTES serialisation round-trips and refuses truncation', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 20 })), (arrs) => {
        const els = arrs.map((a) => Buffer.from(a));
        expect(deserializeBytesElements(serializeBytesElements(els))).toEqual(els);
      }),
    );
    expect(deserializeBytesElements(Buffer.from([5, 0, 0, 0, 1, 2]))).toBeUndefined();
    expect(deserializeBytesElements(Buffer.from([1, 0]))).toBeUndefined();
  });

  test('raw little-endian encoding of every datatype', () => {
    expect(valuesToRaw('INT16', [-2, 3])).toEqual(Buffer.from([0xfe, 0xff, 3, 0]));
    expect(valuesToRaw('UINT64', [2n ** 64n - 1n])).toEqual(Buffer.alloc(8, 0xff));
    expect(rawToValues('UINT64', Buffer.alloc(8, 0xff))).toEqual([2n ** 64n - 1n]);
    expect(rawToValues('INT64', valuesToRaw('INT64', [-5]))).toEqual([-5]);
    expect(valuesToRaw('BOOL', [true, false])).toEqual(Buffer.from([1, 0]));
    expect(valuesToRaw('FP16', [1])).toEqual(Buffer.from([0x00, 0x3c]));
    expect(() => rawToValues('BYTES', Buffer.from([9, 0, 0, 0]))).toThrow(/malformed BYTES/);
    expect(DATATYPES).toHaveLength(14);
  });

  test('model-config type names', () => {
    expect(configTypeToDatatype('TYPE_STRING')).toBe('BYTES');
    expect(configTypeToDatatype('TYPE_BF16')).toBe('BF16');
    expect(configTypeToDatatype('TYPE_INVALID')).toBeUndefined();
  });
});
