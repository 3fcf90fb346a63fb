import { execFileSync } from 'node:child_process';

/**
 * End-to-end tests run the built binary, as a user would: build it once before they start —
 * unless the test command (scripts/test) has just built it (WIREWATCH_BUILT=1). Vitest runs this
 * for the root config and again for each project that extends it (vitest.config.ts), all in one
 * process: the first call builds and marks it built for the others.
 */
export default function setup(): void {
  if (process.env['WIREWATCH_BUILT'] === '1') return;
  execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
  process.env['WIREWATCH_BUILT'] = '1';
}
