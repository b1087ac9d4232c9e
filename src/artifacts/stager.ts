import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { AgentError, ErrorCode, messageOf } from '../errors';
import { isEnsemble, placeOnGpus, renameEnsembleSteps, setModelName, writePbtxt } from '../triton';
import type { ArtifactLayout, ArtifactModel } from './artifact-layout';

/** Marker written into every model directory the agent stages, so it only ever removes its own. */
export const STAGED_MARKER = '.staged-by-mme-agent.json';

/**
 * The Triton name for an MME model name: a readable, filesystem-safe prefix and a hash of the whole name,
 * so names that differ only in unsafe characters, or that both hold a model called `resnet`, never meet.
 * The same MME name always maps to the same Triton name.
 */
export function tritonNameFor(mmeName: string, hashChars = 12): string {
  const readable =
    mmeName
      .replace(/\.(tar\.gz|tgz|tar)$/i, '')
      .replace(/[^A-Za-z0-9_.-]+/g, '_')
      .replace(/^[._-]+/, '')
      .slice(0, 48) || 'model';
  const hash = createHash('sha256').update(mmeName).digest('hex').slice(0, hashChars);
  return `${readable}-${hash}`;
}

/** The Triton name of an ensemble's composing model: the ensemble's Triton name as prefix. */
export function memberTritonName(topTritonName: string, memberDirName: string): string {
  return `${topTritonName}--${memberDirName.replace(/[^A-Za-z0-9_.-]+/g, '_')}`;
}

export interface StagedModel {
  tritonName: string;
  /** Triton names of the composing models staged with it. */
  memberNames: string[];
  /** Every directory created in the repository, top model first. */
  dirs: string[];
}

/** Places an artifact's models into Triton's repository under the agent's names. */
export interface Stager {
  /** Stages `layout` under `tritonName`; with `gpus`, its GPU instances are placed on those devices. */
  stage(
    layout: ArtifactLayout,
    tritonName: string,
    info: Record<string, string>,
    gpus?: readonly number[],
  ): Promise<StagedModel>;
  remove(staged: StagedModel): Promise<void>;
  /**
   * What staging `layout` under `tritonName` places in the repository, if an earlier run staged it and
   * every file is still there (each directory ours, each link resolving); undefined otherwise.
   */
  findIntact(layout: ArtifactLayout, tritonName: string): Promise<StagedModel | undefined>;
  /**
   * Moves a staged model's GPU instances to `gpus` by replacing only its `config.pbtxt` (atomically), so
   * Triton updates the instances in place instead of reloading the model (model management docs: a change
   * to the instance configuration alone is an update).
   */
  place(layout: ArtifactLayout, staged: StagedModel, gpus: readonly number[]): Promise<void>;
}

async function copyTree(src: string, dest: string): Promise<void> {
  await fs.cp(src, dest, { recursive: true, dereference: true, errorOnExist: false, force: true });
}

/**
 * Stages into Triton's repository: each model directory is assembled in a staging directory on the same
 * filesystem (renamed config, version directories symlinked or copied from the source) and then renamed
 * into place, so Triton never sees half a model. Any failure removes everything this call created.
 */
export class RepositoryStager implements Stager {
  constructor(
    readonly repository: string,
    readonly stagingDir: string,
    readonly mode: 'symlink' | 'copy' = 'symlink',
  ) {}

  /** Removes leftovers of interrupted staging (called at start-up). */
  async cleanStaging(): Promise<void> {
    await fs.rm(this.stagingDir, { recursive: true, force: true });
    await fs.mkdir(this.stagingDir, { recursive: true });
  }

  /** Model directories in the repository that this agent staged (found by their marker). */
  async listStaged(): Promise<{ tritonName: string; info: Record<string, string> }[]> {
    const out: { tritonName: string; info: Record<string, string> }[] = [];
    let entries: string[];
    try {
      entries = await fs.readdir(this.repository);
    } catch {
      return out;
    }
    for (const e of entries) {
      try {
        const info = JSON.parse(
          await fs.readFile(path.join(this.repository, e, STAGED_MARKER), 'utf8'),
        ) as Record<string, string>;
        out.push({ tritonName: e, info });
      } catch {
        // not ours
      }
    }
    return out;
  }

  private async assemble(
    model: ArtifactModel,
    name: string,
    rename: Map<string, string>,
    dest: string,
    info: Record<string, string>,
    gpus: readonly number[] | undefined,
  ) {
    await fs.mkdir(dest, { recursive: true });
    let config = setModelName(model.config, name);
    if (isEnsemble(model.summary)) config = renameEnsembleSteps(config, (n) => rename.get(n));
    else if (gpus) config = placeOnGpus(config, gpus);
    await fs.writeFile(path.join(dest, 'config.pbtxt'), writePbtxt(config));
    await fs.writeFile(path.join(dest, STAGED_MARKER), JSON.stringify({ ...info, tritonName: name }));
    for (const entry of await fs.readdir(model.dir)) {
      if (entry === 'config.pbtxt' || entry === STAGED_MARKER) continue;
      const src = path.join(model.dir, entry);
      const target = path.join(dest, entry);
      if (this.mode === 'symlink') await fs.symlink(src, target);
      else await copyTree(src, target);
    }
  }

  /** Each model of the layout with its Triton name, top model first. */
  private names(layout: ArtifactLayout, tritonName: string): [ArtifactModel, string][] {
    return [
      [layout.top, tritonName],
      ...layout.members.map((m): [ArtifactModel, string] => [m, memberTritonName(tritonName, m.dirName)]),
    ];
  }

  async findIntact(layout: ArtifactLayout, tritonName: string): Promise<StagedModel | undefined> {
    const names = this.names(layout, tritonName);
    const dirs = names.map(([, n]) => path.join(this.repository, n));
    for (const [[m], dir] of names.map((e, i) => [e, dirs[i]] as const)) {
      try {
        await fs.stat(path.join(dir, STAGED_MARKER));
        await fs.stat(path.join(dir, 'config.pbtxt'));
        // Every version directory or file of the source is there, links resolving.
        for (const entry of await fs.readdir(m.dir)) {
          if (entry !== 'config.pbtxt' && entry !== STAGED_MARKER) await fs.stat(path.join(dir, entry));
        }
      } catch {
        return undefined;
      }
    }
    return { tritonName, memberNames: names.slice(1).map(([, n]) => n), dirs };
  }

  async stage(
    layout: ArtifactLayout,
    tritonName: string,
    info: Record<string, string>,
    gpus?: readonly number[],
  ): Promise<StagedModel> {
    const rename = new Map<string, string>();
    const names = this.names(layout, tritonName);
    for (const [m, n] of names) {
      rename.set(m.dirName, n);
      if (m.summary.name) rename.set(m.summary.name, n);
    }
    await fs.mkdir(this.stagingDir, { recursive: true });
    const work = path.join(this.stagingDir, `${tritonName}.${randomBytes(4).toString('hex')}`);
    const placed: string[] = [];
    try {
      for (const [m, n] of names) await this.assemble(m, n, rename, path.join(work, n), info, gpus);
      for (const [, n] of names) {
        const dest = path.join(this.repository, n);
        // A directory of the same name is a leftover of this agent (names are derived from the MME name).
        await fs.rm(dest, { recursive: true, force: true });
        await fs.rename(path.join(work, n), dest);
        placed.push(dest);
      }
    } catch (err) {
      await Promise.all(placed.map((d) => fs.rm(d, { recursive: true, force: true })));
      throw new AgentError(
        ErrorCode.Internal,
        `cannot stage model into ${this.repository}: ${messageOf(err)}`,
        {
          cause: err,
        },
      );
    } finally {
      await fs.rm(work, { recursive: true, force: true });
    }
    return { tritonName, memberNames: names.slice(1).map(([, n]) => n), dirs: placed };
  }

  async place(layout: ArtifactLayout, staged: StagedModel, gpus: readonly number[]): Promise<void> {
    const names = this.names(layout, staged.tritonName);
    await fs.mkdir(this.stagingDir, { recursive: true });
    for (const [[m, n], dir] of names.map((e, i) => [e, staged.dirs[i]] as const)) {
      if (dir === undefined || isEnsemble(m.summary)) continue;
      const config = placeOnGpus(setModelName(m.config, n), gpus);
      // Written beside, not inside, the model directory: a stray file there would make Triton reload it.
      const tmp = path.join(this.stagingDir, `${n}.${randomBytes(4).toString('hex')}.pbtxt`);
      try {
        await fs.writeFile(tmp, writePbtxt(config));
        await fs.rename(tmp, path.join(dir, 'config.pbtxt'));
      } catch (err) {
        await fs.rm(tmp, { force: true });
        throw new AgentError(
          ErrorCode.Internal,
          `cannot place model on GPUs ${gpus.join(', ')}: ${messageOf(err)}`,
          {
            cause: err,
          },
        );
      }
    }
  }

  async remove(staged: StagedModel): Promise<void> {
    for (const d of staged.dirs) {
      // Only directories carrying the marker are ours; symlinks inside are removed, never followed.
      const ours = await fs.stat(path.join(d, STAGED_MARKER)).then(
        () => true,
        () => false,
      );
      if (ours) await fs.rm(d, { recursive: true, force: true });
    }
  }
}
