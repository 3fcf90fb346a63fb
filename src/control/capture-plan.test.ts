import { describe, expect, it } from 'vitest';
import { resolveCapture, type CaptureProperties } from '../model/capture-settings.js';
import { at } from '../../test/support/store-conformance/fixtures.js';
import { newSession, withStoragePath, withTimeLeft } from './capture-plan.js';

const plain: CaptureProperties = {
  target: '/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm',
  timeLimitInSeconds: 600,
  storageLocation: { filePath: '/var/captures/a.cap' },
};
const ring: CaptureProperties = {
  target: plain.target,
  continuousCapture: true,
  captureSettings: { fileCount: 3, fileSizeInBytes: 4096, sessionTimeLimitInSeconds: 7200 },
  storageLocation: { localPath: '/var/captures/r.cap' },
};

describe('withTimeLeft', () => {
  it('gives a plain capture the time left as its time limit', () => {
    expect(resolveCapture(withTimeLeft(plain, 42)).durationSeconds).toBe(42);
  });

  it('gives a ring the time left as its session limit, and as its time limit if it had one', () => {
    const left = withTimeLeft(ring, 42);
    expect(left.timeLimitInSeconds).toBeUndefined();
    expect(left.captureSettings).toEqual({
      fileCount: 3,
      fileSizeInBytes: 4096,
      sessionTimeLimitInSeconds: 42,
    });
    expect(resolveCapture(left).durationSeconds).toBe(42);
    const capped = withTimeLeft({ ...ring, timeLimitInSeconds: 3600 }, 42);
    expect(capped.timeLimitInSeconds).toBe(42);
    expect(resolveCapture(capped).durationSeconds).toBe(42);
  });
});

describe('newSession', () => {
  const fields = {
    subscriptionId: 's',
    resourceGroup: 'NetworkWatcherRG',
    watcherName: 'NW',
    name: 'pc/0',
    location: 'westeurope',
    vmId: 'vm',
    parentId: 'p',
    instanceId: '0',
  };

  it('is NotStarted with nothing recorded; its upload Pending only with a blob', () => {
    const local = newSession({ ...fields, properties: plain }, at(1));
    expect(local).toMatchObject({
      ...fields,
      status: 'NotStarted',
      files: [],
      progress: null,
      upload: null,
      createdAt: at(1),
      capture: resolveCapture(plain),
    });
    const blob = newSession(
      { ...fields, properties: withStoragePath(plain, 'http://blob/x.cap') },
      at(1),
    );
    expect(blob.upload).toEqual({ state: 'Pending', blobs: [], error: null });
    expect(blob.capture.storage.blobUrl).toBe('http://blob/x.cap');
  });
});
