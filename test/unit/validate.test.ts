import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { inspectArtifact, unpackTar } from '../../src/artifacts';
import { runCli } from '../../src/cli';
import { AgentError } from '../../src/errors';
import { runValidateCommand, validateArtifact, type ValidationReport } from '../../src/validate';
import { buildTar, resnetArtifactEntries, type TarEntry } from '../support/archives';
import { identityConfig, resnetPtConfig, resnetTrtConfig, tempDir, writeModel } from '../support/model-repo';

const limits = { maxEntries: 100, maxBytes: 1 << 20 };

const ensembleConfig = (name: string, steps: { model: string; version?: number }[]) =>
  [
    `name: "${name}"`,
    'platform: "ensemble"',
    'max_batch_size: 0',
    'input { name: "INPUT0" data_type: TYPE_INT32 dims: [1] }',
    'output { name: "OUTPUT0" data_type: TYPE_INT32 dims: [1] }',
    'ensemble_scheduling {',
    ...steps.map(
      (s) =>
        `  step { model_name: "${s.model}" model_version: ${s.version ?? -1} input_map { key: "INPUT0" value: "INPUT0" } output_map { key: "OUTPUT0" value: "OUTPUT0" } }`,
    ),
    '}',
  ].join('\n');

const pyModel = (name: string, version = '1'): TarEntry[] => [
  { name: `${name}/config.pbtxt`, content: identityConfig(name, [{ type: 'TYPE_INT32', dims: [1] }]) },
  { name: `${name}/${version}/model.py`, content: 'def f(): pass' },
];

describe('validate', () => {
  let work: { dir: string; cleanup: () => Promise<void> };
  let tmp: string;
  beforeEach(async () => {
    work = await tempDir('validate-');
    tmp = path.join(work.dir, 'tmp');
    await fs.mkdir(tmp);
  });
  afterEach(async () => {
    await work.cleanup();
  });

  async function archive(entries: TarEntry[], gzip = true): Promise<string> {
    const file = path.join(work.dir, `a${Math.random().toString(36).slice(2)}.tar.gz`);
    await fs.writeFile(file, await buildTar(entries, gzip));
    return file;
  }

  async function check(entries: TarEntry[], l = limits): Promise<ValidationReport> {
    const r = await validateArtifact(await archive(entries), { limits: l, tmpDir: tmp });
    // Whatever the verdict, the inspection leaves nothing behind.
    expect(await fs.readdir(tmp)).toEqual([]);
    return r;
  }

  /** What the agent's loader (unpack, then layout inspection) answers for an archive, root shown as '.'. */
  async function loaderSays(entries: TarEntry[]): Promise<string> {
    const root = path.join(work.dir, 'loader', String(Math.random()).slice(2));
    const err = await unpackTar(Readable.from([await buildTar(entries)]), root, limits)
      .then(() => inspectArtifact(root))
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    if (!(err instanceof AgentError)) throw new Error(`the loader accepted it: ${String(err)}`);
    return err.message.split(root).join('.');
  }

  const errors = (r: ValidationReport) => r.findings.filter((f) => f.severity === 'error');

  test("the launch post's two artifacts are valid, gzipped or not", async () => {
    const pt = await check(resnetArtifactEntries(resnetPtConfig(), 'w'.repeat(1000)));
    expect(pt).toMatchObject({ kind: 'archive', valid: true, findings: [], entries: 4 });
    expect(pt.models).toEqual([
      { dir: 'resnet', role: 'top', platform: 'pytorch_libtorch', versions: [1], bytes: expect.any(Number) },
    ]);
    expect(pt.bytes).toBe(resnetPtConfig().length + 1000);
    const trtFile = await archive(resnetArtifactEntries(resnetTrtConfig(), 'plan', 'model.plan'), false);
    const trt = await validateArtifact(trtFile, { limits, tmpDir: tmp });
    expect(trt.valid).toBe(true);
    expect(trt.models[0].platform).toBe('tensorrt_plan');
  });

  test('a directory (as SageMaker extracts it) is checked in place and left untouched', async () => {
    await writeModel(work.dir, 'model/resnet', {
      config: resnetPtConfig(),
      versions: { '1': { 'model.pt': 10 } },
    });
    const before = await fs.readdir(path.join(work.dir, 'model', 'resnet'));
    const r = await validateArtifact(path.join(work.dir, 'model'), { limits, tmpDir: tmp });
    expect(r).toMatchObject({ kind: 'directory', valid: true, findings: [] });
    expect(await fs.readdir(path.join(work.dir, 'model', 'resnet'))).toEqual(before);
    expect(await fs.readdir(tmp)).toEqual([]);
  });

  // Every refusal of the loader's unpack (test/unit/unpack.test.ts) and of the artifact route
  // (test/integration/artifacts.test.ts), through the validator: an error finding naming the entry.
  test.each([
    ['absolute path', [{ name: '/etc/evil', content: 'x' }], '/etc/evil', /absolute path/],
    ['.. component', [{ name: 'm/../../evil', content: 'x' }], 'm/../../evil', /path contains '\.\.'/],
    [
      'symlink outside',
      [{ name: 'm/link', type: 'symlink', linkname: '../../etc/passwd' }],
      'm/link',
      /symlink points outside the artifact/,
    ],
    [
      'absolute symlink',
      [{ name: 'm/link', type: 'symlink', linkname: '/etc/passwd' }],
      'm/link',
      /symlink to absolute path/,
    ],
    ['hard link outside', [{ name: 'm/hl', type: 'link', linkname: '../outside' }], '../outside', /'\.\.'/],
    [
      'hard link to nothing',
      [{ name: 'm/hl', type: 'link', linkname: 'm/none' }],
      'm/hl',
      /not a file earlier in the archive/,
    ],
    ['character device', [{ name: 'm/tty', type: 'character-device' }], 'm/tty', /character-device/],
    ['block device', [{ name: 'm/sda', type: 'block-device' }], 'm/sda', /block-device/],
    ['fifo', [{ name: 'm/pipe', type: 'fifo' }], 'm/pipe', /fifo entries are not allowed/],
    [
      'writing through a symlink',
      [
        { name: 'm/dir', type: 'symlink', linkname: '.' },
        { name: 'm/dir/../../x', content: 'x' },
      ],
      'm/dir/../../x',
      /path contains '\.\.'/,
    ],
    [
      'too many entries',
      Array.from({ length: 101 }, (_, i) => ({ name: `m/f${i}`, content: 'x' })),
      'm/f100',
      /more than 100 entries/,
    ],
    [
      'too many bytes',
      Array.from({ length: 5 }, (_, i) => ({ name: `m/f${i}`, content: Buffer.alloc(300_000) })),
      'm/f3',
      /unpacks to more than 1048576 bytes/,
    ],
    [
      'a compressed bomb',
      [{ name: 'm/zeros', content: Buffer.alloc(20 << 20) }],
      'm/zeros',
      /^refused archive entry 'm\/zeros'/,
    ],
    [
      'no config.pbtxt',
      [{ name: 'm/1/model.pt', content: 'x' }],
      '.',
      /^no config\.pbtxt in '\.' or in any directory directly under it$/,
    ],
  ] as [string, TarEntry[], string, RegExp][])(
    'refuses %s, naming where',
    async (_l, entries, where, message) => {
      const r = await check(entries);
      expect(r.valid).toBe(false);
      expect(errors(r)).toEqual([{ severity: 'error', where, message: expect.stringMatching(message) }]);
      // Word for word what the agent's loader says of the same archive.
      expect(errors(r)[0].message).toBe(await loaderSays(entries));
    },
  );

  // The hardening cases of test/integration/hostile-input.test.ts, through the validator.
  const chain: TarEntry[] = [
    { name: 'up', type: 'symlink', linkname: '.' },
    { name: 'x', type: 'symlink', linkname: 'up/up/up/up/up/../../../../target' },
  ];

  test.each([
    [
      'write-through',
      [...resnetArtifactEntries(resnetPtConfig()), ...chain, { name: 'x/evil', content: 'evil' }],
    ],
    [
      'overwrite',
      [...resnetArtifactEntries(resnetPtConfig()), ...chain, { name: 'x/existing', content: 'changed' }],
    ],
    [
      'hard link',
      [
        ...resnetArtifactEntries(resnetPtConfig()),
        ...chain,
        { name: 'h', type: 'link', linkname: 'x/existing' },
      ],
    ],
    [
      'config.pbtxt linked through a chain',
      [
        { name: 'resnet/', type: 'directory' },
        ...chain,
        { name: 'resnet/config.pbtxt', type: 'symlink', linkname: '../x/passwd' },
        { name: 'resnet/1/model.pt', content: 'w' },
      ],
    ],
  ] as [string, TarEntry[]][])(
    'links made by earlier entries cannot carry a later one outside: %s',
    async (_l, entries) => {
      const target = path.join(work.dir, 'target');
      await fs.mkdir(target, { recursive: true });
      await fs.writeFile(path.join(target, 'existing'), 'original');
      await fs.writeFile(path.join(target, 'passwd'), 'SECRET-MARKER');
      const r = await check(entries);
      expect(r.valid).toBe(false);
      expect(JSON.stringify(r)).not.toContain('SECRET-MARKER');
      expect(errors(r)[0].message).toBe(await loaderSays(entries));
      expect((await fs.readdir(target)).sort()).toEqual(['existing', 'passwd']);
      expect(await fs.readFile(path.join(target, 'existing'), 'utf8')).toBe('original');
    },
  );

  test('a FIFO as config.pbtxt is refused without blocking', async () => {
    const dir = path.join(work.dir, 'fifo', 'model');
    await fs.mkdir(path.join(dir, 'resnet', '1'), { recursive: true });
    execFileSync('mkfifo', [path.join(dir, 'resnet', 'config.pbtxt')]);
    const r = await validateArtifact(dir, { limits, tmpDir: tmp });
    expect(r.valid).toBe(false);
    expect(errors(r)[0].message).toMatch(/config\.pbtxt is not a regular file/);
  });

  test('a config.pbtxt nested 100,000 deep is an error, not a stack overflow', async () => {
    const depth = 100_000;
    const config = `name: "resnet"\nplatform: "pytorch_libtorch"\nparameters ${'{ key: "k" value '.repeat(depth)}${'}'.repeat(depth)}`;
    const r = await check(resnetArtifactEntries(config, 'w'), { maxEntries: 100, maxBytes: 16 << 20 });
    expect(r.valid).toBe(false);
    expect(errors(r)[0]).toMatchObject({
      where: expect.stringMatching(/^resnet\/config\.pbtxt:3:\d+$/),
      message: expect.stringMatching(/nested more than 100 deep/),
    });
  });

  test('corrupt and truncated archives', async () => {
    const good = await buildTar(resnetArtifactEntries(resnetPtConfig(), Buffer.alloc(50_000, 1)));
    const corrupt = Buffer.from(good);
    for (let i = 40; i < 200; i++) corrupt[i] ^= 0x5a;
    for (const bytes of [corrupt, good.subarray(0, good.length - 20), good.subarray(0, 100)]) {
      const file = path.join(work.dir, 'bad.tar.gz');
      await fs.writeFile(file, bytes);
      const r = await validateArtifact(file, { limits, tmpDir: tmp });
      expect(r.valid).toBe(false);
      expect(errors(r)[0].message).toMatch(/corrupt or truncated archive|archive ends or breaks/);
      expect(await fs.readdir(tmp)).toEqual([]);
    }
  });

  test('config.pbtxt syntax and schema errors point at the line, without temporary paths', async () => {
    const syntax = await check([
      { name: 'resnet/config.pbtxt', content: 'name: "resnet"\nplatform: "pytorch_libtorch"\ninput {\n' },
      { name: 'resnet/1/model.pt', content: 'w' },
    ]);
    expect(errors(syntax)).toHaveLength(1);
    expect(errors(syntax)[0].where).toMatch(/^resnet\/config\.pbtxt:\d+:\d+$/);
    expect(errors(syntax)[0].message).not.toContain(tmp);
    const schema = await check([
      {
        name: 'resnet/config.pbtxt',
        content: 'name: "resnet"\nplatform: "pytorch_libtorch"\nmax_batch_size: "x"',
      },
      { name: 'resnet/1/model.pt', content: 'w' },
    ]);
    expect(errors(schema)).toHaveLength(1);
    expect(errors(schema)[0].where).toMatch(/^resnet\/config\.pbtxt:3:\d+$/);
    const unknownField = await check([
      {
        name: 'resnet/config.pbtxt',
        content: 'name: "resnet"\nplatform: "pytorch_libtorch"\nmax_batchsize: 8',
      },
      { name: 'resnet/1/model.pt', content: 'w' },
    ]);
    expect(errors(unknownField)[0].message).toMatch(/max_batchsize/);
  });

  test('layout: versions, several models, ensembles', async () => {
    const noVersion = await check([{ name: 'resnet/config.pbtxt', content: resnetPtConfig() }]);
    expect(errors(noVersion)[0].message).toMatch(/no numeric version directory/);
    const two = await check([...pyModel('a'), ...pyModel('b')]);
    expect(errors(two)[0].message).toMatch(/holds 2 models \(a, b\) and no ensemble/);
    const missingStep = await check([
      ...pyModel('a'),
      { name: 'ens/config.pbtxt', content: ensembleConfig('ens', [{ model: 'a' }, { model: 'gone' }]) },
      { name: 'ens/1/', type: 'directory' },
    ]);
    expect(errors(missingStep)[0].message).toMatch(/step for model 'gone', which is not in the artifact/);
    const twoTops = await check([
      ...pyModel('a'),
      { name: 'e1/config.pbtxt', content: ensembleConfig('e1', [{ model: 'a' }]) },
      { name: 'e2/config.pbtxt', content: ensembleConfig('e2', [{ model: 'a' }]) },
    ]);
    expect(errors(twoTops)[0].message).toMatch(/2 top-level ensembles/);
    const good = await check([
      ...pyModel('a'),
      ...pyModel('b', '3'),
      {
        name: 'ens/config.pbtxt',
        content: ensembleConfig('ens', [{ model: 'a' }, { model: 'b', version: 3 }]),
      },
    ]);
    expect(good.valid).toBe(true);
    expect(good.models.map((m) => [m.dir, m.role, m.platform])).toEqual([
      ['ens', 'top', 'ensemble'],
      ['a', 'member', 'python'],
      ['b', 'member', 'python'],
    ]);
    const wrongVersion = await check([
      ...pyModel('a'),
      { name: 'ens/config.pbtxt', content: ensembleConfig('ens', [{ model: 'a', version: 2 }]) },
    ]);
    expect(errors(wrongVersion)).toEqual([
      {
        severity: 'error',
        where: 'ens/config.pbtxt',
        message: "ensemble step for model 'a' asks for version 2, which it does not have (it has 1)",
      },
    ]);
  });

  test("each platform's model file must be in every version Triton would load", async () => {
    const missingPt = await check([
      { name: 'resnet/config.pbtxt', content: resnetPtConfig() },
      { name: 'resnet/1/model.plan', content: 'w' },
    ]);
    expect(errors(missingPt)).toEqual([
      {
        severity: 'error',
        where: 'resnet/1/model.pt',
        message: 'missing: a pytorch_libtorch model loads model.pt from each version directory',
      },
    ]);
    // The TensorRT config with the PyTorch file: the mistake of packing the wrong workspace.
    const missingPlan = await check(resnetArtifactEntries(resnetTrtConfig(), 'w', 'model.pt'));
    expect(errors(missingPlan)[0].where).toBe('resnet/1/model.plan');
    const empty = await check(resnetArtifactEntries(resnetPtConfig(), ''));
    expect(errors(empty)).toEqual([{ severity: 'error', where: 'resnet/1/model.pt', message: 'is empty' }]);
    // Only the latest version is loaded by default: an older incomplete one does not matter.
    const latest = await check([
      { name: 'resnet/config.pbtxt', content: resnetPtConfig() },
      { name: 'resnet/1/', type: 'directory' },
      { name: 'resnet/2/model.pt', content: 'w' },
    ]);
    expect(latest.valid).toBe(true);
    expect(latest.models[0].versions).toEqual([2]);
    const all = await check([
      { name: 'resnet/config.pbtxt', content: `${resnetPtConfig()}\nversion_policy { all {} }` },
      { name: 'resnet/1/', type: 'directory' },
      { name: 'resnet/2/model.pt', content: 'w' },
    ]);
    expect(errors(all).map((f) => f.where)).toEqual(['resnet/1/model.pt']);
    const specific = await check([
      {
        name: 'resnet/config.pbtxt',
        content: `${resnetPtConfig()}\nversion_policy { specific { versions: [2, 4] } }`,
      },
      { name: 'resnet/2/model.pt', content: 'w' },
    ]);
    expect(errors(specific)).toEqual([
      {
        severity: 'error',
        where: 'resnet/4',
        message: 'version_policy names version 4, which has no directory',
      },
    ]);
    const renamed = await check([
      { name: 'resnet/config.pbtxt', content: `${resnetPtConfig()}\ndefault_model_filename: "weights.ts"` },
      { name: 'resnet/1/model.pt', content: 'w' },
    ]);
    expect(errors(renamed)[0]).toMatchObject({ where: 'resnet/1/weights.ts' });
    const atRoot = await check([
      { name: 'config.pbtxt', content: resnetPtConfig({ name: null }) },
      { name: '1/model.pt', content: 'w' },
    ]);
    expect(atRoot).toMatchObject({ valid: true, models: [{ dir: '.', role: 'top' }] });
  });

  test('warnings do not make an artifact invalid', async () => {
    const r = await check([
      { name: 'm/config.pbtxt', content: 'name: "m"\nbackend: "my_custom"\nmax_batch_size: 0' },
      { name: 'm/1/anything.bin', content: 'w' },
    ]);
    expect(r.valid).toBe(true);
    expect(r.findings).toEqual([
      {
        severity: 'warning',
        where: 'm/config.pbtxt',
        message: "backend 'my_custom' is not one the validator knows; its model files were not checked",
      },
    ]);
    const declared = await check([
      {
        name: 'resnet/config.pbtxt',
        content: `${resnetPtConfig()}\nparameters { key: "gpu_memory_bytes" value { string_value: "lots" } }`,
      },
      { name: 'resnet/1/model.pt', content: 'w' },
    ]);
    expect(declared.valid).toBe(true);
    expect(declared.findings[0].message).toMatch(/gpu_memory_bytes = 'lots' is not a positive number/);
    // The launch post's warmup (batch 128 with max_batch_size 128) is fine; 256 is not.
    const warm = (b: number) =>
      check(
        resnetArtifactEntries(
          resnetTrtConfig().replace(/^(\s+)batch_size: 128$/m, `$1batch_size: ${b}`),
          'w',
          'model.plan',
        ),
      );
    expect((await warm(128)).findings).toEqual([]);
    expect((await warm(256)).findings).toEqual([
      {
        severity: 'warning',
        where: 'resnet/config.pbtxt',
        message:
          "model_warmup 'bs128 Warmup' has batch_size 256, above max_batch_size 128; Triton is likely to refuse this warmup",
      },
    ]);
  });

  describe('the command', () => {
    const run = async (argv: string[], env: Record<string, string> = {}) => {
      const out: string[] = [];
      const err: string[] = [];
      const saved = { ...process.env };
      Object.assign(process.env, env);
      try {
        const code = await runValidateCommand(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
        return { code, out: out.join('\n'), err: err.join('\n') };
      } finally {
        for (const k of Object.keys(env)) if (saved[k] === undefined) delete process.env[k];
      }
    };

    test('exit codes: 0 valid, 1 invalid, 2 usage', async () => {
      const good = await archive(resnetArtifactEntries(resnetPtConfig(), 'w'));
      const bad = await archive([{ name: '/etc/evil', content: 'x' }]);
      const ok = await run([good]);
      expect(ok.code).toBe(0);
      expect(ok.out).toContain(`${good}: valid`);
      expect(ok.out).toMatch(/model resnet \(pytorch_libtorch\), versions 1/);
      const invalid = await run([good, bad]);
      expect(invalid.code).toBe(1);
      expect(invalid.out).toContain(`${bad}: INVALID`);
      expect(invalid.out).toContain("error: /etc/evil: refused archive entry '/etc/evil': absolute path");
      expect((await run([])).code).toBe(2);
      expect((await run(['--frobnicate', good])).code).toBe(2);
      const missing = await run([path.join(work.dir, 'nope.tar.gz')]);
      expect(missing.code).toBe(2);
      expect(missing.err).toMatch(/cannot read .*nope\.tar\.gz/);
      const help = await run(['--help']);
      expect(help.code).toBe(0);
      expect(help.out).toMatch(/^usage: triton-sagemaker-mme-agent validate/);
    });

    test('the package bin dispatches validate', async () => {
      const good = await archive(resnetArtifactEntries(resnetPtConfig(), 'w'));
      const bad = await archive(resnetArtifactEntries(resnetPtConfig(), 'w', 'model.plan'));
      const lines: string[] = [];
      const errs: string[] = [];
      const cli = (argv: string[]) =>
        runCli(
          argv,
          (l) => lines.push(l),
          (l) => errs.push(l),
        );
      expect(await cli(['validate', good])).toBe(0);
      expect(lines.join('\n')).toContain(`${good}: valid`);
      expect(await cli(['validate', bad])).toBe(1);
      expect(lines.join('\n')).toContain('error: resnet/1/model.pt: missing');
      expect(await cli(['--help'])).toBe(0);
      expect(lines.join('\n')).toMatch(/^\s+validate\s+check model artifacts/m);
    });

    test('--json prints the report; limits come from the agent settings', async () => {
      const file = await archive(resnetArtifactEntries(resnetPtConfig(), Buffer.alloc(5000)));
      const r = await run(['--json', file]);
      expect(r.code).toBe(0);
      expect(JSON.parse(r.out)).toMatchObject({ target: file, valid: true, entries: 4 });
      const limited = await run(['--json', file], { AGENT_MAX_ARTIFACT_BYTES: '1000' });
      expect(limited.code).toBe(1);
      expect(JSON.parse(limited.out).findings[0].message).toMatch(/more than 1000 bytes/);
      const badSetting = await run([file], { AGENT_MAX_ARTIFACT_ENTRIES: 'many' });
      expect(badSetting.code).toBe(2);
      expect(badSetting.err).toMatch(/AGENT_MAX_ARTIFACT_ENTRIES must be a whole number/);
    });
  });
});
