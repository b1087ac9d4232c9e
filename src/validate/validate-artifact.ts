import { constants as fsc, type Stats } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  UNPACK_CHUNK,
  inspectArtifact,
  unpackTar,
  type ArtifactModel,
  type UnpackLimits,
} from '../artifacts';
import { SETTINGS } from '../config';
import { AgentError, ErrorCode, isAgentError, messageOf, shown } from '../errors';
import { settlesWithin } from '../time';
import { DECLARED_GPU_BYTES_PARAMETER } from '../models';
import {
  fieldValues,
  intField,
  isEnsemble,
  stringField,
  type ModelConfigSummary,
  type PbMessage,
} from '../model-config';
import { formatByteSize } from '../planner';
import { fileType, scanTree, type TreeScan } from './scan-tree';

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
  /**
   * Most bytes an archive may unpack to in `tmpDir` for the check (default DEFAULT_MAX_UNPACK_BYTES); the
   * free space there lowers it further. An archive within the loader's limits but over this one cannot be
   * checked: an `InsufficientCapacity` failure, not a finding.
   */
  maxUnpackBytes?: number;
  /** Aborting ends the check at once (temporary files removed); it rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** Temporary space an archive may take while it is checked, unless --max-unpack-bytes says otherwise. */
export const DEFAULT_MAX_UNPACK_BYTES = 8 * 1024 ** 3;

/** Platforms whose model is a directory (SavedModel) or may be one (ONNX with external weights). */
const DIRECTORY_MODELS: ReadonlySet<string> = new Set(['tensorflow_savedmodel', 'onnxruntime_onnx']);
/** Platforms whose model must be a directory. */
const DIRECTORY_ONLY_MODELS: ReadonlySet<string> = new Set(['tensorflow_savedmodel']);

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

/**
 * What is wrong with a version's model file, looked at with `lstat` and `stat` only (never opened: a FIFO
 * or `/dev/zero` there must not hang the check): 'missing', a message, or undefined when it is fine.
 */
async function modelFileProblem(p: string, platform: string): Promise<string | undefined> {
  const missing = (err: unknown): undefined => {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR')
      return undefined;
    throw err;
  };
  const lst = await fs.lstat(p).catch(missing);
  if (lst === undefined) return 'missing';
  let st: Stats = lst;
  let is = 'is';
  if (lst.isSymbolicLink()) {
    const link = shown(await fs.readlink(p));
    const followed = await fs.stat(p).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code === 'ELOOP') return 'loop' as const;
      return missing(err);
    });
    if (followed === undefined) return 'missing';
    if (followed === 'loop') return `links to ${link}, which is a loop of links`;
    st = followed;
    is = `links to ${link}, which is`;
  }
  if (st.isFile()) {
    if (DIRECTORY_ONLY_MODELS.has(platform)) return `${is} a file; a ${platform} model is a directory`;
    return st.size === 0 ? `${is} empty` : undefined;
  }
  if (st.isDirectory())
    return DIRECTORY_MODELS.has(platform) ? undefined : `${is} a directory; a ${platform} model is one file`;
  return `${is} ${fileType(st)}, not a file: Triton cannot load it (and the check does not read it)`;
}

/** Checks one model's files as Triton would when loading it. */
async function checkModel(
  model: ArtifactModel,
  root: string,
  role: ValidatedModel['role'],
  tree: TreeScan,
  findings: Finding[],
): Promise<ValidatedModel> {
  const rel = path.relative(root, model.dir) || '.';
  const where = (...parts: string[]) => path.posix.join(rel === '.' ? '' : rel, ...parts) || '.';
  const platform = platformOf(model.summary);
  const { versions, missing } = loadedVersions(model);
  const bytes = tree.dirBytes.get(model.dir) ?? 0;
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
    const problem = await modelFileProblem(path.join(model.dir, String(v), file), platform);
    if (problem === 'missing') {
      findings.push({
        severity: 'error',
        where: where(String(v), file),
        message: `missing: a ${platform} model loads ${file} from each version directory${model.summary.defaultModelFilename ? ' (default_model_filename)' : ''}`,
      });
    } else if (problem !== undefined) {
      findings.push({ severity: 'error', where: where(String(v), file), message: problem });
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
  const file = /^([^\s']*config\.pbtxt): /.exec(message);
  if (file) return file[1];
  const model = /model '([^']+)'/.exec(message);
  if (model) return model[1];
  return '.';
}

/**
 * The loader's message without the place `where` already names, so a finding reads
 * `error: resnet/config.pbtxt:17:1: expected '}'` rather than naming the file three times.
 */
function withoutWhere(message: string, where: string): string {
  const syntax = new RegExp(`^invalid [^:]*config\\.pbtxt: ${escapeRegExp(where)}: `).exec(message);
  if (syntax) return message.slice(syntax[0].length);
  if (message.startsWith(`${where}: `)) return message.slice(where.length + 2);
  return message;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Checks that a target is a regular file (an archive) or a directory, following a link, before anything
 * is opened: a FIFO would block the open, `/dev/zero` would never end. Rejects (a `BadRequest` AgentError
 * naming it) when it is neither, and with the file system's error when it cannot be looked at.
 */
export async function checkTarget(target: string): Promise<ValidationReport['kind']> {
  const lst = await fs.lstat(target); // ENOENT and the like propagate: a usage problem, not a finding.
  const st = lst.isSymbolicLink() ? await fs.stat(target) : lst;
  if (st.isDirectory()) return 'directory';
  if (st.isFile()) return 'archive';
  throw notAnArtifact(target, st, lst.isSymbolicLink() ? await fs.readlink(target) : undefined);
}

function notAnArtifact(target: string, st: Stats, link?: string): AgentError {
  const what = link !== undefined ? `links to ${shown(link)}, ${fileType(st)}` : `is ${fileType(st)}`;
  return new AgentError(
    ErrorCode.BadRequest,
    `${shown(target)} ${what}, not an archive file or a model directory`,
  );
}

/** Bytes free for an unprivileged user where `dir` is, or undefined where statfs is not available. */
async function freeBytes(dir: string): Promise<number | undefined> {
  try {
    const s = await fs.statfs(dir);
    const free = s.bavail * s.bsize;
    return Number.isFinite(free) && free >= 0 ? free : undefined;
  } catch {
    return undefined;
  }
}

/** Opens an archive for reading without blocking, and makes sure what was opened is a regular file. */
async function openArchive(target: string): Promise<fs.FileHandle> {
  // O_NONBLOCK: were the file swapped for a FIFO since it was checked, the open would not wait for a writer.
  const fh = await fs.open(target, fsc.O_RDONLY | fsc.O_NONBLOCK);
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw notAnArtifact(target, st);
    return fh;
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/** An archive over the temporary budget or the free space, or a full disk: the check could not be made. */
const noRoom = (message: string) => new AgentError(ErrorCode.InsufficientCapacity, message);

/**
 * Unpacks an archive into `root` within the loader's limits, the temporary budget and the free space.
 * Returns the unpack result, or throws: the loader's refusal (an `InvalidModel` AgentError, a finding),
 * or a failure of the check itself (temporary space, budget, abort).
 */
async function unpackForCheck(
  target: string,
  root: string,
  tmpDir: string,
  limits: UnpackLimits,
  options: ValidateOptions,
): Promise<{ entries: number; bytes: number }> {
  const budget = options.maxUnpackBytes ?? DEFAULT_MAX_UNPACK_BYTES;
  const free = await freeBytes(tmpDir);
  let maxBytes = limits.maxBytes;
  let bound: 'loader' | 'budget' | 'free' = 'loader';
  if (budget < maxBytes) [maxBytes, bound] = [budget, 'budget'];
  if (free !== undefined && free < maxBytes) [maxBytes, bound] = [free, 'free'];
  options.signal?.throwIfAborted();
  const fh = await openArchive(target);
  const source = fh.createReadStream({ highWaterMark: UNPACK_CHUNK });
  // An abort ends the input (the unpack then stops at its next read) and the wait for it at once.
  let onAbort: () => void = () => undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => {
      source.destroy();
      reject(options.signal?.reason);
    };
  });
  aborted.catch(() => undefined);
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const unpacking = unpackTar(source, root, { ...limits, maxBytes });
  unpacking.catch(() => undefined);
  try {
    if (options.signal?.aborted) onAbort();
    return await Promise.race([unpacking, aborted]);
  } catch (err) {
    if (options.signal?.aborted) {
      // Let the interrupted unpack finish its last write before the caller removes `root`.
      await settlesWithin(unpacking, ABORTED_UNPACK_WAIT_MS);
      throw options.signal.reason;
    }
    const overBound =
      bound !== 'loader' &&
      isAgentError(err, ErrorCode.InvalidModel) &&
      err.message.endsWith(`unpacks to more than ${maxBytes} bytes`);
    if (overBound && bound === 'budget')
      throw noRoom(
        `${shown(target)} unpacks to more than ${formatByteSize(maxBytes)} (--max-unpack-bytes ${maxBytes}); raise --max-unpack-bytes to check it`,
      );
    if (overBound)
      throw noRoom(
        `${shown(target)} needs more temporary space than is free in ${shown(tmpDir)} (${formatByteSize(free ?? 0)} free when the check began); free some or point TMPDIR at a larger disk`,
      );
    if (isAgentError(err, ErrorCode.InsufficientCapacity) || errnoOf(err) === 'ENOSPC')
      throw noRoom(
        `no space left in ${shown(tmpDir)} while unpacking ${shown(target)} (ENOSPC); free some or point TMPDIR at a larger disk`,
      );
    throw err;
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    source.destroy();
  }
}

/** How long an aborted check waits for the unpack it interrupted to stop. */
const ABORTED_UNPACK_WAIT_MS = 2000;

const errnoOf = (err: unknown): string | undefined => (err as NodeJS.ErrnoException | undefined)?.code;

/**
 * Checks an artifact offline with the loader's own code: the safe streaming unpack (archives), the layout
 * rules and the `config.pbtxt` parser and schema; then what Triton checks when it loads: the platform's
 * model file in each version it would load, version policies, ensemble references and versions.
 * Treats the artifact as hostile: only a regular file or a directory is read; in a directory, FIFOs,
 * sockets and devices (and links to them) are errors and never opened; an archive unpacks within the
 * loader's limits, the temporary budget and the free space, and its temporary copy is removed whatever
 * happens. Never throws for a bad artifact: every problem is a finding. Throws when the check cannot be
 * made: `target` unreadable or not a file or directory (`BadRequest`), out of temporary space or budget
 * (`InsufficientCapacity`), aborted (the signal's reason), or another I/O failure.
 */
export async function validateArtifact(
  target: string,
  options: ValidateOptions = {},
): Promise<ValidationReport> {
  options.signal?.throwIfAborted();
  const kind = await checkTarget(target);
  const report: ValidationReport = { target, kind, valid: false, findings: [], models: [], bytes: 0 };
  const limits = options.limits ?? agentUnpackLimits();
  const tmpDir = options.tmpDir ?? os.tmpdir();
  let work: string | undefined;
  let treeProblems: Finding[] = [];
  try {
    let root = target;
    if (kind === 'archive') {
      try {
        work = await fs.mkdtemp(path.join(tmpDir, 'mme-validate-'));
      } catch (err) {
        if (errnoOf(err) === 'ENOSPC')
          throw noRoom(
            `no space left in ${shown(tmpDir)} for a temporary directory; free some or point TMPDIR at a larger disk`,
          );
        throw new AgentError(
          ErrorCode.Internal,
          `cannot create a temporary directory in ${shown(tmpDir)}: ${(err as Error).message}`,
          { cause: err },
        );
      }
      root = path.join(work, 'artifact');
      const unpacked = await unpackForCheck(target, root, tmpDir, limits, options);
      report.entries = unpacked.entries;
      report.bytes = unpacked.bytes;
    }
    // What the unpack wrote is bounded and holds no FIFO or device; a directory may hold anything.
    const tree = await scanTree(root, { maxEntries: limits.maxEntries, signal: options.signal });
    if (kind === 'directory') {
      report.bytes = tree.bytes;
      treeProblems = tree.problems;
      if (tree.truncated) {
        report.findings.push({
          severity: 'warning',
          where: '.',
          message: `more than ${limits.maxEntries} entries: as an archive the loader would refuse it (AGENT_MAX_ARTIFACT_ENTRIES); sizes count the first ${limits.maxEntries} only`,
        });
      }
      if (report.bytes > limits.maxBytes) {
        report.findings.push({
          severity: 'warning',
          where: '.',
          message: `${report.bytes} bytes: as an archive it would pass the unpack limit of ${limits.maxBytes} bytes (AGENT_MAX_ARTIFACT_BYTES)`,
        });
      }
    }
    const layout = await inspectArtifact(root);
    options.signal?.throwIfAborted();
    report.models.push(await checkModel(layout.top, root, 'top', tree, report.findings));
    for (const m of layout.members)
      report.models.push(await checkModel(m, root, 'member', tree, report.findings));
    checkEnsembleVersions(layout.top, layout.members, report.findings);
  } catch (err) {
    if (options.signal?.aborted) throw options.signal.reason;
    if (!isAgentError(err, ErrorCode.InvalidModel)) throw err;
    // Messages name the temporary unpack directory: show it as the artifact's root instead.
    const message = work ? messageOf(err).split(path.join(work, 'artifact')).join('.') : messageOf(err);
    const where = whereOf(message);
    report.findings.push({ severity: 'error', where, message: withoutWhere(message, where) });
  } finally {
    if (work) await fs.rm(work, { recursive: true, force: true, maxRetries: 3 });
  }
  // Problems in the tree the model checks did not already report at the same place.
  for (const p of treeProblems)
    if (!report.findings.some((f) => f.where === p.where && f.severity === 'error')) report.findings.push(p);
  report.valid = !report.findings.some((f) => f.severity === 'error');
  return report;
}
