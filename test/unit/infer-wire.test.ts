import fc from 'fast-check';
import { PassThrough } from 'node:stream';
import type { IncomingMessage } from 'node:http';
import { readPlacedBody, type BodyPlacement, type PlacedParts } from '../../src/http/body';
import { decodeInvokeBody, placeBinaryInputs, type ModelIO } from '../../src/inference';
import { allocateInferTail, serializeInferRequest } from '../../src/triton';
import { tritonServiceDefinition } from '../../src/triton/client';
import { varintLength } from '../../src/triton/infer-wire';

type Raw = Record<string, unknown>;
const modelInfer = tritonServiceDefinition().ModelInfer;
/** protobufjs's own bytes for a whole request: the oracle. */
const protobufBytes = (wire: Raw) => Buffer.from(modelInfer.requestSerialize(wire));
/** Ours: every other field by protobufjs, then the raw inputs (what the client's serializer does). */
const ourBytes = (wire: Raw) =>
  serializeInferRequest(
    modelInfer.requestSerialize({ ...wire, raw_input_contents: [] }),
    wire.raw_input_contents as Buffer[],
  );

const wireRequest = (sizes: number[], name = 'resnet_1a2b'): Raw => ({
  model_name: name,
  id: 'req-1',
  parameters: { binary_data_output: { bool_param: true } },
  inputs: sizes.map((n, i) => ({ name: `IN${i}`, datatype: 'UINT8', shape: [n] })),
  outputs: [{ name: 'OUT' }],
  raw_input_contents: [] as Buffer[],
});

/** Sizes around every varint length boundary a tensor can cross. */
const sizeArb = fc.oneof(
  fc.integer({ min: 0, max: 300 }),
  fc.constantFrom(127, 128, 16_383, 16_384, 602_112),
);

const fill = (views: Buffer[]) => views.forEach((v, i) => v.fill((i * 37 + 11) & 0xff));

describe('ModelInferRequest bytes (triton/infer-wire.ts)', () => {
  test('varintLength agrees with counting 7-bit groups', () => {
    for (const n of [
      0,
      1,
      127,
      128,
      16_383,
      16_384,
      2 ** 21 - 1,
      2 ** 21,
      2 ** 31,
      2 ** 35,
      Number.MAX_SAFE_INTEGER,
    ]) {
      expect(varintLength(n)).toBe(Math.max(1, Math.ceil(n.toString(2).length / 7)));
    }
  });

  test('raw inputs in their own buffers: byte for byte what protobufjs writes', () => {
    fc.assert(
      fc.property(fc.array(sizeArb, { maxLength: 4 }), (sizes) => {
        const wire = wireRequest(sizes);
        wire.raw_input_contents = sizes.map((n, i) => Buffer.alloc(n, i + 1));
        expect(ourBytes(wire).equals(protobufBytes(wire))).toBe(true);
      }),
      { numRuns: 60 },
    );
  });

  test('raw inputs read into a tail: the same bytes, and a view of the tail (nothing copied)', () => {
    fc.assert(
      fc.property(fc.array(sizeArb, { minLength: 1, maxLength: 4 }), (sizes) => {
        const views = allocateInferTail(512, sizes);
        fill(views);
        const wire = wireRequest(sizes);
        wire.raw_input_contents = views;
        const ours = ourBytes(wire);
        expect(ours.buffer).toBe(views[0].buffer);
        expect(ours.equals(protobufBytes(wire))).toBe(true);
        // Sent again (a retry after a reload, under a new name): copied, and the first bytes, which
        // grpc-js may still hold, are left as they were.
        const first = Buffer.from(ours);
        const renamed = { ...wire, model_name: 'resnet_on_gpu1_after_a_reload' };
        const again = ourBytes(renamed);
        expect(again.buffer).not.toBe(views[0].buffer);
        expect(again.equals(protobufBytes(renamed))).toBe(true);
        expect(ours.equals(first)).toBe(true);
      }),
      { numRuns: 60 },
    );
  });

  test('a tail the raw inputs no longer match is copied, never written into', () => {
    const views = allocateInferTail(64, [10, 20]);
    fill(views);
    const before = Buffer.from(Buffer.from(views[0].buffer));
    const cases: Buffer[][] = [
      [views[1], views[0]], // reordered
      [views[0]], // one left out: the tail is not covered to its end
      [views[0], Buffer.from(views[1])], // one replaced by a copy
      [views[0], views[1].subarray(0, 19)], // one shortened
    ];
    for (const raws of cases) {
      const wire = wireRequest(raws.map((r) => r.length));
      wire.raw_input_contents = raws;
      const ours = ourBytes(wire);
      expect(ours.buffer).not.toBe(views[0].buffer);
      expect(ours.equals(protobufBytes(wire))).toBe(true);
    }
    // Other fields longer than the room in front: copied too.
    const long = wireRequest([10, 20], 'm'.repeat(100));
    long.raw_input_contents = views;
    expect(ourBytes(long).buffer).not.toBe(views[0].buffer);
    expect(ourBytes(long).equals(protobufBytes(long))).toBe(true);
    expect(Buffer.from(views[0].buffer).equals(before)).toBe(true);
  });
});

/** A request stream that delivers `body` in the given chunks. */
function requestOf(body: Buffer, cuts: number[], headers: Record<string, string>): IncomingMessage {
  const stream = new PassThrough();
  const at = [...new Set(cuts.map((c) => c % (body.length + 1)))].sort((a, b) => a - b);
  let prev = 0;
  for (const c of [...at, body.length]) {
    if (c > prev) stream.write(body.subarray(prev, c));
    prev = c;
  }
  stream.end();
  return Object.assign(stream, { headers }) as unknown as IncomingMessage;
}

const io: ModelIO = {
  maxBatchSize: 0,
  inputs: [
    { name: 'A', datatype: 'UINT8', shape: [-1] },
    { name: 'B', datatype: 'UINT8', shape: [-1] },
  ],
  outputs: [{ name: 'OUT', datatype: 'FP32', shape: [-1] }],
};

function binaryJsonBody(sizes: number[]): { body: Buffer; headerSize: number } {
  const header = Buffer.from(
    JSON.stringify({
      inputs: sizes.map((n, i) => ({
        name: 'AB'[i],
        datatype: 'UINT8',
        shape: [n],
        parameters: { binary_data_size: n },
      })),
    }),
  );
  const tensors = sizes.map((n, i) => Buffer.alloc(n, i + 7));
  return { body: Buffer.concat([header, ...tensors]), headerSize: header.length };
}

describe('reading a binary+json body into place (http/body.ts, inference/placed-body.ts)', () => {
  test('whatever the chunk boundaries, the decoded request equals the one from the whole body, and its bytes need no copy', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 0, max: 4000 }), { minLength: 1, maxLength: 2 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        async (sizes, cuts) => {
          const { body, headerSize } = binaryJsonBody(sizes);
          const contentType = `application/vnd.sagemaker-triton.binary+json;json-header-size=${headerSize}`;
          const placement: BodyPlacement = { headerSize, place: placeBinaryInputs };
          const read = await readPlacedBody(
            requestOf(body, cuts, { 'content-length': String(body.length) }),
            1 << 20,
            'test',
            placement,
          );
          expect(Buffer.isBuffer(read)).toBe(false);
          // What the placement read the header as travels with the body, for the decoder.
          expect((read as PlacedParts).parsedHeader).toEqual(
            JSON.parse(body.toString('utf8', 0, headerSize)),
          );
          const placed = decodeInvokeBody(read, contentType, io);
          const whole = decodeInvokeBody(body, contentType, io);
          expect(placed.request.inputs).toEqual(whole.request.inputs);
          const raws = placed.request.raw_input_contents ?? [];
          expect(raws.map((r) => r.toString('hex'))).toEqual(
            (whole.request.raw_input_contents ?? []).map((r) => r.toString('hex')),
          );
          const wire = { ...placed.request, model_name: 'm', raw_input_contents: raws } as Raw;
          const ours = ourBytes(wire);
          expect(ours.equals(protobufBytes(wire))).toBe(true);
          expect(ours.buffer).toBe(raws[0].buffer);
        },
      ),
      { numRuns: 80 },
    );
  });

  test('json-header-size=0: the whole body is placed as the one input', async () => {
    const body = Buffer.alloc(3000, 5);
    const read = await readPlacedBody(
      requestOf(body, [1, 1500], { 'content-length': '3000' }),
      1 << 20,
      'test',
      { headerSize: 0, place: placeBinaryInputs },
    );
    const decoded = decodeInvokeBody(
      read,
      'application/vnd.sagemaker-triton.binary+json;json-header-size=0',
      { maxBatchSize: 0, inputs: [io.inputs[0]], outputs: io.outputs },
    );
    const raw = (decoded.request.raw_input_contents ?? [])[0];
    expect(raw.equals(body)).toBe(true);
    expect(Buffer.isBuffer(read)).toBe(false);
  });

  test('headers that cannot be placed are read as one buffer, and the decoder answers as before', async () => {
    const bodies = [
      '{"inputs":[{"name":"A","datatype":"UINT8","shape":[2],"data":[1,2]}]}', // a "data" input
      '{"inputs":[{"name":"A","datatype":"UINT8","shape":[3],"parameters":{"binary_data_size":3}}]}ab', // sizes do not add up
      '{"inputs":[', // not JSON
      '{"inputs":[{"name":"A","datatype":"UINT8","shape":[2],"parameters":{"binary_data_size":"2"}}]}ab',
    ];
    for (const text of bodies) {
      const headerSize = text.lastIndexOf('}') + 1 || text.length;
      const body = Buffer.from(text);
      const read = await readPlacedBody(
        requestOf(body, [3], { 'content-length': String(body.length) }),
        1 << 20,
        'test',
        { headerSize, place: placeBinaryInputs },
      );
      expect(Buffer.isBuffer(read) && read.equals(body)).toBe(true);
    }
  });

  test('a body that ends short of its Content-Length is the bytes that came, as one buffer', async () => {
    const { body, headerSize } = binaryJsonBody([3000]);
    const declared = { 'content-length': String(body.length + 100) };
    const placed = await readPlacedBody(requestOf(body, [5, headerSize + 7], declared), 1 << 20, 'x', {
      headerSize,
      place: placeBinaryInputs,
    });
    expect(Buffer.isBuffer(placed) && placed.equals(body)).toBe(true);
    const plain = await readPlacedBody(requestOf(body, [5], declared), 1 << 20, 'x');
    expect(Buffer.isBuffer(plain) && plain.equals(body)).toBe(true);
  });

  test('a placed body split otherwise than its header says is still decoded right (joined)', () => {
    const { body, headerSize } = binaryJsonBody([5, 7]);
    const rest = body.subarray(headerSize);
    const odd = {
      header: body.subarray(0, headerSize),
      sections: [rest.subarray(0, 3), rest.subarray(3)],
      length: body.length,
    };
    const contentType = `application/vnd.sagemaker-triton.binary+json;json-header-size=${headerSize}`;
    const got = decodeInvokeBody(odd, contentType, io).request.raw_input_contents ?? [];
    const want = decodeInvokeBody(body, contentType, io).request.raw_input_contents ?? [];
    expect(got.map((r) => r.toString('hex'))).toEqual(want.map((r) => r.toString('hex')));
  });

  test('without a Content-Length the body is one buffer, and limits still refuse', async () => {
    const { body, headerSize } = binaryJsonBody([100]);
    const placement = { headerSize, place: placeBinaryInputs };
    const read = await readPlacedBody(requestOf(body, [10], {}), 1 << 20, 'test', placement);
    expect(Buffer.isBuffer(read) && read.equals(body)).toBe(true);
    await expect(
      readPlacedBody(
        requestOf(body, [10], { 'content-length': String(body.length) }),
        50,
        'THE_LIMIT',
        placement,
      ),
    ).rejects.toThrow(/THE_LIMIT/);
    await expect(
      readPlacedBody(
        requestOf(body, [10], { 'content-length': String(body.length - 5) }),
        1 << 20,
        'x',
        placement,
      ),
    ).rejects.toThrow(/longer than its Content-Length/);
  });
});

describe('JSON float inputs decoded straight into place (inference/kserve-decode.ts)', () => {
  const floats: ModelIO = {
    maxBatchSize: 0,
    inputs: [
      { name: 'A', datatype: 'FP32', shape: [-1, -1] },
      { name: 'B', datatype: 'FP64', shape: [-1] },
      { name: 'C', datatype: 'INT32', shape: [-1] },
    ],
    outputs: [{ name: 'OUT', datatype: 'FP32', shape: [-1] }],
  };
  const decodeJson = (doc: unknown) =>
    decodeInvokeBody(Buffer.from(JSON.stringify(doc)), 'application/json', floats);
  const wireOf = (request: ReturnType<typeof decodeJson>['request']) =>
    ({ ...request, model_name: 'm', raw_input_contents: request.raw_input_contents ?? [] }) as Raw;

  test('FP32 and FP64 data (nested and flat) are written into the tail the request is sent from', () => {
    const a = [
      [0.5, -1.25, 3],
      [4, 5.5, 6],
    ];
    const b = [1.1, 2.2, 3.3, 4.4, 5.5];
    const decoded = decodeJson({
      inputs: [
        { name: 'A', datatype: 'FP32', shape: [2, 3], data: a },
        { name: 'B', datatype: 'FP64', shape: [5], data: b },
      ],
    });
    const raws = decoded.request.raw_input_contents ?? [];
    expect([...new Float32Array(new Uint8Array(raws[0]).buffer)]).toEqual(a.flat());
    expect([...new Float64Array(new Uint8Array(raws[1]).buffer)]).toEqual(b);
    const wire = wireOf(decoded.request);
    const ours = ourBytes(wire);
    expect(ours.buffer).toBe(raws[0].buffer);
    expect(ours.equals(protobufBytes(wire))).toBe(true);
  });

  test('other datatypes keep their own buffers, and the bytes are still protobufjs’s', () => {
    const decoded = decodeJson({
      inputs: [
        { name: 'A', datatype: 'FP32', shape: [1, 2], data: [1, 2] },
        { name: 'C', datatype: 'INT32', shape: [2], data: [7, 8] },
      ],
    });
    const raws = decoded.request.raw_input_contents ?? [];
    const wire = wireOf(decoded.request);
    const ours = ourBytes(wire);
    expect(ours.buffer).not.toBe(raws[0].buffer);
    expect(ours.equals(protobufBytes(wire))).toBe(true);
  });

  test('a shape far larger than its data allocates nothing for it and is refused as before', () => {
    const before = process.memoryUsage().arrayBuffers;
    expect(() =>
      decodeJson({ inputs: [{ name: 'B', datatype: 'FP64', shape: [1_000_000_000], data: [1] }] }),
    ).toThrow(/needs 1000000000 elements, "data" has 1/);
    // Within what the text could hold (padding in "id"), flat data still allocates nothing for it.
    const padded = {
      id: 'x'.repeat(4_000_000),
      inputs: [{ name: 'B', datatype: 'FP64', shape: [1_900_000], data: [1] }],
    };
    expect(() => decodeJson(padded)).toThrow(/needs 1900000 elements, "data" has 1/);
    // Nested data with a shape no text could fill: a 400, not a failed allocation.
    expect(() =>
      decodeJson({ inputs: [{ name: 'B', datatype: 'FP64', shape: [100_000_000_000, 1], data: [[1]] }] }),
    ).toThrow(/needs 100000000000 elements, "data" has 1/);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(8 * 1024 * 1024);
  });

  test('the decoding thread places nothing (its answer crosses threads one buffer per input)', () => {
    const doc = { inputs: [{ name: 'A', datatype: 'FP32', shape: [1, 2], data: [[1, 2]] }] };
    const body = Buffer.from(JSON.stringify(doc));
    const inPlace = decodeInvokeBody(body, 'application/json', floats).request.raw_input_contents ?? [];
    const onThread =
      decodeInvokeBody(body, 'application/json', floats, undefined, { placeFloats: false }).request
        .raw_input_contents ?? [];
    expect(inPlace[0].buffer.byteLength).toBeGreaterThan(8);
    expect(onThread[0].buffer.byteLength).toBe(8);
    expect(onThread[0].equals(inPlace[0])).toBe(true);
  });
});
