import { execFileSync } from 'node:child_process';

/** End-to-end tests run the built binary, as a user would: build it once before they start. */
export default function setup(): void {
  execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
}
