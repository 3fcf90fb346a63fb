import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Lab tests share two cores with tcpdump and traffic generators; run files one by one so
    // that captures are not starved into kernel drops.
    fileParallelism: false,
  },
});
