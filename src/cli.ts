#!/usr/bin/env node
/**
 * The package's command line: `triton-sagemaker-mme-agent <command> [options]`. Each command is one entry
 * in COMMANDS (loaded only when it runs), so adding a command is adding one line.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** A command: one line of help, and a runner that prints through `print` and returns an exit status. */
export interface Command {
  summary: string;
  run(argv: string[], print: (line: string) => void): Promise<number>;
}

export const COMMANDS: Record<string, Command> = {
  serve: {
    summary:
      "run the agent: SageMaker's routes on SAGEMAKER_BIND_TO_PORT (8080), settings from the environment (docs/settings.md)",
    run: async (argv, print) => {
      if (argv.includes('--help') || argv.includes('-h')) {
        print(
          [
            'usage: triton-sagemaker-mme-agent serve',
            '',
            'Starts the agent in the foreground; SIGTERM or SIGINT drains and stops it. Every setting is an',
            'environment variable (TRITON_MODEL_REPOSITORY, TRITON_GRPC_URL, MODEL_DATA_URL, TRITON_MANAGED, ...),',
            'listed with its default and meaning in docs/settings.md.',
          ].join('\n'),
        );
        return 0;
      }
      if (argv.length > 0)
        throw Object.assign(new Error(`unexpected argument '${argv[0]}'`), { name: 'UsageError' });
      await (await import('./main')).runServer();
      // The server runs until a signal stops it (and exits the process).
      return new Promise<number>(() => undefined);
    },
  },
  plan: {
    summary: 'how much GPU memory does my traffic need? replay an access log through every policy',
    run: async (argv, print) => (await import('./planner')).runPlanCommand(argv, print),
  },
  validate: {
    summary:
      'check model artifacts (.tar.gz or folder) offline with the loader code: exit 0 valid, 1 invalid, 2 usage',
    run: async (argv, print) =>
      (await import('./validate')).runValidateCommand(argv, { out: print, err: (l) => console.error(l) }),
  },
};

/** The package's version, from the package.json above this file (src/ or dist/src/). */
function packageVersion(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (fs.existsSync(file))
      return (JSON.parse(fs.readFileSync(file, 'utf8')) as { version: string }).version;
    if (path.dirname(dir) === dir) return 'unknown';
  }
}

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return [
    'usage: triton-sagemaker-mme-agent <command> [options]   (<command> --help for its options; --version)',
    '',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
  ].join('\n');
}

/**
 * Runs one command line (without the node and script words). Returns the exit status: the command's own,
 * 2 for a usage mistake (unknown command, bad option), 1 for a failure; messages go to `printError`.
 */
export async function runCli(
  argv: string[],
  print: (line: string) => void = (l) => console.log(l),
  printError: (line: string) => void = (l) => console.error(l),
): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--version' || name === '-V') {
    print(packageVersion());
    return 0;
  }
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? printError : print)(usage());
    return name === undefined ? 2 : 0;
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) {
    printError(`unknown command '${name}'\n\n${usage()}`);
    return 2;
  }
  try {
    return await command.run(rest, print);
  } catch (err) {
    const e = err as Error;
    if (e.name === 'UsageError') {
      printError(`${name}: ${e.message} (${name} --help for its options)`);
      return 2;
    }
    printError(`${name}: ${e.message}`);
    return 1;
  }
}

if (require.main === module) {
  void runCli(process.argv.slice(2)).then((status) => {
    process.exitCode = status;
  });
}
