import { AgentError, ErrorCode } from '../../src/errors';
import {
  bodyFormat,
  decodeInvokeBody,
  encodeInvokeResponse,
  rawToValues,
  type ModelIO,
} from '../../src/inference';

const io: ModelIO = {
  maxBatchSize: 8,
  inputs: [{ name: 'IN', datatype: 'FP32', shape: [-1, 4] }],
  outputs: [{ name: 'OUT', datatype: 'FP32', shape: [-1, 4] }],
};

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as AgentError).code;
  }
  return undefined;
}

describe('bodyFormat', () => {
  test.each([
    [undefined, { kind: 'json' }],
    ['application/json; charset=utf-8', { kind: 'json' }],
    ['application/octet-stream', { kind: 'json' }],
    ['application/vnd.sagemaker-triton.binary+json;json-header-size=10', { kind: 'binary', headerSize: 10 }],
    ['application/vnd.sagemaker-triton.binary+json; json-header-size=0', { kind: 'binary', headerSize: 0 }],
    ['application/vnd.sagemaker-triton.binary+json', { kind: 'json' }],
  ])('%s', (ct, expected) => {
    expect(bodyFormat(ct, 100)).toEqual(expected);
  });

  test('refusals', () => {
    expect(codeOf(() => bodyFormat('image/jpeg', 1))).toBe(ErrorCode.UnsupportedMediaType);
    expect(
      codeOf(() => bodyFormat('application/vnd.sagemaker-triton.binary+json;json-header-size=x', 1)),
    ).toBe(ErrorCode.BadRequest);
    expect(
      codeOf(() => bodyFormat('application/vnd.sagemaker-triton.binary+json;json-header-size=5', 4)),
    ).toBe(ErrorCode.BadRequest);
  });
});

describe('decodeInvokeBody', () => {
  test('JSON with nested data becomes raw little-endian bytes', () => {
    const body = Buffer.from(
      JSON.stringify({
        id: 'r',
        inputs: [
          {
            name: 'IN',
            datatype: 'FP32',
            shape: [1, 4],
            data: [
              [1, 2],
              [3, 4],
            ],
          },
        ],
      }),
    );
    const d = decodeInvokeBody(body, 'application/json', io);
    expect(d.request.id).toBe('r');
    expect(d.request.inputs).toEqual([{ name: 'IN', datatype: 'FP32', shape: [1, 4] }]);
    expect(rawToValues('FP32', (d.request.raw_input_contents as Buffer[])[0])).toEqual([1, 2, 3, 4]);
    expect(d.binaryOutputs).toEqual(new Set());
  });

  test('HTTP-only parameters are not forwarded to Triton; others are', () => {
    const body = Buffer.from(
      JSON.stringify({
        parameters: { binary_data_output: false, priority: 2, tag: 'x' },
        inputs: [
          { name: 'IN', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4], parameters: { note: 'n' } },
        ],
        outputs: [{ name: 'OUT', parameters: { binary_data: true } }],
      }),
    );
    const d = decodeInvokeBody(body, undefined, io);
    expect(d.request.parameters).toEqual({ priority: { int64_param: 2 }, tag: { string_param: 'x' } });
    expect(d.request.inputs[0].parameters).toEqual({ note: { string_param: 'n' } });
    expect(d.request.outputs).toEqual([{ name: 'OUT' }]);
    expect(d.binaryOutputs).toEqual(new Set(['OUT']));
  });

  test.each([
    [
      { inputs: [{ name: 'IN', datatype: 'INT8', shape: [1], data: [128] }] },
      /element 0 is 128, expected an integer in \[-128, 127\] for INT8/,
    ],
    [{ inputs: [{ name: 'IN', datatype: 'UINT64', shape: [1], data: [-1] }] }, /expected an integer/],
    [{ inputs: [{ name: 'IN', datatype: 'BOOL', shape: [1], data: [1] }] }, /expected true or false/],
    [{ inputs: [{ name: 'IN', datatype: 'BYTES', shape: [1], data: [1] }] }, /expected a string/],
    [
      {
        inputs: [
          { name: 'IN', datatype: 'FP32', shape: [1], data: [1] },
          { name: 'IN', datatype: 'FP32', shape: [1], data: [1] },
        ],
      },
      /input 'IN' is given twice/,
    ],
    [
      {
        inputs: [
          { name: 'IN', datatype: 'FP32', shape: [1], data: [1], parameters: { binary_data_size: 4 } },
        ],
      },
      /either "data" or parameters.binary_data_size/,
    ],
    [{ inputs: [{ datatype: 'FP32', shape: [1], data: [1] }] }, /inputs\[0\] needs a non-empty "name"/],
    [
      {
        inputs: [{ name: 'IN', datatype: 'FP32', shape: [1], data: [1] }],
        outputs: [{ name: 'OUT', parameters: { classification: 3 } }],
      },
      /classification extension is not supported/,
    ],
  ])('400: %j', (doc, message) => {
    expect(() => decodeInvokeBody(Buffer.from(JSON.stringify(doc)), 'application/json', io)).toThrow(message);
  });
});

describe('encodeInvokeResponse', () => {
  const res = {
    model_name: 'triton-name',
    model_version: '1',
    id: 'x',
    parameters: {},
    outputs: [
      { name: 'A', datatype: 'INT32', shape: [2], parameters: {} },
      { name: 'B', datatype: 'BYTES', shape: [1], parameters: {} },
    ],
    raw_output_contents: [Buffer.from([1, 0, 0, 0, 2, 0, 0, 0]), Buffer.from([2, 0, 0, 0, 0x68, 0x69])],
  };

  test('JSON uses the MME name and flat data', () => {
    const e = encodeInvokeResponse(res, 'mme-name', new Set());
    expect(e.contentType).toBe('application/json');
    expect(JSON.parse(e.body.toString())).toEqual({
      model_name: 'mme-name',
      model_version: '1',
      id: 'x',
      outputs: [
        { name: 'A', datatype: 'INT32', shape: [2], data: [1, 2] },
        { name: 'B', datatype: 'BYTES', shape: [1], data: ['hi'] },
      ],
    });
  });

  test('binary outputs follow the JSON header in order, sized in the header', () => {
    const e = encodeInvokeResponse(res, 'm', 'all');
    const n = Number(/json-header-size=(\d+)$/.exec(e.contentType)?.[1]);
    const header = JSON.parse(e.body.subarray(0, n).toString());
    expect(
      header.outputs.map((o: { parameters: { binary_data_size: number } }) => o.parameters.binary_data_size),
    ).toEqual([8, 6]);
    expect(e.body.subarray(n)).toEqual(Buffer.concat(res.raw_output_contents));
  });
});
