/**
 * One local capture file → one block blob, with nothing but a SAS for that blob (no account key
 * ever reaches the agent). The local file is the spool: while a capture runs its new bytes are
 * staged as blocks every second or so, a storage outage only delays them (retries with backoff,
 * the file keeps everything meanwhile), and the blob is committed once the file is final. The
 * agent's session upload (session-upload.ts) decides what happens to the file afterwards.
 */
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import type { Agent } from 'node:http';
import {
  AnonymousCredential,
  BlockBlobClient,
  newPipeline,
  RestError,
  type StoragePipelineOptions,
} from '@azure/storage-blob';
import type { ChannelError } from '../model/channel.js';
import { silentLog, type AgentLog } from './agent-log.js';
import { backoffDelay, sleep } from './backoff.js';
import { Pause } from './pause.js';

export interface BlobUploadOptions {
  /** The local file (the spool). */
  readonly file: string;
  /** The blob's URL without a query; safe to log. */
  readonly url: string;
  /** The SAS query for `url` (no leading `?`); a secret: never logged. */
  readonly sas: string;
  /** Makes the connections to storage (the agent's own-port pool, src/agent/own-ports.ts). */
  readonly agent?: Agent;
  /** When the SAS expires; the upload gives up then. */
  readonly expiresAt: Date;
  /** The file is still being written (a live capture): follow it until finish(). */
  readonly growing?: boolean;
  /** How often new bytes of a growing file are staged (default 1000 ms). */
  readonly pollIntervalMs?: number;
  /** The largest block (default 4 MiB); a growing file also stages whenever this much is new. */
  readonly blockSize?: number;
  /** Blocks staged at the same time (default 2); each in flight holds a block-sized buffer. */
  readonly stageConcurrency?: number;
  /** Retry waits, first and longest (default 500 ms and 10 s), with jitter. */
  readonly backoffMinMs?: number;
  readonly backoffMaxMs?: number;
  readonly log?: AgentLog;
  /** Log fields added to every line (the session id). */
  readonly logFields?: Readonly<Record<string, unknown>>;
  /**
   * The wall clock (default Date.now), read once at the start to place `expiresAt` on the
   * monotonic clock: a later jump of the host's clock neither gives up on a SAS storage still
   * takes, nor holds staging back.
   */
  readonly now?: () => number;
}

export type BlobUploadOutcome =
  /** Committed, and the blob's length is the file's. */
  | { readonly state: 'Completed'; readonly url: string; readonly size: number }
  /** Given up for good (SAS expired or refused, storage refused the request). */
  | { readonly state: 'Failed'; readonly error: ChannelError }
  /** close() came first: nothing is decided, the upload can be done again from the file. */
  | { readonly state: 'Abandoned' };

/** Starts uploading; see {@link BlobUpload}. */
export function startBlobUpload(options: BlobUploadOptions): BlobUpload {
  return new BlobUpload(options);
}

const DEFAULT_BLOCK_SIZE = 4 * 1024 * 1024;
/** Blocks in flight at once by default. */
const STAGE_CONCURRENCY = 2;
/** Azure allows 50,000 blocks in a blob; past this many, a growing file stages whole blocks only. */
const SMALL_BLOCKS_UNTIL = 40_000;
/** How often a growing file's size is looked at (staging still waits for pollIntervalMs). */
const WATCH_MS = 200;
/** Lost staged blocks are re-staged from the file this many times before giving up. */
const MAX_RESTAGES = 5;

interface StagedBlock {
  readonly id: string;
  readonly offset: number;
  readonly length: number;
}

/** The upload gives up: the reason goes into `packetCaptureError` as StorageFailed. */
class GiveUp extends Error {}

/** Staged blocks are gone (the service dropped them, or the blob is not what was committed). */
class BlocksLost extends Error {}

export class BlobUpload {
  readonly url: string;
  /** Settles when the upload is over; never rejects. */
  readonly outcome: Promise<BlobUploadOutcome>;
  readonly #o: BlobUploadOptions;
  readonly #client: BlockBlobClient;
  readonly #abort = new AbortController();
  readonly #blockSize: number;
  readonly #concurrency: number;
  /** Monotonic milliseconds: intervals and the deadline, immune to clock jumps. */
  readonly #now: () => number;
  /** When the SAS expires, on #now's clock. */
  readonly #deadline: number;
  readonly #canRead: boolean;
  #final: boolean;
  #rewrittenFrom: number | undefined;
  /** The pause between polls, which finish() and close() cut short. */
  readonly #pause = new Pause();
  #blocks: StagedBlock[] = [];
  #stagedEnd = 0;
  #nextBlock = 0;
  #lastStageAt = 0;
  #restages = 0;
  /** One per block in flight, reused. */
  readonly #buffers: Buffer[] = [];
  #closing: Promise<void> | undefined;

  constructor(options: BlobUploadOptions) {
    this.#o = options;
    this.url = options.url;
    this.#blockSize = Math.max(1, options.blockSize ?? DEFAULT_BLOCK_SIZE);
    this.#concurrency = Math.max(1, Math.floor(options.stageConcurrency ?? STAGE_CONCURRENCY));
    this.#now = () => performance.now();
    this.#deadline = this.#now() + (options.expiresAt.getTime() - (options.now ?? Date.now)());
    this.#final = !(options.growing ?? false);
    this.#canRead = sasPermissions(options.sas).includes('r');
    // The SDK's own retries are off (pipelineOptions): this class retries with its own backoff
    // and deadline, and notices a returning server within its longest wait.
    this.#client = new BlockBlobClient(
      `${options.url}?${options.sas}`,
      newPipeline(new AnonymousCredential(), pipelineOptions(options.agent)),
    );
    this.outcome = this.#run();
  }

  /** Bytes of the file staged so far (for logs and tests). */
  get stagedBytes(): number {
    return this.#stagedEnd;
  }

  /**
   * The file is final (the capture is over and the file repaired): commit it. `rewrittenFrom`:
   * the repair rewrote the file from there on (records left out were closed up), so blocks
   * staged from those bytes are staged again.
   */
  finish(rewrittenFrom?: number): void {
    this.#rewrittenFrom = rewrittenFrom;
    this.#final = true;
    this.#pause.wake();
  }

  /**
   * Stops now, wherever it is, with outcome Abandoned unless it was already over. Safe to call
   * twice.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#abort.abort(new Error('upload closed'));
      this.#pause.wake();
      await this.outcome;
    })();
    return this.#closing;
  }

  #log(level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields = {}): void {
    (this.#o.log ?? silentLog)(level, msg, { ...this.#o.logFields, url: this.url, ...fields });
  }

  async #run(): Promise<BlobUploadOutcome> {
    let handle: FileHandle;
    try {
      handle = await open(this.#o.file, 'r');
    } catch (err) {
      return failed(`cannot read ${this.#o.file} to upload it: ${describe(err)}`);
    }
    try {
      // A whole block or more came while the last round staged: the next round starts at once
      // instead of after a pause (a capture writing faster than the pause allows for).
      let behind = false;
      while (!this.#final) {
        if (!behind) await this.#pause.for(Math.min(WATCH_MS, this.#o.pollIntervalMs ?? 1000));
        behind = false;
        if (this.#abort.signal.aborted) return { state: 'Abandoned' };
        if (this.#final) break;
        const size = (await handle.stat()).size;
        const fresh = size - this.#stagedEnd;
        const due = this.#now() - this.#lastStageAt >= (this.#o.pollIntervalMs ?? 1000);
        if (fresh >= this.#blockSize) {
          await this.#retrying(() => this.#stage(handle, size, { wholeBlocksOnly: !due }));
          behind = (await handle.stat()).size - this.#stagedEnd >= this.#blockSize;
        } else if (fresh > 0 && due && this.#blocks.length < SMALL_BLOCKS_UNTIL) {
          await this.#retrying(() => this.#stage(handle, size, { wholeBlocksOnly: false }));
        }
      }
      const size = await this.#retrying(async () => {
        const final = (await handle.stat()).size;
        this.#cutTo(Math.min(final, this.#rewrittenFrom ?? final));
        await this.#stage(handle, final, { wholeBlocksOnly: false });
        await this.#client.commitBlockList(
          this.#blocks.map((b) => b.id),
          {
            blobHTTPHeaders: { blobContentType: 'application/vnd.tcpdump.pcap' },
            abortSignal: this.#abort.signal,
          },
        );
        await this.#verify(final);
        return final;
      });
      this.#log('info', 'blob committed', { size, blocks: this.#blocks.length });
      return { state: 'Completed', url: this.url, size };
    } catch (err) {
      if (this.#abort.signal.aborted) return { state: 'Abandoned' };
      const message = err instanceof GiveUp ? err.message : `uploading failed: ${describe(err)}`;
      this.#log('error', 'blob upload failed; the local file is kept', { error: message });
      return failed(message);
    } finally {
      await handle.close().catch(() => undefined);
    }
  }

  /**
   * Stages [stagedEnd, end) of the file, block by block (never the whole file in memory), up to
   * `stageConcurrency` blocks at a time. With wholeBlocksOnly, a last partial block waits for
   * the next round.
   */
  async #stage(handle: FileHandle, end: number, how: { wholeBlocksOnly: boolean }): Promise<void> {
    while (this.#stagedEnd < end) {
      // The next blocks, in file order: each is read into its own buffer, then all are staged
      // at once.
      const batch: { offset: number; bytes: Buffer }[] = [];
      let offset = this.#stagedEnd;
      while (batch.length < this.#concurrency && offset < end) {
        const length = Math.min(this.#blockSize, end - offset);
        if (how.wholeBlocksOnly && length < this.#blockSize) break;
        const buffer = (this.#buffers[batch.length] ??= Buffer.allocUnsafe(this.#blockSize));
        // Fewer bytes than asked only when the file was cut meanwhile; what was read is still
        // the file's content, and the end is settled when it is final.
        const got = await readAt(handle, buffer, length, offset);
        if (got === 0) break;
        batch.push({ offset, bytes: buffer.subarray(0, got) });
        offset += got;
        if (got < length) break;
      }
      if (batch.length === 0) return;
      const staged = await Promise.allSettled(
        batch.map(async ({ bytes }) => {
          const id = blockId(this.#nextBlock++);
          // The service checks each block against its MD5, so the committed blob is exactly
          // the bytes read here.
          await this.#client.stageBlock(id, bytes, bytes.length, {
            transactionalContentMD5: createHash('md5').update(bytes).digest(),
            abortSignal: this.#abort.signal,
          });
          return id;
        }),
      );
      // The blocks up to the first failure count; a failed one and those after it are staged
      // again (under new ids) on the next attempt.
      for (const [i, result] of staged.entries()) {
        if (result.status === 'rejected') throw result.reason;
        const { offset: at, bytes } = batch[i]!;
        this.#blocks.push({ id: result.value, offset: at, length: bytes.length });
        this.#stagedEnd = at + bytes.length;
        this.#lastStageAt = this.#now();
      }
    }
  }

  /**
   * The final file may be shorter than what was staged (the capture engine cuts it back to the
   * last whole packet and the byte limit): blocks beyond the end are dropped, and the one across
   * it is dropped too, so that #stage stages its remaining part again under a new id.
   */
  #cutTo(size: number): void {
    const keep = this.#blocks.filter((b) => b.offset + b.length <= size);
    if (keep.length === this.#blocks.length) return;
    this.#blocks = keep;
    const last = keep.at(-1);
    this.#stagedEnd = last === undefined ? 0 : last.offset + last.length;
  }

  /** The committed blob must be as long as the file. */
  async #verify(size: number): Promise<void> {
    const staged = this.#blocks.reduce((sum, b) => sum + b.length, 0);
    if (staged !== size) throw new BlocksLost(`staged ${staged} bytes for a ${size}-byte file`);
    // A create+write SAS cannot read the blob's properties. Then the commit itself is the
    // check: the service took exactly the listed blocks, each verified against its MD5, and
    // their lengths add up to the file's.
    if (!this.#canRead) return;
    const properties = await this.#client.getProperties({ abortSignal: this.#abort.signal });
    if (properties.contentLength !== size) {
      throw new BlocksLost(`the blob is ${properties.contentLength} bytes, the file ${size}`);
    }
  }

  /** Runs `step` until it succeeds, waiting out what storage outages and network errors. */
  async #retrying<T>(step: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const left = this.#deadline - this.#now();
      if (left <= 0) {
        throw new GiveUp(
          `the upload SAS expired at ${this.#o.expiresAt.toISOString()} before ${this.url} was committed`,
        );
      }
      try {
        return await step();
      } catch (err) {
        if (this.#abort.signal.aborted) throw err;
        const kind = classify(err);
        if (kind === 'fatal') {
          throw new GiveUp(`storage refused the upload of ${this.url}: ${describe(err)}`);
        }
        if (kind === 'blocks-lost') {
          if (++this.#restages > MAX_RESTAGES) {
            throw new GiveUp(`cannot commit ${this.url}: ${describe(err)}`);
          }
          // Everything is staged again from the local file, which still holds it all.
          this.#log('warn', 'staged blocks lost; staging the whole file again', {
            error: describe(err),
          });
          this.#blocks = [];
          this.#stagedEnd = 0;
          continue;
        }
        const delay = Math.min(
          backoffDelay(attempt, this.#o.backoffMinMs ?? 500, this.#o.backoffMaxMs ?? 10_000),
          left,
        );
        this.#log(attempt === 0 ? 'warn' : 'debug', 'blob storage unavailable; retrying', {
          attempt: attempt + 1,
          inMs: delay,
          error: describe(err),
        });
        await sleep(delay, this.#abort.signal);
      }
    }
  }
}

/**
 * The SDK's own retries are off: BlobUpload retries with its own backoff and deadline. `agent`
 * is not in StoragePipelineOptions' type, but the pipeline hands its options to core-rest-
 * pipeline's createPipelineFromOptions, whose agentPolicy uses it for every request
 * (blob-upload.test.ts checks that the connections come from it).
 */
function pipelineOptions(agent: Agent | undefined): StoragePipelineOptions {
  const options: StoragePipelineOptions & { agent?: Agent } = {
    retryOptions: { maxTries: 1, tryTimeoutInMs: 120_000 },
    ...(agent === undefined ? {} : { agent }),
  };
  return options;
}

function failed(message: string): BlobUploadOutcome {
  return { state: 'Failed', error: { code: 'StorageFailed', message: message.slice(0, 4096) } };
}

/**
 * transient: the network, a timeout, throttling, a 5xx — wait and try again. blocks-lost: stage
 * everything again. fatal: 403 (the SAS is refused: expired, revoked, wrong permissions) and
 * every other 4xx, which a retry would only repeat.
 */
function classify(err: unknown): 'transient' | 'blocks-lost' | 'fatal' {
  if (err instanceof BlocksLost) return 'blocks-lost';
  if (err instanceof RestError) {
    const status = err.statusCode;
    if (status === undefined) return 'transient';
    const code = storageCode(err);
    if (status === 400 && (code === 'InvalidBlockList' || code === 'InvalidBlobOrBlock')) {
      return 'blocks-lost';
    }
    if (status === 400 && code === 'Md5Mismatch') return 'transient';
    if (status === 408 || status === 429 || status >= 500) return 'transient';
    return 'fatal';
  }
  // A request the SDK timed out.
  if (err instanceof Error && err.name === 'AbortError') return 'transient';
  // The local file cannot be read: retrying will not help.
  return 'fatal';
}

function storageCode(err: RestError): string | undefined {
  const details = err.details as { errorCode?: unknown } | undefined;
  return typeof details?.errorCode === 'string' ? details.errorCode : err.code;
}

/** A short description of an error, with any SAS signature taken out. */
function describe(err: unknown): string {
  let text: string;
  if (err instanceof RestError) {
    const code = storageCode(err);
    const first = err.message.split('\n')[0] ?? '';
    text =
      err.statusCode === undefined
        ? `${code ?? 'network error'}: ${first}`
        : `HTTP ${err.statusCode}${code === undefined ? '' : ` ${code}`}: ${first}`;
  } else {
    text = err instanceof Error ? err.message : String(err);
  }
  return text.replace(/([?&]sig=)[^&\s]*/gi, '$1REDACTED').slice(0, 1000);
}

/** The `sp` (permissions) of a SAS query. */
function sasPermissions(sas: string): string {
  return new URLSearchParams(sas).get('sp') ?? '';
}

/** Block ids must all have the same length within a blob. */
function blockId(n: number): string {
  return Buffer.from(`wirewatch-${String(n).padStart(8, '0')}`).toString('base64');
}

/** Reads up to `length` bytes at `position` into `buffer`; fewer only at the end of the file. */
async function readAt(
  handle: FileHandle,
  buffer: Buffer,
  length: number,
  position: number,
): Promise<number> {
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await handle.read(buffer, filled, length - filled, position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return filled;
}
