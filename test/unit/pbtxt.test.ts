import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import {
  parsePbtxt,
  instanceGroups,
  placeOnGpus,
  keptGpus,
  writePbtxt,
  readModelConfig,
  setModelName,
  renameEnsembleSteps,
  isEnsemble,
  PbtxtSyntaxError,
  PbMessage,
  PbtxtSchemaError,
} from '../../src/model-config';
import { modelConfigToJson } from '../../src/model-config';

const repo = path.join(__dirname, '..', '..', 'triton-models');
const PT = fs.readFileSync(path.join(repo, 'resnet_pt', 'resnet', 'config.pbtxt'), 'utf8');
const TRT = fs.readFileSync(path.join(repo, 'resnet_trt', 'resnet', 'config.pbtxt'), 'utf8');

const ENSEMBLE = `
# An ensemble: preprocess then classify.
name: "pipeline"
platform: "ensemble"
max_batch_size: 8
input [
  { name: "RAW", data_type: TYPE_UINT8, dims: [ -1 ] }
]
output [ { name: "SCORES" data_type: TYPE_FP32 dims: [ 1000 ] } ]
ensemble_scheduling {
  step [
    {
      model_name: "preprocess"
      model_version: -1
      input_map { key: "IN" value: "RAW" }
      output_map { key: "OUT" value: "pixels" }
    },
    {
      model_name: "resnet"
      model_version: -1
      input_map { key: "INPUT__0" value: "pixels" }
      output_map { key: "OUTPUT__0" value: "SCORES" }
    }
  ]
}
`;

/** Strips positions so trees can be compared after a write/parse round trip. */
function shape(m: PbMessage): unknown {
  return m.fields.map((f) => [
    f.name,
    f.value.kind === 'message'
      ? shape(f.value)
      : f.value.kind === 'list'
        ? f.value.items.map((i) => (i.kind === 'message' ? shape(i) : i))
        : f.value,
  ]);
}

describe('pbtxt', () => {
  test.each([
    ['PyTorch resnet', PT],
    ['TensorRT resnet with model_warmup', TRT],
    ['ensemble', ENSEMBLE],
  ])('round-trips the %s config', (_label, text) => {
    const doc = parsePbtxt(text);
    const again = parsePbtxt(writePbtxt(doc));
    expect(shape(again)).toEqual(shape(doc));
    expect(modelConfigToJson(again)).toEqual(modelConfigToJson(doc));
  });

  test('reads the PyTorch config', () => {
    const c = readModelConfig(parsePbtxt(PT));
    expect(c).toMatchObject({
      name: 'resnet',
      platform: 'pytorch_libtorch',
      maxBatchSize: 128,
      inputs: [{ name: 'INPUT__0', dataType: 'TYPE_FP32', dims: [3, 224, 224] }],
      outputs: [{ name: 'OUTPUT__0', dataType: 'TYPE_FP32', dims: [1000] }],
      ensembleSteps: [],
      versionPolicy: { kind: 'latest', numVersions: 1 },
    });
  });

  test('reads the TensorRT warmup block through the schema', () => {
    const json = modelConfigToJson(parsePbtxt(TRT));
    expect(json.model_warmup).toEqual([
      {
        name: 'bs128 Warmup',
        batch_size: 128,
        inputs: { input: { data_type: 'TYPE_FP32', dims: ['3', '224', '224'], zero_data: false } },
      },
    ]);
    expect(readModelConfig(parsePbtxt(TRT)).platform).toBe('tensorrt_plan');
  });

  test('reads ensemble steps with list syntax and maps', () => {
    const c = readModelConfig(parsePbtxt(ENSEMBLE));
    expect(isEnsemble(c)).toBe(true);
    expect(c.inputs[0]).toMatchObject({ name: 'RAW', dataType: 'TYPE_UINT8', dims: [-1] });
    expect(c.ensembleSteps).toEqual([
      { modelName: 'preprocess', modelVersion: -1, inputMap: { IN: 'RAW' }, outputMap: { OUT: 'pixels' } },
      {
        modelName: 'resnet',
        modelVersion: -1,
        inputMap: { INPUT__0: 'pixels' },
        outputMap: { OUTPUT__0: 'SCORES' },
      },
    ]);
  });

  test('sets the top-level name without touching nested names', () => {
    const doc = setModelName(parsePbtxt(TRT), 'resnet-trt-1a2b3c');
    const c = readModelConfig(parsePbtxt(writePbtxt(doc)));
    expect(c.name).toBe('resnet-trt-1a2b3c');
    expect(c.inputs[0].name).toBe('input');
    const json = modelConfigToJson(doc);
    expect((json.model_warmup as { name: string }[])[0].name).toBe('bs128 Warmup');
  });

  test('adds a name when the config has none', () => {
    const doc = setModelName(parsePbtxt('platform: "onnxruntime_onnx"'), 'm');
    expect(writePbtxt(doc)).toBe('name: "m"\nplatform: "onnxruntime_onnx"\n');
  });

  test('rewrites ensemble step model names', () => {
    const prefix = (n: string) => (n === 'pipeline' ? undefined : `a1b2_${n}`);
    const doc = renameEnsembleSteps(parsePbtxt(ENSEMBLE), prefix);
    const c = readModelConfig(parsePbtxt(writePbtxt(doc)));
    expect(c.ensembleSteps.map((s) => s.modelName)).toEqual(['a1b2_preprocess', 'a1b2_resnet']);
    expect(c.ensembleSteps[1].inputMap).toEqual({ INPUT__0: 'pixels' });
    // the original tree is unchanged
    expect(readModelConfig(parsePbtxt(ENSEMBLE)).ensembleSteps[0].modelName).toBe('preprocess');
  });

  test('handles strings with escapes, adjacent strings, angle brackets, separators and comments', () => {
    const doc = parsePbtxt(
      [
        'name: "a\\"b\\\\c\\n\\x41\\101\\u00e9" # comment',
        'platform: \'single\' "-joined";',
        'parameters < key: "k", value: < string_value: "v" > >,',
        'max_batch_size: 0x10',
      ].join('\n'),
    );
    const c = readModelConfig(doc);
    expect(c.name).toBe('a"b\\c\nAAé');
    expect(c.platform).toBe('single-joined');
    expect(c.parameters).toEqual({ k: 'v' });
    expect(c.maxBatchSize).toBe(16);
    expect(readModelConfig(parsePbtxt(writePbtxt(doc))).name).toBe('a"b\\c\nAAé');
  });

  test('field: { } and field { } mean the same', () => {
    const a = modelConfigToJson(parsePbtxt('dynamic_batching: { max_queue_delay_microseconds: 100 }'));
    const b = modelConfigToJson(parsePbtxt('dynamic_batching { max_queue_delay_microseconds: 100 }'));
    expect(a).toEqual(b);
    expect(a).toEqual({ dynamic_batching: { max_queue_delay_microseconds: '100' } });
  });

  test.each([
    ['name: "unterminated', 1, 7, 'unterminated string'],
    ['name "x"', 1, 6, "expected ':' or '{'"],
    ['input {\n  name: "a"\n', 3, 1, "expected '}'"],
    ['max_batch_size: 8\n}', 2, 1, 'expected a field name'],
    ['dims: [1, 2', 1, 12, "expected ',' or ']'"],
    ['name: @', 1, 7, "unexpected character '@'"],
    ['name: "\\q"', 1, 8, "invalid escape '\\q'"],
  ])('reports %j at line and column', (text, line, column, detail) => {
    let err: unknown;
    try {
      parsePbtxt(text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PbtxtSyntaxError);
    const e = err as PbtxtSyntaxError;
    expect([e.line, e.column]).toEqual([line, column]);
    expect(e.message).toContain(detail);
    expect(e.message).toMatch(new RegExp(`^config\\.pbtxt:${line}:${column}: `));
  });

  test.each([
    ['platfrom: "x"', 1, 'has no field named "platfrom"'],
    ['input { name: "a" data_type: TYPE_FLOAT }', 1, 'unknown enumeration value TYPE_FLOAT'],
    ['max_batch_size: "eight"', 1, 'expected a number'],
    ['name: "m"\nmax_batch_size: 99999999999', 2, 'out of range'],
    ['input: "x"', 1, 'is a message'],
  ])('schema check rejects %j', (text, line, detail) => {
    expect(() => modelConfigToJson(parsePbtxt(text))).toThrow(PbtxtSchemaError);
    try {
      modelConfigToJson(parsePbtxt(text));
    } catch (e) {
      expect((e as PbtxtSchemaError).line).toBe(line);
      expect((e as Error).message).toContain(detail);
    }
  });

  test('int64 dims beyond 2^53 fail loudly in typed reads', () => {
    expect(() => readModelConfig(parsePbtxt('input { name: "a" dims: 9007199254740993 }'))).toThrow(
      /integers/,
    );
    expect(modelConfigToJson(parsePbtxt('input { name: "a" dims: 9007199254740993 }'))).toEqual({
      input: [{ name: 'a', dims: ['9007199254740993'] }],
    });
  });

  test('any string survives a write/parse round trip (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (s) => {
        const doc = setModelName(parsePbtxt(''), s);
        expect(readModelConfig(parsePbtxt(writePbtxt(doc))).name).toBe(s);
      }),
    );
  });
});

describe('instance groups and placement', () => {
  test('groups are read in either form, and placing keeps CPU groups and the GPU instance count', () => {
    const doc = parsePbtxt(
      'name: "m"\ninstance_group [{ kind: KIND_GPU count: 2 }, { kind: KIND_CPU count: 1 }]\ninstance_group { count: 3 }\n',
    );
    expect(instanceGroups(doc)).toEqual([
      { kind: 'KIND_GPU', count: 2, gpus: [] },
      { kind: 'KIND_CPU', count: 1, gpus: [] },
      { kind: 'KIND_AUTO', count: 3, gpus: [] },
    ]);
    const placed = parsePbtxt(writePbtxt(placeOnGpus(doc, [2])));
    expect(instanceGroups(placed)).toEqual([
      { kind: 'KIND_CPU', count: 1, gpus: [] },
      { kind: 'KIND_GPU', count: 2, gpus: [2] },
      { kind: 'KIND_GPU', count: 3, gpus: [2] },
    ]);
    // One group per GPU, each GPU group of the artifact repeated with its count and fields.
    const named = parsePbtxt(
      'instance_group [{ name: "g" kind: KIND_GPU count: 2 profile: "1" }, { kind: KIND_CPU count: 1 }]',
    );
    const two = placeOnGpus(named, [0, 3]);
    expect(instanceGroups(two)).toEqual([
      { kind: 'KIND_CPU', count: 1, gpus: [] },
      { kind: 'KIND_GPU', count: 2, gpus: [0] },
      { kind: 'KIND_GPU', count: 2, gpus: [3] },
    ]);
    expect(writePbtxt(two)).toContain('name: "g_gpu3"');
    expect(writePbtxt(two).match(/profile: "1"/g)).toHaveLength(2);
    // No groups: Triton's one instance per GPU becomes one instance on the chosen GPU.
    expect(instanceGroups(placeOnGpus(parsePbtxt('name: "m"'), [1]))).toEqual([
      { kind: 'KIND_GPU', count: 1, gpus: [1] },
    ]);
    // A CPU-only model gets no GPU group.
    const cpu = parsePbtxt('instance_group [{ kind: KIND_CPU }]');
    expect(instanceGroups(placeOnGpus(cpu, [0]))).toEqual([{ kind: 'KIND_CPU', count: 1, gpus: [] }]);
  });

  test('keptGpus: the GPUs whose group is unchanged keep their instances; a changed GPU list keeps none', () => {
    const artifact = parsePbtxt('instance_group [{ kind: KIND_GPU count: 2 }]');
    const one = placeOnGpus(artifact, [0]);
    const three = placeOnGpus(artifact, [0, 1, 2]);
    expect([...keptGpus(one, three)]).toEqual([0]);
    expect([...keptGpus(three, placeOnGpus(artifact, [2]))]).toEqual([2]);
    // One group listing several GPUs (what earlier versions wrote): every instance is new.
    const listed = parsePbtxt('instance_group [{ count: 2 kind: KIND_GPU gpus: [0] }]');
    const widened = parsePbtxt('instance_group [{ count: 2 kind: KIND_GPU gpus: [0, 1] }]');
    expect([...keptGpus(listed, widened)]).toEqual([]);
    // A group naming no GPUs is every GPU: nothing can be judged kept.
    expect([...keptGpus(artifact, one)]).toEqual([]);
  });
});
