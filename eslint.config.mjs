import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * Folder boundaries: each folder of src/ may import only the folders below it. `model-config` (the config
 * file format) and `errors` are the floor; `triton` (the client) and `artifacts` sit on them; `models`
 * (the lifecycle) on those; `http` and the commands on top. `time`, `files` (bounded low-level reads),
 * `errors` and `config` are open to every folder. A violation fails the lint with the rule.
 */
const BELOW = {
  time: [],
  files: [],
  'model-config': [],
  triton: ['model-config'],
  artifacts: ['model-config', 'observability'],
  inference: ['triton', 'model-config'],
  observability: [],
  models: ['artifacts', 'inference', 'model-config', 'observability', 'triton'],
  validate: ['artifacts', 'model-config', 'models', 'planner'],
  planner: ['models'],
  http: ['models', 'inference', 'observability'],
};
const FOLDERS = [
  'model-config',
  'triton',
  'artifacts',
  'inference',
  'observability',
  'models',
  'http',
  'validate',
  'planner',
];
const boundaries = Object.entries(BELOW).map(([folder, allowed]) => {
  const banned = FOLDERS.filter((f) => f !== folder && !allowed.includes(f));
  return {
    files: [`src/${folder}/**/*.ts`],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: banned.flatMap((f) => [`../${f}`, `../${f}/*`, `../../${f}`, `../../${f}/*`]),
              message: `src/${folder} may import only ${allowed.length ? allowed.map((f) => `src/${f}`).join(', ') : 'nothing of src/'} besides errors and config (the folder boundaries in eslint.config.mjs)`,
            },
          ],
        },
      ],
    },
  };
});

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'bench/node_modules/**', '.tmp/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      'no-console': ['error', { allow: ['warn', 'error'] }],
    },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts', 'src/main.ts', '**/cli.ts', 'scripts/**'],
    rules: { 'no-console': 'off' },
  },
  ...boundaries,
  {
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    languageOptions: {
      globals: { module: 'writable', require: 'readonly', process: 'readonly', console: 'readonly' },
    },
  },
);
