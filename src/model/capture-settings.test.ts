import { describe, expect, it } from 'vitest';
import {
  parseStorageAccountId,
  readCaptureProperties,
  resolveCapture,
  type CaptureProperties,
} from './capture-settings.js';

const target = '/subscriptions/x/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1';
const resolve = (p: Partial<CaptureProperties> = {}) =>
  resolveCapture({ target, storageLocation: { filePath: '/c/a.cap' }, ...p });

describe('resolveCapture: limits', () => {
  it("Azure's defaults; 0 means the maximum, except bytesToCapturePerPacket (whole packet)", () => {
    expect(resolve().limits).toEqual({
      bytesToCapturePerPacket: 0,
      totalBytesPerSession: 1073741824,
      timeLimitInSeconds: 18000,
    });
    expect(
      resolve({ bytesToCapturePerPacket: 0, totalBytesPerSession: 0, timeLimitInSeconds: 0 })
        .limits,
    ).toEqual({
      bytesToCapturePerPacket: 0,
      totalBytesPerSession: 4294967295,
      timeLimitInSeconds: 18000,
    });
    expect(resolve({ bytesToCapturePerPacket: 96, timeLimitInSeconds: 60 }).limits).toMatchObject({
      bytesToCapturePerPacket: 96,
      timeLimitInSeconds: 60,
    });
  });

  it('a single file: runs its time limit, 5 h by default, 0 means the maximum (5 h)', () => {
    expect(resolve().durationSeconds).toBe(18000);
    expect(resolve({ timeLimitInSeconds: 0 }).durationSeconds).toBe(18000);
    expect(resolve({ timeLimitInSeconds: 60 }).durationSeconds).toBe(60);
    expect(resolve({ timeLimitInSeconds: 60 }).ring).toBeUndefined();
  });

  it('a ring: the session limit (1 day by default, 0 means 7 days), within timeLimitInSeconds', () => {
    expect(resolve({ continuousCapture: true }).ring).toEqual({
      fileCount: 10,
      fileSizeInBytes: 104857600,
      sessionTimeLimitInSeconds: 86400,
    });
    const ring = (sessionTimeLimitInSeconds: number, timeLimitInSeconds?: number) =>
      resolve({
        continuousCapture: true,
        captureSettings: { sessionTimeLimitInSeconds, fileCount: 0 },
        ...(timeLimitInSeconds === undefined ? {} : { timeLimitInSeconds }),
      });
    expect(ring(0).durationSeconds).toBe(604800);
    expect(ring(600).durationSeconds).toBe(600);
    expect(ring(600, 60).durationSeconds).toBe(60);
    expect(ring(600, 60).ring?.sessionTimeLimitInSeconds).toBe(60);
    expect(ring(0, 0).durationSeconds).toBe(18000);
    expect(ring(600).ring?.fileCount).toBe(10000);
  });

  it('continuousCapture false or null is no ring', () => {
    expect(resolve({ continuousCapture: false }).ring).toBeUndefined();
    expect(resolve({ continuousCapture: null }).ring).toBeUndefined();
  });
});

describe('resolveCapture: the rest', () => {
  it("filters keep their fields, the protocol in Azure's spelling (Any when absent or empty)", () => {
    expect(
      resolve({
        filters: [{ protocol: 'tcp', localPort: '80' }, { remoteIPAddress: '10.0.0.1' }, {}],
      }).filters,
    ).toEqual([
      { protocol: 'TCP', localPort: '80' },
      { protocol: 'Any', remoteIPAddress: '10.0.0.1' },
      { protocol: 'Any' },
    ]);
    expect(resolve().filters).toEqual([]);
  });

  it('storage: the account, the blob, and the file asked for under the field that names it', () => {
    const storageId =
      '/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct';
    expect(
      resolve({ storageLocation: { storageId, storagePath: 'http://blob/x.cap' } }).storage,
    ).toEqual({
      account: { subscriptionId: 's1', resourceGroup: 'rg', name: 'acct' },
      blobUrl: 'http://blob/x.cap',
      localFile: undefined,
    });
    expect(resolve().storage.localFile).toEqual({
      path: '/c/a.cap',
      field: 'properties.storageLocation.filePath',
    });
    expect(
      resolve({ continuousCapture: false, storageLocation: { localPath: '/c/r.cap' } }).storage
        .localFile,
    ).toEqual({ path: '/c/r.cap', field: 'properties.storageLocation.localPath' });
  });

  it('target and includeOwnTraffic', () => {
    expect(resolve().target).toEqual({ type: 'AzureVM', id: target });
    expect(resolve().includeOwnTraffic).toBe(false);
    expect(resolve({ includeOwnTraffic: true }).includeOwnTraffic).toBe(true);
  });
});

describe('parseStorageAccountId', () => {
  it('parses an id in any letter case, and nothing else', () => {
    expect(
      parseStorageAccountId(
        '/SUBSCRIPTIONS/s/resourcegroups/rg/providers/microsoft.storage/storageaccounts/a/',
      ),
    ).toEqual({ subscriptionId: 's', resourceGroup: 'rg', name: 'a' });
    expect(parseStorageAccountId('/subscriptions/s/resourceGroups/rg')).toBeUndefined();
  });
});

describe('readCaptureProperties', () => {
  it('takes stored properties of the right shape and refuses others, naming the row', () => {
    const stored = { target, storageLocation: { filePath: '/c/a.cap' }, filters: [] };
    expect(readCaptureProperties(stored, 'session 1')).toEqual(stored);
    expect(() => readCaptureProperties({ target }, 'session 1')).toThrow(/session 1/);
    // storagePath is the server's blob URL, as long as the account's endpoint makes it.
    const long = { ...stored, storageLocation: { storagePath: `http://h/${'x'.repeat(3000)}` } };
    expect(readCaptureProperties(long, 'session 1')).toEqual(long);
    expect(() =>
      readCaptureProperties({ ...stored, timeLimitInSeconds: '60' }, 'session 1'),
    ).toThrow(/session 1/);
  });
});
