/**
 * The benchmarks' command lines, read one way (node:util parseArgs, strict): an unknown flag, a missing
 * value or a number that is not one stops the run with one line and the usage, rather than measuring
 * something else than asked. `--help` prints the usage.
 */
import { parseArgs } from 'node:util';

interface StringFlag {
  type: 'string';
  default: string;
  help: string;
}
interface BooleanFlag {
  type: 'boolean';
  help: string;
}
export type FlagSpec = Record<string, StringFlag | BooleanFlag>;

export type Flags<S extends FlagSpec> = {
  [K in keyof S]: S[K] extends BooleanFlag ? boolean : string;
};

function usageOf(command: string, spec: FlagSpec): string {
  const lines = [`usage: ${command} [options]`, ''];
  for (const [name, f] of Object.entries(spec)) {
    const left = f.type === 'string' ? `--${name} VALUE` : `--${name}`;
    const def = f.type === 'string' && f.default !== '' ? ` (default ${f.default})` : '';
    lines.push(`  ${left.padEnd(28)} ${f.help}${def}`);
  }
  return lines.join('\n');
}

/** Parses `argv` (default: the process's) against `spec`; exits 2 with the usage on anything else. */
export function benchFlags<S extends FlagSpec>(
  command: string,
  spec: S,
  argv: string[] = process.argv.slice(2),
): Flags<S> {
  const options: Record<string, { type: 'string' | 'boolean'; default?: string }> = {
    help: { type: 'boolean' },
  };
  for (const [name, f] of Object.entries(spec))
    options[name] = f.type === 'string' ? { type: 'string', default: f.default } : { type: 'boolean' };
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    process.stderr.write(`${command}: ${(err as Error).message}\n${usageOf(command, spec)}\n`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(`${usageOf(command, spec)}\n`);
    process.exit(0);
  }
  const out: Record<string, string | boolean> = {};
  for (const [name, f] of Object.entries(spec))
    out[name] = f.type === 'boolean' ? values[name] === true : String(values[name] ?? f.default);
  return out as Flags<S>;
}

/** A flag's value as a number (finite, and at least `min`); exits 2 naming the flag otherwise. */
export function numberFlag(command: string, name: string, value: string, min = 0): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < min) {
    process.stderr.write(`${command}: --${name} must be a number of at least ${min}, got '${value}'\n`);
    process.exit(2);
  }
  return n;
}

/** A comma-separated list of numbers (each checked as numberFlag does). */
export function numberListFlag(command: string, name: string, value: string, min = 0): number[] {
  return value.split(',').map((v) => numberFlag(command, name, v, min));
}
