import { execFile } from 'node:child_process';
import * as path from 'node:path';

/**
 * The folder boundaries in eslint.config.mjs, checked against deliberate violations and allowed imports
 * by running ESLint itself (its flat config is an ES module, which jest's CommonJS runtime cannot load).
 */
const ROOT = path.join(__dirname, '..', '..');
const ESLINT = path.join(ROOT, 'node_modules', 'eslint', 'bin', 'eslint.js');

function restricted(file: string, code: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      process.execPath,
      [ESLINT, '--stdin', '--stdin-filename', file, '--format', 'json'],
      { cwd: ROOT },
      (err, stdout) => {
        try {
          const [result] = JSON.parse(stdout) as { messages: { ruleId: string; message: string }[] }[];
          resolve(result.messages.filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message));
        } catch {
          reject(err ?? new Error(`eslint printed no report: ${stdout}`));
        }
      },
    );
    child.stdin?.end(`${code}\nexport const x = 1;\n`);
  });
}

describe('folder boundaries (ESLint)', () => {
  test.each([
    ['src/model-config/x.ts', "import { TritonClient } from '../triton';"],
    ['src/artifacts/x.ts', "import { TritonClient } from '../triton';"],
    ['src/artifacts/x.ts', "import type { ModelRecord } from '../models/model-record';"],
    ['src/triton/x.ts', "import { DiskCache } from '../artifacts';"],
    ['src/models/x.ts', "import { createApp } from '../http';"],
    ['src/inference/x.ts', "import { ModelRegistry } from '../models';"],
    ['src/observability/x.ts', "import { ModelRegistry } from '../models';"],
    ['src/http/x.ts', "import { TritonError } from '../triton';"],
    ['src/http/x.ts', "import { parseS3Url } from '../artifacts';"],
  ])(
    '%s: %s is refused',
    async (file, code) => {
      const messages = await restricted(file, code);
      expect(messages).toEqual([expect.stringMatching(/may import only .*folder boundaries/)]);
    },
    30_000,
  );

  test.each([
    ['src/artifacts/x.ts', "import { parsePbtxt } from '../model-config';"],
    ['src/models/x.ts', "import { TritonError } from '../triton';"],
    ['src/http/x.ts', "import { ModelRegistry } from '../models';"],
    ['src/triton/x.ts', "import { parsePbtxt } from '../model-config';"],
  ])(
    '%s: %s is allowed',
    async (file, code) => {
      expect(await restricted(file, code)).toEqual([]);
    },
    30_000,
  );
});
