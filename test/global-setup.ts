import { execFileSync } from 'node:child_process';

/**
 * End-to-end tests run the built binary, as a user would: build it once before they start —
 * unless the test command (scripts/test) has just built it (WIREWATCH_BUILT=1).
 */
export default function setup(): void {
  if (process.env['WIREWATCH_BUILT'] === '1') return;
  execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
}
