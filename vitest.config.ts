import { defineConfig } from 'vitest/config';

/**
 * Files that run one at a time, after the others: captures whose tests hold tcpdump to exact
 * time windows and progress counts while traffic flows (capture-lab, own-traffic), faults
 * injected mid-capture at a moment the test chooses (test/faults), and cli-capture, whose
 * captures of 3 s must see traffic sent after another CLI process has said Running (with a
 * second file beside it under load, that took more than 3 s: 2 of 10 packets). On two cores a
 * second file beside them could starve tcpdump or shift that moment.
 */
const ALONE = [
  'test/capture-lab.test.ts',
  'test/own-traffic.test.ts',
  'test/cli-capture.test.ts',
  'test/faults/**/*.test.ts',
];

export default defineConfig({
  test: {
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    projects: [
      {
        // Every other file runs two at a time, also on two cores: most of a lab file's time is
        // spent waiting (tcpdump's 1.2 s drain, time limits, polls), and each lab file has its
        // own namespaces (test/lab/lab.ts names them by pid and sequence), its own temp dirs
        // and servers on ports the kernel picks.
        extends: true,
        test: {
          name: 'together',
          include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
          exclude: ALONE,
          maxWorkers: 2,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: 'alone',
          include: ALONE,
          maxWorkers: 1,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
