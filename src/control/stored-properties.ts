import type { SessionRecord } from '../store/store.js';

/**
 * Readers of a session's stored properties (the echoed create body). The properties are stored
 * untyped; these are the only places that look inside them.
 */

export interface StorageLocation {
  storageId?: string;
  storagePath?: string;
  filePath?: string;
  localPath?: string;
}

export function storageLocationOf(session: SessionRecord): StorageLocation {
  return (session.properties as { storageLocation?: StorageLocation }).storageLocation ?? {};
}

export function isContinuous(session: SessionRecord): boolean {
  return (session.properties as { continuousCapture?: boolean }).continuousCapture === true;
}

/** The capture's time limit in seconds, defaults and "0 means the maximum" applied. */
export function timeLimitOf(session: SessionRecord): number {
  const p = session.properties as {
    timeLimitInSeconds?: number;
    continuousCapture?: boolean;
    captureSettings?: { sessionTimeLimitInSeconds?: number };
  };
  if (p.continuousCapture === true) {
    const s = p.captureSettings?.sessionTimeLimitInSeconds ?? 86400;
    const t = p.timeLimitInSeconds;
    return Math.min(s === 0 ? 604800 : s, t === undefined ? Infinity : t === 0 ? 18000 : t);
  }
  const t = p.timeLimitInSeconds ?? 18000;
  return t === 0 ? 18000 : t;
}

/** A ring's fileCount as stored, when it is a usable count. */
export function ringFileCountOf(session: SessionRecord): number | undefined {
  const fileCount = (session.properties as { captureSettings?: { fileCount?: unknown } })
    .captureSettings?.fileCount;
  return typeof fileCount === 'number' && Number.isSafeInteger(fileCount) && fileCount > 0
    ? fileCount
    : undefined;
}
