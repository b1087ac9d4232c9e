import { AgentError, ErrorCode } from '../../src/errors';
import { DecodePool, decodeInvokeBody, type ModelIO } from '../../src/inference';

const io: ModelIO = {
  maxBatchSize: 0,
  inputs: [{ name: 'IN', datatype: 'FP32', shape: [-1] }],
  outputs: [{ name: 'OUT', datatype: 'FP32', shape: [-1] }],
};

describe('DecodePool', () => {
  // A tiny threshold sends every body of these tests to the worker thread.
  const pool = new DecodePool(16);
  afterAll(() => pool.close());

  test('the worker decodes exactly what the event loop would', async () => {
    const data = Array.from({ length: 5000 }, (_, i) => i / 7 - 300);
    const body = JSON.stringify({
      id: 'r1',
      inputs: [
        { name: 'IN', datatype: 'FP32', shape: [50, 100], data },
        { name: 'B', datatype: 'BYTES', shape: [2], data: ['é', ''] },
        { name: 'I', datatype: 'INT64', shape: [2], data: [-9007199254740991, 7] },
      ],
      outputs: [{ name: 'OUT', parameters: { binary_data: true } }],
    });
    const expected = decodeInvokeBody(Buffer.from(body), 'application/json', io);
    const got = await pool.decode(Buffer.from(body), 'application/json', io);
    expect(got.request.inputs).toEqual(expected.request.inputs);
    expect(got.request.id).toBe('r1');
    expect(got.binaryOutputs).toEqual(expected.binaryOutputs);
    const raw = got.request.raw_input_contents ?? [];
    expect(raw.map((b) => Buffer.isBuffer(b))).toEqual([true, true, true]);
    expect(raw).toEqual(expected.request.raw_input_contents);
  });

  test('binary+json with a large header: binary slices come back intact', async () => {
    const tensor = Buffer.from(new Float32Array([1.5, -2, 3]).buffer);
    const header = Buffer.from(
      JSON.stringify({
        inputs: [{ name: 'IN', datatype: 'FP32', shape: [3], parameters: { binary_data_size: 12 } }],
      }),
    );
    const ct = `application/vnd.sagemaker-triton.binary+json;json-header-size=${header.length}`;
    const got = await pool.decode(Buffer.concat([header, tensor]), ct, io);
    expect(got.request.raw_input_contents?.[0]).toEqual(tensor);
  });

  test('errors come back as the same AgentError', async () => {
    const body = Buffer.from(
      JSON.stringify({ inputs: [{ name: 'IN', datatype: 'FP32', shape: [2], data: [1, 'x'] }] }),
    );
    let inPlace: unknown;
    try {
      decodeInvokeBody(body, 'application/json', io);
    } catch (e) {
      inPlace = e;
    }
    const onWorker = await Promise.resolve(pool.decode(body, 'application/json', io)).catch(
      (e: unknown) => e,
    );
    expect(onWorker).toBeInstanceOf(AgentError);
    expect((onWorker as AgentError).code).toBe(ErrorCode.BadRequest);
    expect((onWorker as AgentError).message).toBe((inPlace as AgentError).message);
  });

  test('short bodies are decoded in place, without a thread hop', () => {
    const small = new DecodePool();
    const body = Buffer.from(
      JSON.stringify({ inputs: [{ name: 'IN', datatype: 'FP32', shape: [1], data: [1] }] }),
    );
    const r = small.decode(body, 'application/json', io);
    expect(r).not.toBeInstanceOf(Promise);
  });
});
