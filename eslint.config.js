import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
    },
  },
  {
    // Fastify plugins and handlers are async by contract (Fastify awaits them), whether or not
    // their body awaits anything.
    files: ['src/server/**/*.ts'],
    rules: { '@typescript-eslint/require-await': 'off' },
  },
  {
    // The store sits behind the control plane (docs/design.md, "What each folder may import"):
    // outside src/store and src/control only the record types of its contract
    // (src/store/store.ts) may be named, never the Store handle. start-server.ts and app.ts
    // compose the server: they open the store (with its secrets key, secrets-key.ts) and hand
    // it to the ControlPlane.
    files: ['src/server/**/*.ts', 'src/cli/**/*.ts', 'src/up/**/*.ts', 'src/agent/**/*.ts'],
    ignores: [
      '**/*.test.ts',
      'src/server/start-server.ts',
      'src/server/app.ts',
      'src/server/secrets-key.ts',
    ],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/store/**', '!**/store/store.js'],
              message: 'Only the control plane reaches the store: call src/control.',
            },
            {
              group: ['**/store/store.js'],
              importNames: ['Store'],
              message: 'Only the control plane holds the Store: call src/control.',
            },
            {
              group: ['**/store/store.js'],
              allowTypeImports: true,
              message: "Import the store's record types with `import type`.",
            },
          ],
        },
      ],
    },
  },
  {
    // vitest's asymmetric matchers (expect.stringMatching …) are typed `any`, and API tests
    // inspect JSON bodies, which are `any` until asserted on.
    files: ['**/*.test.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      parserOptions: { projectService: false, project: false },
      globals: {
        console: 'readonly',
        process: 'readonly',
        Buffer: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
      },
    },
  },
);
