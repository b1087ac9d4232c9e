import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { AgentError, ErrorCode, messageOf } from '../errors';
import {
  instanceGroups,
  isEnsemble,
  parsePbtxt,
  placeOnGpus,
  renameEnsembleSteps,
  setModelName,
  writePbtxt,
} from '../model-config';
import type { ArtifactLayout, ArtifactModel } from './artifact-layout';
import { readSmallFile } from '../files';

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
   * What staging `layout` under `tritonName` places in the repository, if an earlier run staged exactly
   * this: each directory's marker names `expected`'s url and source version, its config is the one that
   * run wrote (by hash), each entry links to the artifact's own file (or, copied, is a copy), and the
   * artifact's tree still has the shape (paths, sizes, times; regular files and directories only) it had
   * at staging. Undefined otherwise, with nothing read but metadata and the small files.
   */
  findIntact(
    layout: ArtifactLayout,
    tritonName: string,
    expected: { url: string; version: string },
  ): Promise<StagedModel | undefined>;
  /**
   * Moves a staged model's GPU instances to `gpus` by replacing only its `config.pbtxt` (atomically), so
   * Triton updates the instances in place instead of reloading the model (model management docs: a change
   * to the instance configuration alone is an update).
   */
  place(layout: ArtifactLayout, staged: StagedModel, gpus: readonly number[]): Promise<void>;
}

/** The marker and a staged config are small: anything larger, or not a regular file, is not ours. */
const MAX_MARKER_BYTES = 64 * 1024;
const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/**
 * A hash of a tree's shape: every path with its kind, and each regular file's size and modification time
 * (contents are not read: weights are gigabytes, and any rewrite changes the time). A link, FIFO, socket
 * or device anywhere makes it undefined: a staged tree holds none. Bounded by `maxEntries`.
 */
export async function treeShape(root: string, maxEntries = 100_000): Promise<string | undefined> {
  const hash = createHash('sha256');
  let seen = 0;
  const walk = async (dir: string, rel: string): Promise<boolean> => {
    const names = (await fs.readdir(dir)).sort();
    for (const name of names) {
      if (++seen > maxEntries) return false;
      const st = await fs.lstat(path.join(dir, name));
      const r = rel ? `${rel}/${name}` : name;
      if (st.isDirectory()) {
        hash.update(`d ${r}\n`);
        if (!(await walk(path.join(dir, name), r))) return false;
      } else if (st.isFile()) hash.update(`f ${r} ${st.size} ${Math.trunc(st.mtimeMs)}\n`);
      else return false;
    }
    return true;
  };
  try {
    return (await walk(root, '')) ? hash.digest('hex') : undefined;
  } catch {
    return undefined;
  }
}

/** What the marker of a staged directory records. */
interface MarkerContent extends Record<string, string> {
  tritonName: string;
  /** SHA-256 of the config.pbtxt written beside it. */
  configHash: string;
  /** `treeShape` of the artifact's model directory at staging. */
  treeShape: string;
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
  private key: Promise<Buffer> | undefined;

  constructor(
    readonly repository: string,
    readonly stagingDir: string,
    readonly mode: 'symlink' | 'copy' = 'symlink',
    /**
     * Holds the secret that signs each marker (created on first use), so a marker edited by hand (a url
     * pointed elsewhere) is told from one this agent wrote. Without it, markers are signed per process.
     */
    readonly keyFile?: string,
  ) {}

  private signingKey(): Promise<Buffer> {
    this.key ??= (async () => {
      if (!this.keyFile) return randomBytes(32);
      const existing = await fs.lstat(this.keyFile).catch(() => undefined);
      if (existing?.isFile() && existing.size === 64) {
        const hex = await fs.readFile(this.keyFile, 'utf8').catch(() => '');
        if (/^[0-9a-f]{64}$/.test(hex)) return Buffer.from(hex, 'hex');
      }
      const key = randomBytes(32);
      const tmp = `${this.keyFile}.${randomBytes(4).toString('hex')}`;
      await fs.mkdir(path.dirname(this.keyFile), { recursive: true });
      await fs.writeFile(tmp, key.toString('hex'), { mode: 0o600 });
      await fs.rename(tmp, this.keyFile);
      return key;
    })();
    return this.key;
  }

  /** The marker's signature: an HMAC of its other fields in a fixed order. */
  private async sign(fields: Record<string, string>): Promise<string> {
    const canonical = JSON.stringify(
      Object.keys(fields)
        .filter((k) => k !== 'mac')
        .sort()
        .map((k) => [k, fields[k]]),
    );
    return createHmac('sha256', await this.signingKey())
      .update(canonical)
      .digest('hex');
  }

  /** True when a marker's fields are all strings and carry this agent's signature. */
  private async authentic(info: Record<string, unknown>): Promise<boolean> {
    if (Object.values(info).some((v) => typeof v !== 'string') || typeof info.mac !== 'string') return false;
    const expected = Buffer.from(await this.sign(info as Record<string, string>), 'hex');
    const given = Buffer.from(info.mac, 'hex');
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  /** Removes leftovers of interrupted staging (called at start-up). */
  async cleanStaging(): Promise<void> {
    await fs.rm(this.stagingDir, { recursive: true, force: true });
    await fs.mkdir(this.stagingDir, { recursive: true });
  }

  /**
   * Model directories in the repository that this agent staged (found by their marker); `authentic` when
   * the marker carries this agent's signature (not edited since it was written).
   */
  async listStaged(): Promise<{ tritonName: string; info: Record<string, string>; authentic: boolean }[]> {
    const out: { tritonName: string; info: Record<string, string>; authentic: boolean }[] = [];
    let entries: string[];
    try {
      entries = await fs.readdir(this.repository);
    } catch {
      return out;
    }
    for (const e of entries) {
      // Only a small regular file is read: a FIFO or a link to /dev/zero in its place is not ours.
      const text = await readSmallFile(path.join(this.repository, e, STAGED_MARKER), MAX_MARKER_BYTES);
      if (text === undefined) continue;
      try {
        const info = JSON.parse(text) as unknown;
        if (typeof info === 'object' && info !== null && !Array.isArray(info)) {
          const fields = info as Record<string, unknown>;
          const authentic = await this.authentic(fields);
          out.push({ tritonName: e, info: fields as Record<string, string>, authentic });
        }
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
    const text = writePbtxt(config);
    await fs.writeFile(path.join(dest, 'config.pbtxt'), text);
    const marker: MarkerContent = {
      ...info,
      tritonName: name,
      configHash: sha256(text),
      treeShape: (await treeShape(model.dir)) ?? '',
    };
    marker.mac = await this.sign(marker);
    await fs.writeFile(path.join(dest, STAGED_MARKER), JSON.stringify(marker));
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

  async findIntact(
    layout: ArtifactLayout,
    tritonName: string,
    expected: { url: string; version: string },
  ): Promise<StagedModel | undefined> {
    const names = this.names(layout, tritonName);
    const dirs = names.map(([, n]) => path.join(this.repository, n));
    for (const [[m, n], dir] of names.map((e, i) => [e, dirs[i]] as const)) {
      if (!(await this.intact(m, n, dir, expected))) return undefined;
    }
    return { tritonName, memberNames: names.slice(1).map(([, n]) => n), dirs };
  }

  /**
   * True when `config` is what `place` writes for `m` on the GPUs it names (a move after staging; the
   * marker is not rewritten then, as a changed file beside the config would make Triton reload the model).
   */
  private placedConfig(m: ArtifactModel, name: string, config: string): boolean {
    if (isEnsemble(m.summary)) return false;
    try {
      const gpus = new Set<number>();
      for (const g of instanceGroups(parsePbtxt(config))) for (const d of g.gpus) gpus.add(d);
      if (gpus.size === 0) return false;
      const placed = placeOnGpus(
        setModelName(m.config, name),
        [...gpus].sort((a, b) => a - b),
      );
      return writePbtxt(placed) === config;
    } catch {
      return false;
    }
  }

  /** One staged directory against what staging `m` as `name` from `expected` wrote. */
  private async intact(
    m: ArtifactModel,
    name: string,
    dir: string,
    expected: { url: string; version: string },
  ): Promise<boolean> {
    try {
      const markerText = await readSmallFile(path.join(dir, STAGED_MARKER), MAX_MARKER_BYTES);
      const config = await readSmallFile(path.join(dir, 'config.pbtxt'), MAX_CONFIG_BYTES);
      if (markerText === undefined || config === undefined) return false;
      const marker = JSON.parse(markerText) as Partial<MarkerContent>;
      if (
        typeof marker !== 'object' ||
        marker === null ||
        !(await this.authentic(marker as Record<string, unknown>)) ||
        marker.tritonName !== name ||
        marker.url !== expected.url ||
        marker.version !== expected.version ||
        !(marker.configHash === sha256(config) || this.placedConfig(m, name, config))
      )
        return false;
      // The staged entries are exactly the artifact's, each a link to the artifact's own file (or a copy).
      const source = (await fs.readdir(m.dir)).filter((e) => e !== 'config.pbtxt' && e !== STAGED_MARKER);
      const staged = (await fs.readdir(dir)).filter((e) => e !== 'config.pbtxt' && e !== STAGED_MARKER);
      if (source.length !== staged.length || source.some((e) => !staged.includes(e))) return false;
      for (const entry of staged) {
        const st = await fs.lstat(path.join(dir, entry));
        if (this.mode === 'symlink') {
          if (!st.isSymbolicLink()) return false;
          if ((await fs.readlink(path.join(dir, entry))) !== path.join(m.dir, entry)) return false;
        } else if (!st.isDirectory() && !st.isFile()) return false;
      }
      // The artifact itself has not changed shape since (and holds no link, FIFO or device).
      const shape = await treeShape(m.dir);
      return shape !== undefined && shape === marker.treeShape;
    } catch {
      return false;
    }
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
      const text = writePbtxt(config);
      // Written beside, not inside, the model directory: a stray file there would make Triton reload it.
      const tmp = path.join(this.stagingDir, `${n}.${randomBytes(4).toString('hex')}.pbtxt`);
      try {
        await fs.writeFile(tmp, text);
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
