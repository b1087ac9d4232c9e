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
} from '../triton';

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

async function isDirectory(p: string): Promise<boolean> {
  try {
    return (await fs.stat(p)).isDirectory();
  } catch {
    return false;
  }
}

async function readModel(dir: string, artifactRoot: string): Promise<ArtifactModel> {
  const file = path.join(dir, 'config.pbtxt');
  const shown = path.relative(artifactRoot, file) || 'config.pbtxt';
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw invalid(`cannot read ${shown}: ${(err as Error).message}`);
  }
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
  const versions: number[] = [];
  for (const entry of await fs.readdir(dir)) {
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
  if (
    await fs.stat(path.join(root, 'config.pbtxt')).then(
      () => true,
      () => false,
    )
  ) {
    return { top: await readModel(root, root), members: [] };
  }
  const candidates: ArtifactModel[] = [];
  for (const entry of (await fs.readdir(root)).sort()) {
    const dir = path.join(root, entry);
    if (!(await isDirectory(dir))) continue;
    const hasConfig = await fs.stat(path.join(dir, 'config.pbtxt')).then(
      () => true,
      () => false,
    );
    if (hasConfig) candidates.push(await readModel(dir, root));
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
