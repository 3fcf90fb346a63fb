import { MAX_UPLOAD_BLOBS } from '../model/channel.js';
import type { CaptureAssignment } from '../model/channel.js';
import { captureLimitBounds } from '../model/capture-limits.js';
import { WirewatchError } from '../model/errors.js';
import type { SessionRecord, StorageAccountRecord, VmRecord } from '../store/store.js';
import { captureBlobName, ringFileBlobUrl } from '../blob/blob-names.js';
import { blobNameOfUrl } from '../blob/storage-account.js';
import type { BlobWriter, ControlContext } from './control-context.js';
import { captureStorageAccount } from './storage-accounts.js';

export interface BlobGrantsOptions {
  /** Opens a storage account for minting SAS tokens (the server wires @azure/storage-blob). */
  readonly openStorageAccount: ((record: StorageAccountRecord) => BlobWriter) | undefined;
  /** How long past a session's deadline its SAS stays valid for uploads. */
  readonly uploadGraceMs: number;
}

/**
 * Write-only SAS grants for a session's blobs: the single blob of a capture (in its start) and
 * each ring file as its agent asks for it.
 */
export class BlobGrants {
  readonly #ctx: ControlContext;
  readonly #openStorageAccount: BlobGrantsOptions['openStorageAccount'];
  readonly #uploadGraceMs: number;
  /** Last blob-name time used per VM, so two captures of one VM never share a blob. */
  readonly #lastBlobTime = new Map<string, number>();

  constructor(ctx: ControlContext, options: BlobGrantsOptions) {
    this.#ctx = ctx;
    this.#openStorageAccount = options.openStorageAccount;
    this.#uploadGraceMs = options.uploadGraceMs;
  }

  /** The account's blob client; refused when this server has no blob storage support. */
  writer(account: StorageAccountRecord): BlobWriter {
    if (!this.#openStorageAccount) {
      throw new WirewatchError(
        'StorageAccountNotFound',
        'properties.storageLocation.storageId: this server has no blob storage support configured',
        { target: 'properties.storageLocation.storageId' },
      );
    }
    return this.#openStorageAccount(account);
  }

  /**
   * The URL of a new capture's blob on `vm` (a scale-set instance's under its scale set), named
   * after the creation time, unique per VM to the millisecond.
   */
  captureBlobUrl(account: StorageAccountRecord, vm: VmRecord, now: Date): string {
    const last = this.#lastBlobTime.get(vm.id) ?? 0;
    const t = Math.max(now.getTime(), last + 1);
    this.#lastBlobTime.set(vm.id, t);
    const blobName = captureBlobName({
      subscriptionId: vm.subscriptionId,
      resourceGroup: vm.resourceGroup,
      vmName: vm.name,
      ...(vm.scaleSet === null || vm.instanceId === null
        ? {}
        : { instance: { scaleSet: vm.scaleSet, instanceId: vm.instanceId } }),
      createdAt: new Date(t),
    });
    return this.writer(account).blobUrl(blobName);
  }

  /** The blob target of a session stored in a storage account, with a fresh SAS. */
  async target(session: SessionRecord): Promise<CaptureAssignment['blob']> {
    const { blobUrl, localFile } = session.capture.storage;
    const account = await captureStorageAccount(this.#ctx, session);
    if (!account || !blobUrl) return undefined;
    const writer = this.writer(account);
    const expiresAt = this.#sasExpiry(session);
    const blobName = blobNameOf(account, blobUrl);
    return {
      url: blobUrl,
      ...(session.capture.ring ? {} : { sas: writer.mintWriteSas(blobName, expiresAt) }),
      expiresAt: expiresAt.toISOString(),
      spoolOnly: localFile === undefined,
    };
  }

  /** The session's deadline (start, or now if not started, plus its duration) plus the grace. */
  #sasExpiry(session: SessionRecord): Date {
    const start = session.captureStartTime?.getTime() ?? this.#ctx.now().getTime();
    return new Date(start + session.capture.durationSeconds * 1000 + this.#uploadGraceMs);
  }

  /**
   * Answers a ring's `blobGrantRequest` with a SAS for that one file, and records the number:
   * an upload report is checked against storage only for numbers granted here. Refused (not
   * answered; logged) for a session that is no ring, whose upload has ended, or beyond the
   * bounds of ringGrantBounds.
   */
  async grantRingFile(vm: VmRecord, session: SessionRecord, fileIndex: number): Promise<void> {
    const { store, agents, log } = this.#ctx;
    if (!session.capture.ring || session.upload?.state !== 'Pending') {
      log('warn', 'agent asked for a ring file SAS its session cannot have; refused', {
        agentId: vm.id,
        sessionId: session.id,
        fileIndex,
      });
      return;
    }
    const { blobUrl } = session.capture.storage;
    const account = await captureStorageAccount(this.#ctx, session);
    if (!account || !blobUrl) return;
    const granted = await store.grantRingFile(session.id, fileIndex, ringGrantBounds(session));
    if (granted.kind === 'refused') {
      log('warn', 'agent asked for a ring file SAS beyond what its ring can need; refused', {
        agentId: vm.id,
        sessionId: session.id,
        fileIndex,
        highestGranted: granted.highest,
        granted: granted.count,
      });
      return;
    }
    const url = ringFileBlobUrl(blobUrl, fileIndex);
    const expiresAt = this.#sasExpiry(session);
    agents.send(vm.id, {
      type: 'blobGrant',
      sessionId: session.id,
      fileIndex,
      url,
      sas: this.writer(account).mintWriteSas(blobNameOf(account, url), expiresAt),
      expiresAt: expiresAt.toISOString(),
    });
  }
}

/** The blob name inside the capture container of a URL of this account. */
function blobNameOf(account: StorageAccountRecord, url: string): string {
  const name = blobNameOfUrl(account.blobEndpoint, url);
  if (name === undefined) {
    throw new Error(`blob URL ${url} is not in the capture container of ${account.blobEndpoint}`);
  }
  return name;
}

/**
 * How far a ring's SAS grants may go (see Store.grantRingFile). The agent asks for its files in
 * order, one at a time, each when it is finished: the next number is the highest granted plus
 * one (or one granted before, asked again). The window of the ring's fileCount leaves room for
 * an agent that lost a few files before asking (a ring keeps at most fileCount files, and a
 * restarted agent uploads those it still has); a number further ahead is no file of this ring
 * yet. Numbers keep growing over a long capture, so they are bounded relative to the highest
 * granted, not absolutely; how many may be granted at all is bounded by what one upload report
 * can list (MAX_UPLOAD_BLOBS).
 */
export function ringGrantBounds(session: SessionRecord): { window: number; maxGrants: number } {
  return {
    window: session.capture.ring?.fileCount ?? captureLimitBounds.fileCount.default,
    maxGrants: MAX_UPLOAD_BLOBS,
  };
}
