import { createReadStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { inspectArtifact, unpackTar, type ArtifactModel, type UnpackLimits } from '../artifacts';
import { SETTINGS } from '../config';
import { isAgentError, messageOf } from '../errors';
import { DECLARED_GPU_BYTES_PARAMETER } from '../models';
import {
  fieldValues,
  intField,
  isEnsemble,
  stringField,
  type ModelConfigSummary,
  type PbMessage,
} from '../triton';

/** One thing wrong (error: the agent or Triton would refuse it) or doubtful (warning) in an artifact. */
export interface Finding {
  severity: 'error' | 'warning';
  /** Where, relative to the artifact's root: an entry, a model directory, a file, or `config.pbtxt:line:col`. */
  where: string;
  message: string;
}

/** One Triton model found in the artifact. */
export interface ValidatedModel {
  /** Directory relative to the artifact root (`.` when config.pbtxt sits at the root). */
  dir: string;
  role: 'top' | 'member';
  platform: string;
  /** Version directories Triton would load under the config's version policy. */
  versions: number[];
  bytes: number;
}

export interface ValidationReport {
  target: string;
  kind: 'archive' | 'directory';
  valid: boolean;
  findings: Finding[];
  models: ValidatedModel[];
  /** Archive entries (archives only). */
  entries?: number;
  /** Unpacked bytes of the whole artifact. */
  bytes: number;
}

export interface ValidateOptions {
  /** The loader's limits; default: AGENT_MAX_ARTIFACT_BYTES and AGENT_MAX_ARTIFACT_ENTRIES as the agent reads them. */
  limits?: UnpackLimits;
  /** Where archives are unpacked for inspection (removed afterwards); default: the OS temporary directory. */
  tmpDir?: string;
}

/** The file each platform loads from a version directory unless `default_model_filename` says otherwise. */
export const DEFAULT_MODEL_FILES: Readonly<Record<string, string>> = {
  pytorch_libtorch: 'model.pt',
  tensorrt_plan: 'model.plan',
  onnxruntime_onnx: 'model.onnx',
  tensorflow_savedmodel: 'model.savedmodel',
  tensorflow_graphdef: 'model.graphdef',
  python: 'model.py',
  openvino: 'model.xml',
};

/** Backends named by `backend:` and the platform whose files they read. */
const PLATFORM_OF_BACKEND: Readonly<Record<string, string>> = {
  pytorch: 'pytorch_libtorch',
  tensorrt: 'tensorrt_plan',
  onnxruntime: 'onnxruntime_onnx',
  tensorflow: 'tensorflow_savedmodel',
  python: 'python',
  openvino: 'openvino',
  ensemble: 'ensemble',
};

/** The unpack limits the agent applies, read from the environment exactly as the agent's config does. */
export function agentUnpackLimits(env: Record<string, string | undefined> = process.env): UnpackLimits {
  const read = (key: 'maxArtifactBytes' | 'maxArtifactEntries'): number => {
    const s = SETTINGS.find((x) => x.key === key);
    if (!s || s.fallback === undefined) throw new Error(`no setting ${key}`);
    const raw = env[s.env];
    return s.parse(raw === undefined || raw.trim() === '' ? s.fallback : raw, s.env) as number;
  };
  return { maxBytes: read('maxArtifactBytes'), maxEntries: read('maxArtifactEntries') };
}

async function sizeOf(p: string): Promise<number> {
  const st = await fs.lstat(p);
  if (!st.isDirectory()) return st.isFile() ? st.size : 0;
  let total = 0;
  for (const e of await fs.readdir(p)) total += await sizeOf(path.join(p, e));
  return total;
}

function platformOf(summary: ModelConfigSummary): string | undefined {
  if (summary.platform) return summary.platform;
  if (summary.backend) return PLATFORM_OF_BACKEND[summary.backend] ?? `backend:${summary.backend}`;
  return undefined;
}

/** The versions Triton loads under the config's version policy (its default: the latest one). */
function loadedVersions(model: ArtifactModel): { versions: number[]; missing: number[] } {
  const policy = model.summary.versionPolicy;
  const have = model.versions;
  switch (policy.kind) {
    case 'all':
      return { versions: have, missing: [] };
    case 'specific':
      return {
        versions: policy.versions.filter((v) => have.includes(v)),
        missing: policy.versions.filter((v) => !have.includes(v)),
      };
    case 'latest':
      return { versions: have.slice(-Math.max(1, policy.numVersions)), missing: [] };
  }
}

/** Checks one model's files as Triton would when loading it. */
async function checkModel(
  model: ArtifactModel,
  root: string,
  role: ValidatedModel['role'],
  findings: Finding[],
): Promise<ValidatedModel> {
  const rel = path.relative(root, model.dir) || '.';
  const where = (...parts: string[]) => path.posix.join(rel === '.' ? '' : rel, ...parts) || '.';
  const platform = platformOf(model.summary);
  const { versions, missing } = loadedVersions(model);
  const bytes = await sizeOf(model.dir);
  const summary: ValidatedModel = { dir: rel, role, platform: platform ?? 'unknown', versions, bytes };

  if (platform === undefined) {
    findings.push({
      severity: 'error',
      where: where('config.pbtxt'),
      message: 'sets neither platform nor backend (e.g. platform: "pytorch_libtorch")',
    });
    return summary;
  }
  for (const v of missing) {
    findings.push({
      severity: 'error',
      where: where(String(v)),
      message: `version_policy names version ${v}, which has no directory`,
    });
  }
  if (isEnsemble(model.summary)) {
    if (model.summary.ensembleSteps.length === 0) {
      findings.push({
        severity: 'error',
        where: where('config.pbtxt'),
        message: 'an ensemble with no ensemble_scheduling steps',
      });
    }
    return summary;
  }
  const file = model.summary.defaultModelFilename || DEFAULT_MODEL_FILES[platform];
  if (file === undefined) {
    findings.push({
      severity: 'warning',
      where: where('config.pbtxt'),
      message: `${platform.replace(/^backend:/, "backend '")}${platform.startsWith('backend:') ? "'" : ''} is not one the validator knows; its model files were not checked`,
    });
    return summary;
  }
  for (const v of versions) {
    const p = path.join(model.dir, String(v), file);
    const st = await fs.stat(p).catch(() => undefined);
    if (!st) {
      findings.push({
        severity: 'error',
        where: where(String(v), file),
        message: `missing: a ${platform} model loads ${file} from each version directory${model.summary.defaultModelFilename ? ' (default_model_filename)' : ''}`,
      });
    } else if (st.isFile() && st.size === 0) {
      findings.push({ severity: 'error', where: where(String(v), file), message: 'is empty' });
    }
  }
  checkWarmups(model, where('config.pbtxt'), findings);
  const declared = model.summary.parameters[DECLARED_GPU_BYTES_PARAMETER];
  if (declared !== undefined && !(Number(declared) > 0 && Number.isFinite(Number(declared)))) {
    findings.push({
      severity: 'warning',
      where: where('config.pbtxt'),
      message: `parameter ${DECLARED_GPU_BYTES_PARAMETER} = '${declared}' is not a positive number of bytes; the agent ignores it and estimates the footprint from the artifact's size`,
    });
  }
  return summary;
}

/** Warmup batches Triton would refuse: larger than max_batch_size, or above 1 for a model without batching. */
function checkWarmups(model: ArtifactModel, where: string, findings: Finding[]): void {
  const max = model.summary.maxBatchSize;
  for (const w of fieldValues(model.config, 'model_warmup')) {
    if (w.kind !== 'message') continue;
    const batch = intField(w as PbMessage, 'batch_size') ?? 0;
    const name = stringField(w as PbMessage, 'name') ?? '';
    const limit = max > 0 ? max : 1;
    if (batch > limit) {
      findings.push({
        severity: 'warning',
        where,
        message: `model_warmup '${name}' has batch_size ${batch}, above ${max > 0 ? `max_batch_size ${max}` : '1 (the model does not batch: max_batch_size 0)'}; Triton is likely to refuse this warmup`,
      });
    }
  }
}

/** Ensemble steps that pin a version the composing model does not have. */
function checkEnsembleVersions(top: ArtifactModel, members: ArtifactModel[], findings: Finding[]): void {
  const byName = new Map<string, ArtifactModel>();
  for (const m of members) {
    byName.set(m.dirName, m);
    if (m.summary.name) byName.set(m.summary.name, m);
  }
  for (const e of [top, ...members].filter((m) => isEnsemble(m.summary))) {
    for (const step of e.summary.ensembleSteps) {
      const dep = byName.get(step.modelName);
      if (dep && step.modelVersion > 0 && !dep.versions.includes(step.modelVersion)) {
        findings.push({
          severity: 'error',
          where: `${e.dirName}/config.pbtxt`,
          message: `ensemble step for model '${step.modelName}' asks for version ${step.modelVersion}, which it does not have (it has ${dep.versions.join(', ') || 'none'})`,
        });
      }
    }
  }
}

/** Where a message from the shared loader code points, when it names an entry or a config line. */
function whereOf(message: string): string {
  const entry = /archive entry '([^']*)'/.exec(message);
  if (entry) return entry[1];
  const line = /([^\s']*config\.pbtxt:\d+:\d+)/.exec(message);
  if (line) return line[1];
  const model = /model '([^']+)'/.exec(message);
  if (model) return model[1];
  return '.';
}

/**
 * Checks an artifact offline with the loader's own code: the safe streaming unpack (archives), the layout
 * rules and the `config.pbtxt` parser and schema; then what Triton checks when it loads: the platform's
 * model file in each version it would load, version policies, ensemble references and versions.
 * Never throws for a bad artifact: every problem is a finding. Throws only when `target` cannot be read.
 */
export async function validateArtifact(
  target: string,
  options: ValidateOptions = {},
): Promise<ValidationReport> {
  const st = await fs.stat(target); // ENOENT and the like propagate: that is a usage problem, not a finding.
  const kind: ValidationReport['kind'] = st.isDirectory() ? 'directory' : 'archive';
  const report: ValidationReport = { target, kind, valid: false, findings: [], models: [], bytes: 0 };
  const limits = options.limits ?? agentUnpackLimits();
  let work: string | undefined;
  try {
    let root = target;
    if (kind === 'archive') {
      work = await fs.mkdtemp(path.join(options.tmpDir ?? os.tmpdir(), 'mme-validate-'));
      root = path.join(work, 'artifact');
      const unpacked = await unpackTar(createReadStream(target), root, limits);
      report.entries = unpacked.entries;
      report.bytes = unpacked.bytes;
    } else {
      report.bytes = await sizeOf(target);
      if (report.bytes > limits.maxBytes) {
        report.findings.push({
          severity: 'warning',
          where: '.',
          message: `${report.bytes} bytes: as an archive it would pass the unpack limit of ${limits.maxBytes} bytes (AGENT_MAX_ARTIFACT_BYTES)`,
        });
      }
    }
    const layout = await inspectArtifact(root);
    report.models.push(await checkModel(layout.top, root, 'top', report.findings));
    for (const m of layout.members) report.models.push(await checkModel(m, root, 'member', report.findings));
    checkEnsembleVersions(layout.top, layout.members, report.findings);
  } catch (err) {
    if (!isAgentError(err)) throw err;
    // Messages name the temporary unpack directory: show it as the artifact's root instead.
    const message = work ? messageOf(err).split(path.join(work, 'artifact')).join('.') : messageOf(err);
    report.findings.push({ severity: 'error', where: whereOf(message), message });
  } finally {
    if (work) await fs.rm(work, { recursive: true, force: true });
  }
  report.valid = !report.findings.some((f) => f.severity === 'error');
  return report;
}
