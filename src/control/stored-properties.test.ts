import { describe, expect, it } from 'vitest';
import { session, subA } from '../../test/support/store-conformance/fixtures.js';
import {
  isContinuous,
  ringFileCountOf,
  storageLocationOf,
  timeLimitOf,
} from './stored-properties.js';

const withProperties = (properties: Record<string, unknown>) => session(subA, { properties });

describe('timeLimitOf', () => {
  it('a single file: 5 h by default, 0 means the maximum (5 h)', () => {
    expect(timeLimitOf(withProperties({}))).toBe(18000);
    expect(timeLimitOf(withProperties({ timeLimitInSeconds: 0 }))).toBe(18000);
    expect(timeLimitOf(withProperties({ timeLimitInSeconds: 60 }))).toBe(60);
  });

  it('a ring: the session limit (1 day by default, 0 means 7 days), within timeLimitInSeconds', () => {
    expect(timeLimitOf(withProperties({ continuousCapture: true }))).toBe(86400);
    const ring = (sessionTimeLimitInSeconds: number, timeLimitInSeconds?: number) =>
      withProperties({
        continuousCapture: true,
        captureSettings: { sessionTimeLimitInSeconds },
        ...(timeLimitInSeconds === undefined ? {} : { timeLimitInSeconds }),
      });
    expect(timeLimitOf(ring(0))).toBe(604800);
    expect(timeLimitOf(ring(600))).toBe(600);
    expect(timeLimitOf(ring(600, 60))).toBe(60);
    expect(timeLimitOf(ring(0, 0))).toBe(18000);
  });
});

describe('the other readers', () => {
  it('continuousCapture is true only when stored true', () => {
    expect(isContinuous(withProperties({ continuousCapture: true }))).toBe(true);
    expect(isContinuous(withProperties({ continuousCapture: 'true' }))).toBe(false);
    expect(isContinuous(withProperties({}))).toBe(false);
  });

  it('a ring file count is a positive safe integer or nothing', () => {
    const count = (fileCount: unknown) =>
      ringFileCountOf(withProperties({ captureSettings: { fileCount } }));
    expect(count(4)).toBe(4);
    for (const bad of [0, -1, 1.5, '4', Number.MAX_SAFE_INTEGER + 1]) {
      expect(count(bad)).toBeUndefined();
    }
    expect(ringFileCountOf(withProperties({}))).toBeUndefined();
  });

  it('a storage location is {} when none is stored', () => {
    expect(storageLocationOf(withProperties({}))).toEqual({});
    expect(
      storageLocationOf(withProperties({ storageLocation: { filePath: '/c/a.cap' } })),
    ).toEqual({ filePath: '/c/a.cap' });
  });
});
