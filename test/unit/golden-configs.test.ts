/**
 * Golden config.pbtxt files covering Triton's documented syntax (ensembles, the dynamic and sequence
 * batchers, optimization, warmup, version policy, decoupled models, profiles and rate limiters, list and
 * message forms, `:` before messages, comments): each is parsed, checked against ModelConfig, written
 * back by the agent and compared field by field; the agent's edits change only what they mean to.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  modelConfigFromJson,
  modelConfigToJson,
  parsePbtxt,
  placeOnGpus,
  readModelConfig,
  renameEnsembleSteps,
  setModelName,
  writePbtxt,
} from '../../src/model-config';

const DIR = path.join(__dirname, '..', 'fixtures', 'model-configs');
const GOLDEN = fs
  .readdirSync(DIR)
  .filter((f) => f.endsWith('.pbtxt'))
  .sort();

describe('golden config.pbtxt files', () => {
  test('there are golden files', () => {
    expect(GOLDEN.length).toBeGreaterThanOrEqual(7);
  });

  test.each(GOLDEN)('%s: parsed, written back, parsed again: every field the same', (file) => {
    const text = fs.readFileSync(path.join(DIR, file), 'utf8');
    const doc = parsePbtxt(text, file);
    const json = modelConfigToJson(doc);
    const again = parsePbtxt(writePbtxt(doc));
    expect(modelConfigToJson(again)).toEqual(json);
    // The protobuf JSON form (a load's `config` parameter) comes back to the same config too.
    expect(modelConfigToJson(modelConfigFromJson(json))).toEqual(json);
  });

  test.each(GOLDEN)("%s: the agent's edits change only the name, the steps and the GPU groups", (file) => {
    const doc = parsePbtxt(fs.readFileSync(path.join(DIR, file), 'utf8'), file);
    const summary = readModelConfig(doc);
    let edited = setModelName(doc, 'renamed-0123456789ab');
    edited =
      summary.platform === 'ensemble'
        ? renameEnsembleSteps(edited, (n) => `renamed-0123456789ab--${n}`)
        : placeOnGpus(edited, [1]);
    const before = modelConfigToJson(doc);
    const after = modelConfigToJson(parsePbtxt(writePbtxt(edited)));
    expect(after.name).toBe('renamed-0123456789ab');
    const untouched = (j: Record<string, unknown>) => {
      const rest = { ...j };
      delete rest.name;
      delete rest.instance_group;
      delete rest.ensemble_scheduling;
      return rest;
    };
    expect(untouched(after)).toEqual(untouched(before));
    if (summary.platform === 'ensemble') {
      const steps = (after.ensemble_scheduling as { step: { model_name: string }[] }).step;
      expect(steps.map((s) => s.model_name)).toEqual([
        'renamed-0123456789ab--image_preprocess_model',
        'renamed-0123456789ab--classification_model',
      ]);
    } else {
      // GPU groups moved to GPU 1, one group each; CPU groups and every other group field kept.
      const groups = (after.instance_group ?? []) as Record<string, unknown>[];
      const cpu = ((before.instance_group ?? []) as Record<string, unknown>[]).filter(
        (g) => g.kind === 'KIND_CPU',
      );
      expect(groups.filter((g) => g.kind === 'KIND_CPU')).toEqual(cpu);
      for (const g of groups.filter((g) => g.kind === 'KIND_GPU')) expect(g.gpus).toEqual([1]);
    }
  });

  test('field by field where it matters to the agent', () => {
    const read = (f: string) => modelConfigToJson(parsePbtxt(fs.readFileSync(path.join(DIR, f), 'utf8'), f));
    const trt = read('tensorrt-plan.pbtxt');
    expect(trt.instance_group).toEqual([
      {
        count: 1,
        kind: 'KIND_GPU',
        gpus: [0],
        profile: ['0'],
        rate_limiter: { resources: [{ name: 'R1', count: 4 }], priority: 2 },
      },
    ]);
    expect(trt.cc_model_filenames).toEqual({ '8.6': 'model_sm86.plan' });
    const opt = read('tensorrt-optimization.pbtxt');
    expect(opt.parameters).toEqual({ gpu_memory_bytes: { string_value: '3221225472' } });
    // int64 fields are strings in protobuf's JSON form, as Triton's own ModelConfig answer has them.
    expect((opt.input as { reshape: unknown }[])[0].reshape).toEqual({ shape: ['128'] });
    const warm = read('pytorch-warmup.pbtxt');
    expect(warm.version_policy).toEqual({ specific: { versions: ['1', '3'] } });
    expect((warm.model_warmup as unknown[]).length).toBe(2);
    const seq = read('sequence-batching.pbtxt');
    expect((seq.sequence_batching as { control_input: unknown[] }).control_input).toHaveLength(3);
  });
});
