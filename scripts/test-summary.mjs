// Prints vitest's JSON report as the plain closing line CI reads: "N passed, N failed, N skipped".
// A test file that failed to load counts as one failed test; the optional second argument is the
// number of checks (format, lint, types) that failed before the suite, each one failed test.
import { readFileSync } from 'node:fs';

let report;
try {
  report = JSON.parse(readFileSync(process.argv[2], 'utf8'));
} catch {
  console.log(`0 passed, ${1 + (Number(process.argv[3] ?? 0) || 0)} failed`);
  process.exit(1);
}
let passed = 0;
let failed = Number(process.argv[3] ?? 0) || 0;
let skipped = 0;
for (const file of report.testResults ?? []) {
  const tests = file.assertionResults ?? [];
  if (file.status === 'failed' && !tests.some((t) => t.status === 'failed')) failed++;
  for (const test of tests) {
    if (test.status === 'passed') passed++;
    else if (test.status === 'failed') failed++;
    else skipped++;
  }
}
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 ? 1 : 0);
