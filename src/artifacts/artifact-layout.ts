import { constants as fsc } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { AgentError, ErrorCode } from '../errors';
import {
  PbtxtSyntaxError,
  isEnsemble,
  modelConfigToJson,
  parsePbtxt,
  readModelConfig,
  type ModelConfigSummary,
  type PbMessage,
} from '../model-config';

/** One Triton model directory inside an artifact. */
export interface ArtifactModel {
  /** Absolute path of the model directory (holds config.pbtxt and version directories). */
  dir: string;
  /** Its directory name: the name Triton would give it, and what ensemble steps refer to. */
  dirName: string;
  config: PbMessage;
  summary: ModelConfigSummary;
  versions: number[];
}

/** The models of one artifact: the one to serve and, for an ensemble, its composing models. */
export interface ArtifactLayout {
  top: ArtifactModel;
  members: ArtifactModel[];
}

const invalid = (message: string) => new AgentError(ErrorCode.InvalidModel, message);

/** Largest config.pbtxt read (Triton's configs are a few KB; this bounds what a hostile one costs). */
export const MAX_CONFIG_BYTES = 4 * 1024 * 1024;
/** Most entries looked at in an artifact's root or a model directory before the layout is refused. */
export const MAX_LAYOUT_ENTRIES = 10_000;

/** True for a real directory (a link to one is not followed: `lstat`). */
async function isRealDirectory(p: string): Promise<boolean> {
  try {
    return (await fs.lstat(p)).isDirectory();
  } catch {
    return false;
  }
}

/** True for a directory, following links (Triton follows them for version directories). */
async function isDirectory(p: string): Promise<boolean> {
  try {
    return (await fs.stat(p)).isDirectory();
  } catch {
    return false;
  }
}

/** What is at `p` without following a link: 'missing', 'file' (regular) or 'other'. */
async function entryKind(p: string): Promise<'missing' | 'file' | 'other'> {
  try {
    return (await fs.lstat(p)).isFile() ? 'file' : 'other';
  } catch {
    return 'missing';
  }
}

/** Names in a directory, refusing directories too large to be a model's. */
async function listBounded(dir: string, shown: string): Promise<string[]> {
  const names: string[] = [];
  const d = await fs.opendir(dir);
  try {
    for await (const e of d) {
      if (names.length >= MAX_LAYOUT_ENTRIES)
        throw invalid(
          `'${shown}' holds more than ${MAX_LAYOUT_ENTRIES} entries; it is not a model directory`,
        );
      names.push(e.name);
    }
  } finally {
    await d.close().catch(() => undefined);
  }
  return names;
}

/**
 * Reads a config.pbtxt that must be a regular file: checked with `lstat`, opened without following links
 * and without blocking (a FIFO can neither be opened for long nor read), and size-capped before reading.
 */
async function readConfigText(file: string, shown: string): Promise<string> {
  if ((await entryKind(file)) !== 'file')
    throw invalid(`${shown} is not a regular file (links, FIFOs and devices are refused)`);
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(file, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
  } catch (err) {
    throw invalid(`cannot read ${shown}: ${(err as Error).message}`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw invalid(`${shown} is not a regular file`);
    if (st.size > MAX_CONFIG_BYTES)
      throw invalid(`${shown} is ${st.size} bytes, more than the ${MAX_CONFIG_BYTES} a config may have`);
    const buf = Buffer.alloc(st.size);
    const { bytesRead } = await fh.read(buf, 0, st.size, 0);
    return buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    await fh.close();
  }
}

/** Triton's platforms and the backend each one names (core model_config_utils.cc, GetBackendTypeFromPlatform). */
const PLATFORM_BACKENDS: Readonly<Record<string, string>> = {
  tensorrt_plan: 'tensorrt',
  tensorflow_graphdef: 'tensorflow',
  tensorflow_savedmodel: 'tensorflow',
  onnxruntime_onnx: 'onnxruntime',
  pytorch_libtorch: 'pytorch',
};

/**
 * What Triton's ValidateModelConfig refuses about a config's platform and backend, in its words (core
 * model_config_utils.cc): a platform it does not know with no backend (a typo such as `pytorch_libtorh`),
 * a known backend paired with another platform, an ensemble with a backend. Checked before staging, so
 * the loader and `validate` refuse the same configs with the same words. A backend Triton does not know
 * may be a custom one: it is not judged here.
 */
export function platformProblem(summary: ModelConfigSummary, name: string): string | undefined {
  const platform = summary.platform ?? '';
  const backend = summary.backend ?? '';
  if (platform === 'ensemble') {
    return backend
      ? `Ensemble model '${name}' must have platform type 'ensemble' and empty backend type`
      : undefined;
  }
  if (!backend) {
    if (platform && !Object.hasOwn(PLATFORM_BACKENDS, platform))
      return `unexpected platform type '${platform}' for ${name}`;
    return undefined;
  }
  const known = Object.values(PLATFORM_BACKENDS).includes(backend);
  if (known && platform && PLATFORM_BACKENDS[platform] !== backend)
    return `unexpected 'platform' and 'backend' pair, got:${platform}, ${backend}`;
  return undefined;
}

async function readModel(dir: string, artifactRoot: string): Promise<ArtifactModel> {
  const file = path.join(dir, 'config.pbtxt');
  const shown = path.relative(artifactRoot, file) || 'config.pbtxt';
  const text = await readConfigText(file, shown);
  let config: PbMessage;
  let summary: ModelConfigSummary;
  try {
    config = parsePbtxt(text, shown);
    modelConfigToJson(config);
    summary = readModelConfig(config);
  } catch (err) {
    if (err instanceof PbtxtSyntaxError) {
      throw invalid(
        `invalid ${shown}: ${err.source === shown ? err.message : `${shown}:${err.line}:${err.column}: ${err.detail}`}`,
      );
    }
    throw err;
  }
  const refused = platformProblem(summary, summary.name || path.basename(dir));
  if (refused) throw invalid(`${shown}: ${refused}`);
  const versions: number[] = [];
  for (const entry of await listBounded(dir, path.relative(artifactRoot, dir) || '.')) {
    // Triton ignores version directories with leading zeros or non-numeric names.
    if (/^(0|[1-9]\d*)$/.test(entry) && (await isDirectory(path.join(dir, entry))))
      versions.push(Number(entry));
  }
  if (versions.length === 0 && !isEnsemble(summary)) {
    throw invalid(
      `model '${path.basename(dir)}' has no numeric version directory (e.g. ${path.basename(dir)}/1/)`,
    );
  }
  return { dir, dirName: path.basename(dir), config, summary, versions: versions.sort((a, b) => a - b) };
}

/**
 * Finds the model an artifact holds, in the layouts SageMaker and Triton users produce:
 * `config.pbtxt` at the root; one model directory at the root; or an ensemble and its composing models.
 * Throws 400-class errors that say what is wrong with the artifact.
 */
export async function inspectArtifact(root: string): Promise<ArtifactLayout> {
  if (!(await isDirectory(root)))
    throw invalid(`model directory '${root}' does not exist or is not a directory`);
  if ((await entryKind(path.join(root, 'config.pbtxt'))) !== 'missing') {
    return { top: await readModel(root, root), members: [] };
  }
  const candidates: ArtifactModel[] = [];
  // Only real directories are models: a link could lead anywhere on the machine.
  for (const entry of (await listBounded(root, root)).sort()) {
    const dir = path.join(root, entry);
    if (!(await isRealDirectory(dir))) continue;
    if ((await entryKind(path.join(dir, 'config.pbtxt'))) !== 'missing')
      candidates.push(await readModel(dir, root));
  }
  if (candidates.length === 0)
    throw invalid(`no config.pbtxt in '${root}' or in any directory directly under it`);
  if (candidates.length === 1) return { top: candidates[0], members: [] };

  const byName = new Map<string, ArtifactModel>();
  for (const c of candidates) {
    byName.set(c.dirName, c);
    if (c.summary.name && !byName.has(c.summary.name)) byName.set(c.summary.name, c);
  }
  const ensembles = candidates.filter((c) => isEnsemble(c.summary));
  const referenced = new Set<ArtifactModel>();
  for (const e of ensembles) {
    for (const step of e.summary.ensembleSteps) {
      const m = byName.get(step.modelName);
      if (m) referenced.add(m);
    }
  }
  const tops = ensembles.filter((e) => !referenced.has(e));
  if (tops.length === 0) {
    throw invalid(
      `'${root}' holds ${candidates.length} models (${candidates.map((c) => c.dirName).join(', ')}) and no ensemble to serve them through; an artifact must hold one model or one ensemble with its composing models`,
    );
  }
  if (tops.length > 1) {
    throw invalid(
      `'${root}' holds ${tops.length} top-level ensembles (${tops.map((t) => t.dirName).join(', ')}); keep one per artifact`,
    );
  }
  const top = tops[0];
  const members: ArtifactModel[] = [];
  const visit = (m: ArtifactModel) => {
    for (const step of m.summary.ensembleSteps) {
      const dep = byName.get(step.modelName);
      if (!dep) {
        throw invalid(
          `ensemble '${m.dirName}' has a step for model '${step.modelName}', which is not in the artifact`,
        );
      }
      if (dep !== top && !members.includes(dep)) {
        members.push(dep);
        visit(dep);
      }
    }
  };
  visit(top);
  return { top, members };
}
