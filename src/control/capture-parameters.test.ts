import { describe, expect, it } from 'vitest';
import type { CaptureProperties } from '../model/capture-settings.js';
import { parseCaptureBody } from './capture-parameters.js';

const target =
  '/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/vm1';

function ring(extra: Partial<CaptureProperties> = {}) {
  return parseCaptureBody({
    properties: {
      target,
      storageLocation: { localPath: '/var/captures/ring.cap' },
      continuousCapture: true,
      captureSettings: { fileCount: 3, fileSizeInBytes: 20000 },
      ...extra,
    },
  });
}

describe('continuousCapture with timeLimitInSeconds', () => {
  it('an explicit time limit earlier than the session limit ends the capture (the agent gets it as the session limit)', () => {
    const parsed = ring({ timeLimitInSeconds: 6 });
    expect(parsed.capture.ring).toEqual({
      fileCount: 3,
      fileSizeInBytes: 20000,
      sessionTimeLimitInSeconds: 6,
    });
    // What the user sent is what is echoed.
    expect(parsed.properties).toMatchObject({
      timeLimitInSeconds: 6,
      captureSettings: { sessionTimeLimitInSeconds: 86400 },
    });
  });

  it('a session limit earlier than the explicit time limit stays', () => {
    const parsed = ring({
      timeLimitInSeconds: 600,
      captureSettings: { sessionTimeLimitInSeconds: 60 },
    });
    expect(parsed.capture.ring?.sessionTimeLimitInSeconds).toBe(60);
  });

  it('without one, only the session limit applies, and no time limit is echoed', () => {
    const parsed = ring();
    expect(parsed.capture.ring?.sessionTimeLimitInSeconds).toBe(86400);
    expect(parsed.properties).not.toHaveProperty('timeLimitInSeconds');
    // The echoed properties, sent again (a re-PUT), are the same capture.
    const again = parseCaptureBody({ properties: parsed.properties });
    expect(again.capture).toEqual(parsed.capture);
    expect(again.properties).toEqual(parsed.properties);
  });

  it('0 means the maximum, 18000 s, which is still earlier than the default day', () => {
    expect(ring({ timeLimitInSeconds: 0 }).capture.ring?.sessionTimeLimitInSeconds).toBe(18000);
  });

  it('a plain capture still echoes the default time limit', () => {
    const parsed = parseCaptureBody({
      properties: { target, storageLocation: { filePath: '/var/captures/one.cap' } },
    });
    expect(parsed.properties).toMatchObject({ timeLimitInSeconds: 18000 });
    expect(parsed.capture.limits.timeLimitInSeconds).toBe(18000);
    expect(parsed.capture.durationSeconds).toBe(18000);
    expect(parsed.capture.ring).toBeUndefined();
  });
});
