import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';

/** A temporary directory removed by `cleanup()`. */
export async function tempDir(prefix = 'mme-test-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rm(dir, { recursive: true, force: true }) };
}

export interface ModelSpec {
  /** config.pbtxt text; omit to write none. */
  config?: string;
  /** version → files (name → bytes or size in bytes of filler). A name ending in `/` makes a directory. */
  versions?: Record<string, Record<string, Buffer | number>>;
}

/** Writes `<root>/<name>/config.pbtxt` and its version directories. */
export async function writeModel(root: string, name: string, spec: ModelSpec): Promise<string> {
  const dir = path.join(root, name);
  await fs.mkdir(dir, { recursive: true });
  if (spec.config !== undefined) await fs.writeFile(path.join(dir, 'config.pbtxt'), spec.config);
  for (const [version, files] of Object.entries(spec.versions ?? { '1': {} })) {
    const vdir = path.join(dir, version);
    await fs.mkdir(vdir, { recursive: true });
    for (const [file, content] of Object.entries(files)) {
      if (file.endsWith('/')) {
        await fs.mkdir(path.join(vdir, file), { recursive: true });
        await fs.writeFile(
          path.join(vdir, file, 'saved_model.pb'),
          Buffer.alloc(typeof content === 'number' ? content : 0),
        );
        continue;
      }
      await fs.writeFile(
        path.join(vdir, file),
        typeof content === 'number' ? Buffer.alloc(content, 7) : content,
      );
    }
  }
  return dir;
}

/** The SageMaker MME GPU launch post's PyTorch ResNet-50 config, optionally renamed or with parameters. */
export function resnetPtConfig(
  opts: { name?: string | null; gpuBytes?: number; loadMs?: number } = {},
): string {
  const name = opts.name === undefined ? 'resnet' : opts.name;
  return [
    name === null ? '' : `name: "${name}"`,
    'platform: "pytorch_libtorch"',
    'max_batch_size: 128',
    'input { name: "INPUT__0" data_type: TYPE_FP32 dims: [3, 224, 224] }',
    'output { name: "OUTPUT__0" data_type: TYPE_FP32 dims: 1000 }',
    opts.gpuBytes !== undefined
      ? `parameters { key: "emulator_gpu_bytes" value { string_value: "${opts.gpuBytes}" } }`
      : '',
    opts.loadMs !== undefined
      ? `parameters { key: "emulator_load_ms" value { string_value: "${opts.loadMs}" } }`
      : '',
  ].join('\n');
}

/** The launch post's TensorRT ResNet-50 config (with its warmup block). */
export function resnetTrtConfig(name = 'resnet'): string {
  return `name: "${name}"
platform: "tensorrt_plan"
max_batch_size: 128
input { name: "input" data_type: TYPE_FP32 dims: [3, 224, 224] }
output { name: "output" data_type: TYPE_FP32 dims: 1000 }
model_warmup {
  name: "bs128 Warmup"
  batch_size: 128
  inputs: { key: "input" value: { data_type: TYPE_FP32 dims: [3, 224, 224] zero_data: false } }
}`;
}

/** An identity model: one input and one output per datatype given, same dims. */
export function identityConfig(
  name: string,
  tensors: { name?: string; type: string; dims: number[] }[],
  maxBatchSize = 0,
  extra = '',
): string {
  const lines = [`name: "${name}"`, 'backend: "python"', `max_batch_size: ${maxBatchSize}`];
  tensors.forEach((t, i) => {
    lines.push(
      `input { name: "${t.name ?? `INPUT${i}`}" data_type: ${t.type} dims: [${t.dims.join(', ')}] }`,
    );
  });
  tensors.forEach((t, i) => {
    lines.push(
      `output { name: "${(t.name ?? `INPUT${i}`).replace('INPUT', 'OUTPUT')}" data_type: ${t.type} dims: [${t.dims.join(', ')}] }`,
    );
  });
  return lines.join('\n') + '\n' + extra;
}
