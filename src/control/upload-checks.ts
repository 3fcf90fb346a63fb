import type { UploadReport } from '../model/channel.js';
import type { SessionRecord, VmRecord } from '../store/store.js';
import { blobNameOfUrl } from '../blob/storage-account.js';
import type { BlobGrants } from './blob-grants.js';
import type { ControlContext } from './control-context.js';
import type { CaptureOperations } from './operations.js';
import { matchReportedBlobs, type SessionBlob } from './session-files.js';
import { captureStorageAccount } from './storage-accounts.js';

export interface UploadChecksOptions {
  readonly grants: BlobGrants;
  readonly operations: CaptureOperations;
  /**
   * How long a Completed upload that storage could not confirm (it errored) waits before it is
   * checked again: minMs after the first failure, doubling with each, at most maxMs.
   */
  readonly backoff: { readonly minMs: number; readonly maxMs: number };
}

/** The upload outcome stored on a session. */
type SessionUpload = NonNullable<SessionRecord['upload']>;

/**
 * Agents' upload reports, checked against storage with the server's key before anything of them
 * is recorded; those storage could not confirm yet are retried with a backoff.
 */
export class UploadChecks {
  readonly #ctx: ControlContext;
  readonly #grants: BlobGrants;
  readonly #operations: CaptureOperations;
  readonly #backoff: UploadChecksOptions['backoff'];
  /**
   * Completed uploads storage could not confirm yet, by session id (see record): the latest
   * report, how many checks failed, and when the next one is due (control plane clock).
   */
  readonly #waiting = new Map<
    string,
    { vmId: string; report: UploadReport; failures: number; dueMs: number }
  >();
  /** Sessions whose upload is being checked against storage right now. */
  readonly #checking = new Set<string>();
  #retrying = false;

  constructor(ctx: ControlContext, options: UploadChecksOptions) {
    this.#ctx = ctx;
    this.#grants = options.grants;
    this.#operations = options.operations;
    this.#backoff = options.backoff;
  }

  /**
   * Records an agent's upload report. Nothing of it is taken on the agent's word: a Pending
   * report keeps no blobs; a Failed one keeps the agent's error and no blobs; a Completed one
   * becomes Completed only once every blob it names is one the server minted for this session
   * (see matchReportedBlobs) and storage, read with the server's key, holds it with the length
   * the agent reported — the URLs and lengths stored are the server's. Anything else is
   * Failed/StorageFailed. When storage cannot be asked right now the report waits (the session
   * stays Pending) and 'deferred' tells the caller not to acknowledge it: the check is retried by
   * retry, and the agent, unacknowledged, offers the report again when it reconnects.
   */
  async record(
    vm: VmRecord,
    session: SessionRecord,
    report: UploadReport,
    retry = false,
  ): Promise<'recorded' | 'deferred'> {
    const { store } = this.#ctx;
    if (!session.upload) return 'recorded';
    // A final outcome is never taken back: not by a late Pending (an old hello crossing
    // `uploaded`), and not by another Completed or Failed report. An agent resends its report
    // until it is acknowledged (every reconnect, every hello): once checked, it is only
    // acknowledged, never checked against storage again.
    if (session.upload.state !== 'Pending') return 'recorded';
    if (report.state === 'Pending') {
      await store.updateSession(session.id, {
        upload: { state: 'Pending', blobs: [], error: null },
      });
      return 'recorded';
    }
    if (report.state === 'Failed') {
      this.#waiting.delete(session.id);
      await store.updateSession(session.id, {
        upload: {
          state: 'Failed',
          blobs: [],
          error: report.error
            ? { code: report.error.code, message: report.error.message }
            : { code: 'StorageFailed', message: 'The upload to the storage account failed' },
        },
      });
      return 'recorded';
    }
    const waiting = this.#waiting.get(session.id);
    if ((waiting && !retry) || this.#checking.has(session.id)) {
      // A check of this session failed for storage and waits for its turn, or one is running:
      // the report (the agent's latest word) waits with it instead of asking storage now.
      this.#waiting.set(session.id, {
        vmId: vm.id,
        report,
        failures: waiting?.failures ?? 0,
        dueMs: waiting?.dueMs ?? this.#ctx.now().getTime(),
      });
      return 'deferred';
    }
    this.#checking.add(session.id);
    let checked: SessionUpload | 'unreachable';
    try {
      checked = await this.#checkCompleted(session, report);
    } finally {
      this.#checking.delete(session.id);
    }
    if (checked === 'unreachable') {
      const failures = (waiting?.failures ?? 0) + 1;
      const { minMs, maxMs } = this.#backoff;
      const delay = Math.min(maxMs, minMs * 2 ** Math.min(failures - 1, 30));
      // A report that arrived while this one was checked is the one checked next.
      const latest = this.#waiting.get(session.id)?.report ?? report;
      this.#waiting.set(session.id, {
        vmId: vm.id,
        report: latest,
        failures,
        dueMs: this.#ctx.now().getTime() + delay,
      });
      return 'deferred';
    }
    // A report that came in during the check stays queued: the retry pass acknowledges it.
    if (this.#waiting.get(session.id) === waiting) this.#waiting.delete(session.id);
    await store.updateSession(session.id, { upload: checked });
    return 'recorded';
  }

  /** A Completed report checked against the session's own blob names and storage. */
  async #checkCompleted(
    session: SessionRecord,
    report: UploadReport,
  ): Promise<SessionUpload | 'unreachable'> {
    const { store, log } = this.#ctx;
    const fail = (message: string) => ({
      state: 'Failed' as const,
      blobs: [],
      error: { code: 'StorageFailed', message },
    });
    const { blobUrl } = session.capture.storage;
    const account = await captureStorageAccount(this.#ctx, session);
    if (!account || !blobUrl) {
      return fail('the storage account is no longer registered');
    }
    const blobName = blobNameOfUrl(account.blobEndpoint, blobUrl);
    if (blobName === undefined) return fail('the capture has no blob of this storage account');
    const matched = matchReportedBlobs(report.blobs, {
      storagePath: blobUrl,
      blobName,
      continuous: session.capture.ring !== undefined,
    });
    if (matched.kind === 'foreign') {
      log('warn', "agent reported a blob that is not its session's; upload refused", {
        sessionId: session.id,
        url: matched.url.slice(0, 256),
      });
      return fail("the agent reported a blob that is not this capture's");
    }
    if (session.capture.ring !== undefined) {
      // Only files the server granted a SAS for can have been written: a number it never
      // granted fails the report before storage is asked anything.
      const granted = new Set(await store.listRingGrants(session.id));
      const stray = matched.blobs.find(
        (b) => b.fileIndex === undefined || !granted.has(b.fileIndex),
      );
      if (stray) {
        log('warn', 'agent reported a ring file it was never granted; upload refused', {
          sessionId: session.id,
          fileIndex: stray.fileIndex,
          reported: matched.blobs.length,
        });
        return fail(
          `the agent reported ring file ${stray.fileIndex}, which it was never granted a SAS for`,
        );
      }
    }
    const writer = this.#grants.writer(account);
    const blobs: { url: string; size: number }[] = [];
    const sizes = await mapLimited(matched.blobs, 8, async (blob: SessionBlob) => {
      try {
        return { blob, size: await writer.blobSize(blob.name) };
      } catch (err) {
        log('warn', 'could not check an uploaded blob; the check is retried', {
          sessionId: session.id,
          err: err instanceof Error ? err.message : String(err),
        });
        return undefined;
      }
    });
    for (const checked of sizes) {
      if (checked === undefined) return 'unreachable';
      const { blob, size } = checked;
      if (size !== blob.reportedSize) {
        return fail(
          `blob ${blob.name} holds ${size ?? 'nothing'} bytes, the agent uploaded ${blob.reportedSize}`,
        );
      }
      blobs.push({ url: blob.url, size });
    }
    return { state: 'Completed', blobs, error: null };
  }

  /**
   * Checks again the Completed uploads that storage could not confirm when they were reported;
   * each checked one is recorded and acknowledged to its agent. Returns how many were settled.
   */
  async retry(): Promise<number> {
    // One pass at a time: with storage down a pass can outlast the sweep interval.
    if (this.#retrying) return 0;
    this.#retrying = true;
    try {
      return await this.#retryDue();
    } finally {
      this.#retrying = false;
    }
  }

  async #retryDue(): Promise<number> {
    const { store, agents } = this.#ctx;
    let settled = 0;
    const now = this.#ctx.now().getTime();
    for (const [sessionId, { vmId, report, dueMs }] of [...this.#waiting]) {
      // Backing off: storage errored on this one not long ago.
      if (dueMs > now) continue;
      const session = await store.getSessionById(sessionId);
      const vm = session ? await store.getVmById(session.vmId) : undefined;
      if (!session || !vm || vm.id !== vmId) {
        this.#waiting.delete(sessionId);
        continue;
      }
      if ((await this.record(vm, session, report, true)) === 'deferred') continue;
      this.#waiting.delete(sessionId);
      settled += 1;
      agents.send(vmId, { type: 'ack', sessionId });
      await this.#operations.settle(sessionId);
    }
    return settled;
  }
}

/** Maps with at most `limit` calls in flight; results in input order. */
export async function mapLimited<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
