import fc from 'fast-check';
import { AgentError, ErrorCode } from '../../src/errors';
import {
  decodeInvokeBody,
  encodeInvokeResponse,
  encodeInvokeResponseParts,
  valuesToRaw,
  type Datatype,
  type ModelIO,
} from '../../src/inference';
import type { ModelInferResponse } from '../../src/triton';

const io: ModelIO = {
  maxBatchSize: 0,
  inputs: [{ name: 'IN', datatype: 'FP32', shape: [-1] }],
  outputs: [{ name: 'OUT', datatype: 'FP32', shape: [-1] }],
};

function decodeError(text: string): AgentError {
  try {
    decodeInvokeBody(Buffer.from(text), 'application/json', io);
  } catch (err) {
    if (err instanceof AgentError) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}

/** JSON text nested `depth` deep, built as text (JSON.stringify itself would overflow the stack). */
const deepArray = (depth: number) => `${'['.repeat(depth)}1${']'.repeat(depth)}`;
const deepObject = (depth: number) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;

describe('hostile nesting is a 400, never a stack overflow (issue 8, item 7)', () => {
  test('regression: "shape" nested 10,000 deep', () => {
    const e = decodeError(
      `{"inputs":[{"name":"IN","datatype":"FP32","shape":${deepArray(10000)},"data":[1]}]}`,
    );
    expect(e.code).toBe(ErrorCode.BadRequest);
    expect(e.message).toMatch(/input 'IN': shape must be an array of non-negative integers, got an array/);
  });

  test('regression: a data element nested 10,000 deep (an object)', () => {
    const e = decodeError(
      `{"inputs":[{"name":"IN","datatype":"FP32","shape":[2],"data":[1,${deepObject(10000)}]}]}`,
    );
    expect(e.code).toBe(ErrorCode.BadRequest);
    expect(e.message).toMatch(/element 1 is an object, expected a number/);
  });

  test('regression: a data element nested 10,000 deep (arrays)', () => {
    const e = decodeError(
      `{"inputs":[{"name":"IN","datatype":"FP32","shape":[1],"data":[${deepArray(10000)}]}]}`,
    );
    expect(e.code).toBe(ErrorCode.BadRequest);
    expect(e.message).toMatch(/data is nested more than 32 deep/);
  });

  test('a datatype, parameter or id nested 10,000 deep', () => {
    for (const doc of [
      `{"inputs":[{"name":"IN","datatype":${deepObject(10000)},"shape":[1],"data":[1]}]}`,
      `{"inputs":[{"name":"IN","datatype":"FP32","shape":[1],"data":[1],"parameters":{"p":${deepArray(10000)}}}]}`,
      `{"id":${deepObject(10000)},"inputs":[{"name":"IN","datatype":"FP32","shape":[1],"data":[1]}]}`,
    ]) {
      expect(decodeError(doc).code).toBe(ErrorCode.BadRequest);
    }
  });
});

/** The brute-force oracle: a recursive flatten and the shared little-endian writer. */
function oracle(datatype: Datatype, data: unknown): Buffer {
  const flat: unknown[] = [];
  const walk = (d: unknown) => (Array.isArray(d) ? d.forEach(walk) : flat.push(d));
  walk(data);
  return valuesToRaw(datatype, flat as number[]);
}

/** Nests a flat list by the given row sizes (possibly several levels), as clients send image tensors. */
function nest(values: unknown[], dims: number[]): unknown {
  if (dims.length === 0) return values;
  const [d, ...rest] = dims;
  const rows: unknown[] = [];
  for (let i = 0; i < values.length; i += d) rows.push(nest(values.slice(i, i + d), rest));
  return rows;
}

describe('JSON data decoding matches a brute-force oracle', () => {
  const cases: [Datatype, fc.Arbitrary<number | boolean>][] = [
    ['FP32', fc.float({ noNaN: true, noDefaultInfinity: true })],
    ['FP64', fc.double({ noNaN: true, noDefaultInfinity: true })],
    ['INT8', fc.integer({ min: -128, max: 127 })],
    ['UINT16', fc.integer({ min: 0, max: 65535 })],
    ['INT32', fc.integer({ min: -2147483648, max: 2147483647 })],
    ['UINT32', fc.integer({ min: 0, max: 4294967295 })],
    ['INT64', fc.maxSafeInteger()],
    ['UINT64', fc.maxSafeNat()],
    ['FP16', fc.double({ noNaN: true, min: -70000, max: 70000 })],
    ['BF16', fc.float({ noNaN: true, noDefaultInfinity: true })],
    ['BOOL', fc.boolean()],
  ];
  test.each(cases)('%s, flat and nested', (datatype, element) => {
    fc.assert(
      fc.property(
        fc.array(element, { minLength: 1, maxLength: 48 }),
        fc.constantFrom<number[]>([], [2], [2, 3], [3, 2, 1]),
        (values, dims) => {
          const n = values.length - (values.length % dims.reduce((a, b) => a * b, 1));
          fc.pre(n > 0);
          const data = nest(values.slice(0, n), dims);
          const body = JSON.stringify({ inputs: [{ name: 'IN', datatype, shape: [n], data }] });
          const got = decodeInvokeBody(Buffer.from(body), 'application/json', io).request
            .raw_input_contents?.[0];
          expect(got).toEqual(oracle(datatype, JSON.parse(JSON.stringify(data))));
        },
      ),
      { seed: 13, numRuns: 60 },
    );
  });
});

describe('nested float data', () => {
  test('the same refusals as flat data: the count first, then the first element of the wrong type', () => {
    const doc = (data: unknown, shape = [2, 2]) =>
      JSON.stringify({ inputs: [{ name: 'IN', datatype: 'FP32', shape, data }] });
    expect(
      decodeError(
        doc([
          [1, 2],
          [3, 'x'],
        ]),
      ).message,
    ).toMatch(/element 3 is "x", expected a number for FP32/);
    expect(
      decodeError(
        doc([
          [1, 2],
          [3, 'x', 5],
        ]),
      ).message,
    ).toMatch(/shape \[2,2\] needs 4 elements, "data" has 5/);
    expect(
      decodeError(
        doc([
          [1, 2],
          [null, {}],
        ]),
      ).message,
    ).toMatch(/element 2 is null/);
  });
});

function fp32Response(values: number[]): ModelInferResponse {
  return {
    model_name: 'x',
    model_version: '1',
    id: '',
    parameters: {},
    outputs: [{ name: 'OUT', datatype: 'FP32', shape: [values.length], parameters: {} }],
    raw_output_contents: [Buffer.from(new Float32Array(values).buffer)],
  };
}

describe('JSON responses', () => {
  test('NaN and the infinities are written as Triton writes them, not as null', () => {
    const out = encodeInvokeResponse(fp32Response([NaN, Infinity, -Infinity, 1.5]), 'm', new Set());
    expect(out.body.toString()).toContain('"data":[NaN,Infinity,-Infinity,1.5]');
  });

  test('over the bound: a 400 that suggests binary outputs, refused early when hopeless', () => {
    const res = fp32Response(Array.from({ length: 1000 }, (_, i) => i / 3));
    const refuse = (max: number) => {
      try {
        encodeInvokeResponse(res, 'm', new Set(), { maxJsonBytes: max, limitName: 'LIMIT' });
      } catch (err) {
        return err as AgentError;
      }
      throw new Error('expected a refusal');
    };
    const e = refuse(1000);
    expect(e.code).toBe(ErrorCode.BadRequest);
    expect(e.message).toMatch(/at least 2000 bytes, over the limit of 1000 bytes \(LIMIT\)/);
    expect(e.message).toMatch(/binary_data_output/);
    expect(refuse(5000).message).toMatch(/over the limit of 5000 bytes/);
    // Binary outputs are not JSON: the bound does not apply to them.
    expect(encodeInvokeResponse(res, 'm', 'all', { maxJsonBytes: 1000 }).body.length).toBeGreaterThan(4000);
  });

  test('a large response is encoded in steps that let other callbacks run, to the same bytes', async () => {
    const res = fp32Response(Array.from({ length: 250_000 }, (_, i) => i / 7));
    const whole = encodeInvokeResponse(res, 'm', new Set()).body;
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    const parts = await encodeInvokeResponseParts(res, 'm', new Set());
    clearInterval(timer);
    expect(parts.parts.length).toBeGreaterThan(1);
    // Buffer.equals: jest's toEqual walks 8 MB element by element.
    expect(Buffer.concat(parts.parts).equals(whole)).toBe(true);
    expect(parts.byteLength).toBe(whole.length);
    expect(ticks).toBeGreaterThan(0);
    const parsed = JSON.parse(whole.toString()) as { outputs: { data: number[] }[] };
    expect(parsed.outputs[0].data[7]).toBe(Math.fround(1));
  });
});

describe('float values beyond the type', () => {
  test('regression: an FP32 value out of range is a 400, not a silent Infinity', () => {
    const doc = (data: unknown[]) =>
      JSON.stringify({ inputs: [{ name: 'IN', datatype: 'FP32', shape: [data.length], data }] });
    expect(decodeError(doc([1, 1e300])).message).toMatch(/element 1 \(1e\+300\) is out of the range of FP32/);
    expect(decodeError(doc([-1e39])).message).toMatch(/element 0 \(-1e\+39\) is out of the range of FP32/);
    // JSON's 1e999 parses as Infinity: out of range for any float type.
    expect(
      decodeError('{"inputs":[{"name":"IN","datatype":"FP32","shape":[1],"data":[1e999]}]}').message,
    ).toMatch(/out of the range of FP32/);
    // The largest FP32 and tiny values (rounded to zero, as Triton would) are accepted.
    expect(() =>
      decodeInvokeBody(Buffer.from(doc([3.4028234663852886e38, 1e-50])), 'application/json', io),
    ).not.toThrow();
  });
});
