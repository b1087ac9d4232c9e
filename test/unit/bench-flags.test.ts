import { benchFlags, numberFlag, numberListFlag, type FlagSpec } from '../../bench/support/flags';

/** Runs `fn`, turning process.exit into a thrown code and collecting what it wrote. */
function run(fn: () => unknown): { code?: number; value?: unknown; out: string; err: string } {
  let out = '';
  let err = '';
  const exit = jest.spyOn(process, 'exit').mockImplementation(((code?: number) => {
    throw Object.assign(new Error('exit'), { exitCode: code });
  }) as never);
  const stdout = jest.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => {
    out += String(s);
    return true;
  });
  const stderr = jest.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => {
    err += String(s);
    return true;
  });
  try {
    return { value: fn(), out, err };
  } catch (e) {
    const code = (e as { exitCode?: number }).exitCode;
    if (code === undefined) throw e;
    return { code, out, err };
  } finally {
    exit.mockRestore();
    stdout.mockRestore();
    stderr.mockRestore();
  }
}

const spec = {
  rounds: { type: 'string', default: '3', help: 'interleaved rounds' },
  'agent-output': { type: 'string', default: '', help: 'a file' },
  profile: { type: 'boolean', help: 'CPU profiles' },
} satisfies FlagSpec;

describe('bench command lines (bench/support/flags.ts)', () => {
  test('defaults, given values and booleans', () => {
    expect(run(() => benchFlags('b', spec, [])).value).toEqual({
      rounds: '3',
      'agent-output': '',
      profile: false,
    });
    expect(
      run(() => benchFlags('b', spec, ['--rounds', '5', '--profile', '--agent-output=x'])).value,
    ).toEqual({
      rounds: '5',
      'agent-output': 'x',
      profile: true,
    });
  });

  test.each([
    ['an unknown flag', ['--bogus']],
    ['a missing value', ['--rounds']],
    ['a positional argument', ['extra']],
  ])('%s stops the run with exit code 2, the reason and the usage', (_label, argv) => {
    const r = run(() => benchFlags('bench:x', spec, argv));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^bench:x: /);
    expect(r.err).toContain('usage: bench:x [options]');
    expect(r.err).toMatch(/--rounds VALUE\s+interleaved rounds \(default 3\)/);
    expect(r.err).toMatch(/--profile\s+CPU profiles/);
  });

  test('--help prints the usage on stdout and exits 0', () => {
    const r = run(() => benchFlags('bench:x', spec, ['--help']));
    expect(r.code).toBe(0);
    expect(r.out).toContain('--agent-output VALUE');
    expect(r.err).toBe('');
  });

  test('numbers: finite and at least the minimum, else exit 2 naming the flag', () => {
    expect(run(() => numberFlag('b', 'seconds', '2.5', 0.1)).value).toBe(2.5);
    for (const bad of ['x', '', ' ', '0', 'Infinity', 'NaN']) {
      const r = run(() => numberFlag('b', 'seconds', bad, 0.1));
      expect(r.code).toBe(2);
      expect(r.err).toContain(`--seconds must be a number of at least 0.1, got '${bad}'`);
    }
    expect(run(() => numberListFlag('b', 'concurrency', '1,16,64', 1)).value).toEqual([1, 16, 64]);
    expect(run(() => numberListFlag('b', 'concurrency', '1,,16', 1)).code).toBe(2);
  });
});
