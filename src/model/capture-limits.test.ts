import { describe, expect, it } from 'vitest';
import { resolveCaptureLimits, resolveLimit, resolveRingSettings } from './capture-limits.js';

describe('capture limits', () => {
  it('applies Azure defaults', () => {
    expect(resolveCaptureLimits({})).toEqual({
      bytesToCapturePerPacket: 0,
      totalBytesPerSession: 1073741824,
      timeLimitInSeconds: 18000,
    });
    expect(resolveRingSettings()).toEqual({
      fileCount: 10,
      fileSizeInBytes: 104857600,
      sessionTimeLimitInSeconds: 86400,
    });
  });

  it.each([
    ['timeLimitInSeconds', 18000, 18000],
    ['timeLimitInSeconds', 0, 18000],
    ['bytesToCapturePerPacket', 0, 0],
    ['bytesToCapturePerPacket', 96, 96],
    ['totalBytesPerSession', 4294967295, 4294967295],
    ['fileCount', 10000, 10000],
    ['sessionTimeLimitInSeconds', 604800, 604800],
  ] as const)('%s = %s resolves to %s', (name, value, expected) => {
    expect(resolveLimit(name, value)).toBe(expected);
  });

  it.each([
    ['timeLimitInSeconds', 18001],
    ['timeLimitInSeconds', -1],
    ['timeLimitInSeconds', 1.5],
    ['timeLimitInSeconds', '60'],
    ['totalBytesPerSession', 4294967296],
    ['fileCount', 10001],
    ['fileSizeInBytes', true],
    ['sessionTimeLimitInSeconds', 604801],
  ] as const)('%s = %j is refused naming the field', (name, value) => {
    expect(() => resolveLimit(name, value, `properties.${name}`)).toThrow(
      expect.objectContaining({
        code: 'InvalidCaptureLimit',
        target: `properties.${name}`,
        message: expect.stringContaining(`properties.${name}`),
      }),
    );
  });
});
