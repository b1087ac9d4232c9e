import * as os from 'node:os';
import { parseArgs } from 'node:util';
import { AgentError, ErrorCode, isAgentError, shown } from '../errors';
import { formatByteSize, parseByteSize } from '../planner';
import { ScratchDir } from './scratch-dir';
import {
  DEFAULT_MAX_UNPACK_BYTES,
  agentUnpackLimits,
  checkTarget,
  validateArtifact,
  type ValidationReport,
} from './validate-artifact';

/** Exit codes of `validate`, for CI. */
export const VALIDATE_EXIT = { ok: 0, invalid: 1, usage: 2 } as const;

/** How long a whole run may take unless --timeout-seconds says otherwise: generous for 8 GiB. */
export const DEFAULT_TIMEOUT_SECONDS = 1800;
/** Longest --timeout-seconds accepted: a week. */
export const MAX_TIMEOUT_SECONDS = 7 * 86_400;
/** How long an aborted check may take to stop before the command gives up on it anyway. */
const ABORT_GRACE_MS = 5000;

/** Where the command writes; tests pass their own. */
export interface CommandOutput {
  out: (line: string) => void;
  err: (line: string) => void;
}

/** What the command would otherwise take from the process; tests pass their own. */
export interface CommandContext {
  /** Where archives are unpacked (default: os.tmpdir(), that is TMPDIR). */
  tmpDir?: string;
}

export const VALIDATE_USAGE = `usage: triton-sagemaker-mme-agent validate [options] <artifact.tar.gz | model directory>...

Checks model artifacts offline with the agent's own loader code: safe unpacking (no absolute paths,
'..', links leaving the artifact, devices; entry and byte limits from AGENT_MAX_ARTIFACT_ENTRIES and
AGENT_MAX_ARTIFACT_BYTES), the layout (one model, or one ensemble and its composing models),
config.pbtxt syntax and schema, each platform's model file in every version Triton would load,
version policies, and ensemble references. Only regular files and directories are read: a FIFO, socket
or device (or a link to one) is refused, and inside a model directory it is an error, never opened.
Archives are unpacked under TMPDIR and removed afterwards, also on SIGINT, SIGTERM and SIGHUP.

  --json                     print one JSON report per artifact instead of text
  --max-unpack-bytes SIZE    most temporary space an archive may take while checked (default ${formatByteSize(DEFAULT_MAX_UNPACK_BYTES)};
                             the free space under TMPDIR lowers it further)
  --timeout-seconds N        give up after N seconds for the whole run (default ${DEFAULT_TIMEOUT_SECONDS})

exit status: 0 every artifact is valid, 1 at least one is invalid, 2 usage error or an artifact that
could not be checked (unreadable, not a file or directory, over the temporary space or the time limit);
128 + the signal's number when interrupted`;

const defaultOutput: CommandOutput = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

/** The message of anything thrown (an error from another realm, as under a test runner, included). */
function messageOf(err: unknown): string {
  const message = (err as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message : String(err);
}

/** Text that must stay on one line (names and messages from a hostile archive): control characters escaped. */
function oneLine(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, (c) => {
    if (c === '\n') return '\\n';
    if (c === '\r') return '\\r';
    if (c === '\t') return '\\t';
    return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
  });
}

function mib(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${(bytes / (1024 * 1024)).toFixed(1)} MiB` : `${bytes} bytes`;
}

function formatReport(r: ValidationReport): string[] {
  const lines = [`${oneLine(r.target)}: ${r.valid ? 'valid' : 'INVALID'}`];
  for (const m of r.models) {
    lines.push(
      `  ${m.role === 'top' ? 'model' : 'member'} ${oneLine(m.dir)} (${oneLine(m.platform)}), versions ${m.versions.join(', ') || 'none'}, ${mib(m.bytes)}`,
    );
  }
  if (r.entries !== undefined) lines.push(`  ${r.entries} archive entries, ${mib(r.bytes)} unpacked`);
  for (const f of r.findings) lines.push(`  ${f.severity}: ${oneLine(f.where)}: ${oneLine(f.message)}`);
  return lines;
}

/** A usage mistake: one line, the command's exit status 2. */
class UsageError extends Error {}

/** `--timeout-seconds`: a plain positive decimal number of seconds up to a week. */
function parseSeconds(text: string): number {
  const seconds = /^\s*\d{1,7}(\.\d{1,3})?\s*$/.test(text) ? Number(text) : NaN;
  if (!(seconds > 0 && seconds <= MAX_TIMEOUT_SECONDS))
    throw new UsageError(
      `--timeout-seconds must be a number of seconds above 0 and at most ${MAX_TIMEOUT_SECONDS}, got ${shown(text)}`,
    );
  return seconds;
}

interface CommandOptions {
  help: boolean;
  json: boolean;
  maxUnpackBytes: number;
  timeoutSeconds: number;
  targets: string[];
}

function parseOptions(argv: string[]): CommandOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        'max-unpack-bytes': { type: 'string' },
        'timeout-seconds': { type: 'string' },
      },
      strict: true,
      allowPositionals: true,
    });
  } catch (err) {
    // Node's own text for an unknown option runs on about positionals; say it in one short line.
    const unknown = /^Unknown option '([^']*)'/.exec(messageOf(err));
    throw new UsageError(unknown ? `unknown option '${unknown[1]}'` : messageOf(err));
  }
  const { values, positionals } = parsed;
  let maxUnpackBytes = DEFAULT_MAX_UNPACK_BYTES;
  if (values['max-unpack-bytes'] !== undefined) {
    try {
      maxUnpackBytes = parseByteSize(values['max-unpack-bytes']);
    } catch (err) {
      throw new UsageError(`--max-unpack-bytes: ${messageOf(err)}`);
    }
  }
  const timeoutSeconds =
    values['timeout-seconds'] === undefined
      ? DEFAULT_TIMEOUT_SECONDS
      : parseSeconds(values['timeout-seconds']);
  if (positionals.some((t) => t === '')) throw new UsageError('an artifact path is empty');
  if (!values.help && positionals.length === 0) throw new UsageError('name at least one artifact');
  return {
    help: values.help === true,
    json: values.json === true,
    maxUnpackBytes,
    timeoutSeconds,
    targets: positionals,
  };
}

/**
 * Waits for `work`; once `signal` aborts, waits at most `graceMs` more and then rejects with its reason,
 * so a check stuck in a system call cannot hold the command past its time limit.
 */
function settleOrAbandon<T>(work: Promise<T>, signal: AbortSignal, graceMs: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      timer = setTimeout(() => reject(signal.reason), graceMs);
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    void work.then(resolve, reject).finally(() => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    });
  });
}

/** The one line a check that could not be made prints. */
function failureLine(target: string, err: unknown, timeoutSeconds: number): string {
  if (isAgentError(err, ErrorCode.DeadlineExceeded))
    return `validate: gave up on ${shown(target)} after ${timeoutSeconds} s (--timeout-seconds); its temporary files are removed`;
  if (isAgentError(err) && err.message.includes(shown(target))) return `validate: ${oneLine(err.message)}`;
  if (isAgentError(err)) return `validate: cannot check ${shown(target)}: ${oneLine(err.message)}`;
  return `validate: cannot read ${shown(target)}: ${oneLine(messageOf(err))}`;
}

/**
 * `triton-sagemaker-mme-agent validate <artifact>...`: returns the process exit code (0 valid, 1 invalid,
 * 2 usage or a check that could not be made) instead of exiting, so the bin dispatcher and tests share
 * it. Every failure is one line on `output.err`. Archives are unpacked in one temporary directory that is
 * removed on every way out, signals included (those exit with 128 + the signal's number).
 */
export async function runValidateCommand(
  argv: string[],
  output: CommandOutput = defaultOutput,
  context: CommandContext = {},
): Promise<number> {
  const tmpParent = context.tmpDir ?? os.tmpdir();
  let options: CommandOptions;
  let limits;
  try {
    options = parseOptions(argv);
    if (options.help) {
      output.out(VALIDATE_USAGE);
      return VALIDATE_EXIT.ok;
    }
    limits = agentUnpackLimits();
  } catch (err) {
    output.err(`validate: ${oneLine(messageOf(err))} (validate --help for its options)`);
    return VALIDATE_EXIT.usage;
  }
  // Every target is looked at (never opened) before any work: a FIFO or a device is refused at once.
  const kinds: ValidationReport['kind'][] = [];
  for (const t of options.targets) {
    try {
      kinds.push(await checkTarget(t));
    } catch (err) {
      output.err(failureLine(t, err, options.timeoutSeconds));
      return VALIDATE_EXIT.usage;
    }
  }
  const deadline = new AbortController();
  const timer = setTimeout(
    () =>
      deadline.abort(
        new AgentError(
          ErrorCode.DeadlineExceeded,
          `gave up after ${options.timeoutSeconds} s (--timeout-seconds)`,
        ),
      ),
    options.timeoutSeconds * 1000,
  );
  let scratch: ScratchDir | undefined;
  let leftover = false;
  const reports: ValidationReport[] = [];
  try {
    if (kinds.includes('archive')) {
      try {
        scratch = await ScratchDir.create(tmpParent, 'mme-validate-', {
          onSignal: (signal, removed) =>
            output.err(
              `validate: interrupted by ${signal}; ${removed ? 'temporary files removed' : `could not remove ${shown(scratch?.path ?? '')}`}`,
            ),
        });
      } catch (err) {
        output.err(
          `validate: cannot create a temporary directory in ${shown(tmpParent)} (TMPDIR): ${oneLine(messageOf(err))}`,
        );
        return VALIDATE_EXIT.usage;
      }
    }
    for (const t of options.targets) {
      try {
        const check = validateArtifact(t, {
          limits,
          tmpDir: scratch?.path,
          maxUnpackBytes: options.maxUnpackBytes,
          signal: deadline.signal,
        });
        reports.push(await settleOrAbandon(check, deadline.signal, ABORT_GRACE_MS));
      } catch (err) {
        output.err(failureLine(t, err, options.timeoutSeconds));
        return VALIDATE_EXIT.usage;
      }
    }
  } finally {
    clearTimeout(timer);
    try {
      await scratch?.dispose();
    } catch (err) {
      leftover = true;
      output.err(`validate: could not remove ${shown(scratch?.path ?? '')}: ${oneLine(messageOf(err))}`);
    }
  }
  if (leftover) return VALIDATE_EXIT.usage;
  if (options.json) output.out(JSON.stringify(reports.length === 1 ? reports[0] : reports, null, 2));
  else for (const r of reports) for (const line of formatReport(r)) output.out(line);
  return reports.every((r) => r.valid) ? VALIDATE_EXIT.ok : VALIDATE_EXIT.invalid;
}
