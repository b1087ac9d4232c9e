import { messageOf } from '../errors';
import { agentUnpackLimits, validateArtifact, type ValidationReport } from './validate-artifact';

/** Exit codes of `validate`, for CI. */
export const VALIDATE_EXIT = { ok: 0, invalid: 1, usage: 2 } as const;

/** Where the command writes; tests pass their own. */
export interface CommandOutput {
  out: (line: string) => void;
  err: (line: string) => void;
}

export const VALIDATE_USAGE = `usage: triton-sagemaker-mme-agent validate [--json] <artifact.tar.gz | model directory>...

Checks model artifacts offline with the agent's own loader code: safe unpacking (no absolute paths,
'..', links leaving the artifact, devices; entry and byte limits from AGENT_MAX_ARTIFACT_ENTRIES and
AGENT_MAX_ARTIFACT_BYTES), the layout (one model, or one ensemble and its composing models),
config.pbtxt syntax and schema, each platform's model file in every version Triton would load,
version policies, and ensemble references.

  --json   print one JSON report per artifact instead of text

exit status: 0 every artifact is valid, 1 at least one is invalid, 2 usage error or unreadable path`;

const defaultOutput: CommandOutput = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

function mib(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${(bytes / (1024 * 1024)).toFixed(1)} MiB` : `${bytes} bytes`;
}

function formatReport(r: ValidationReport): string[] {
  const lines = [`${r.target}: ${r.valid ? 'valid' : 'INVALID'}`];
  for (const m of r.models) {
    lines.push(
      `  ${m.role === 'top' ? 'model' : 'member'} ${m.dir} (${m.platform}), versions ${m.versions.join(', ') || 'none'}, ${mib(m.bytes)}`,
    );
  }
  if (r.entries !== undefined) lines.push(`  ${r.entries} archive entries, ${mib(r.bytes)} unpacked`);
  for (const f of r.findings) lines.push(`  ${f.severity}: ${f.where}: ${f.message}`);
  return lines;
}

/**
 * `triton-sagemaker-mme-agent validate <artifact>...`: returns the process exit code (0 valid, 1 invalid,
 * 2 usage) instead of exiting, so the bin dispatcher and tests share it.
 */
export async function runValidateCommand(
  argv: string[],
  output: CommandOutput = defaultOutput,
): Promise<number> {
  const targets: string[] = [];
  let json = false;
  for (const a of argv) {
    if (a === '--json') json = true;
    else if (a === '-h' || a === '--help') {
      output.out(VALIDATE_USAGE);
      return VALIDATE_EXIT.ok;
    } else if (a.startsWith('-')) {
      output.err(`validate: unknown option '${a}'\n\n${VALIDATE_USAGE}`);
      return VALIDATE_EXIT.usage;
    } else targets.push(a);
  }
  if (targets.length === 0) {
    output.err(`validate: name at least one artifact\n\n${VALIDATE_USAGE}`);
    return VALIDATE_EXIT.usage;
  }
  let limits;
  try {
    limits = agentUnpackLimits();
  } catch (err) {
    output.err(`validate: ${messageOf(err)}`);
    return VALIDATE_EXIT.usage;
  }
  const reports: ValidationReport[] = [];
  for (const t of targets) {
    try {
      reports.push(await validateArtifact(t, { limits }));
    } catch (err) {
      output.err(`validate: cannot read '${t}': ${messageOf(err)}`);
      return VALIDATE_EXIT.usage;
    }
  }
  if (json) output.out(JSON.stringify(reports.length === 1 ? reports[0] : reports, null, 2));
  else for (const r of reports) for (const line of formatReport(r)) output.out(line);
  return reports.every((r) => r.valid) ? VALIDATE_EXIT.ok : VALIDATE_EXIT.invalid;
}
