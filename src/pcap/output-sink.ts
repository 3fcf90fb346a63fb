/**
 * Writing encoded bytes to a Writable with its backpressure respected: the part the pcap and
 * pcapng writers share.
 */
import { finished } from 'node:stream/promises';
import type { Writable } from 'node:stream';

/** A Writable seen as a sink of buffers; see {@link createOutputSink}. */
export interface OutputSink {
  /** Bytes handed to the output so far. */
  readonly bytesWritten: number;
  /**
   * Writes `buf`. Resolves at once while the output has room and otherwise when it drains, so
   * awaiting each write never buffers more than the output's highWaterMark.
   *
   * @throws (rejects) after {@link close}, or with the output's error once it has failed.
   */
  write(buf: Buffer): Promise<void>;
  /**
   * Writes `length` bytes that `encode` puts into `target` at `offset`: into the batch when
   * the sink batches (see {@link OutputSinkOptions.batchBytes}), else into a buffer of their
   * own. Resolves as {@link write} does.
   */
  writeWith(length: number, encode: (target: Buffer, offset: number) => void): Promise<void>;
  /**
   * {@link writeWith} for a hot loop: undefined (no promise at all) while the output has room,
   * else what {@link writeWith} would have returned. `encode` may be one function for every
   * write, reading what to encode from its own state.
   */
  writeInPlace(
    length: number,
    encode: (target: Buffer, offset: number) => void,
  ): Promise<void> | undefined;
  /** Hands the batch to the output (a sink that does not batch has none). */
  flush(): Promise<void>;
  /** Rejects with the output's error if it failed; undefined while it is healthy. */
  failure(): Error | undefined;
  /** Ends the output and resolves when it has flushed (`finish`). Safe to call more than once. */
  close(): Promise<void>;
}

const resolved = Promise.resolve();
/** A batching sink goes on while its output holds fewer bytes than this many batches. */
const BATCHES_IN_FLIGHT = 4;

/** Options of {@link createOutputSink}. */
export interface OutputSinkOptions {
  /**
   * Gathers writes into buffers of this many bytes and hands the output one write per batch:
   * far fewer writes (and system calls) for small packets, at the price of holding bytes until
   * the batch fills or {@link OutputSink.flush}. Default 0: every write goes out at once.
   * A batching sink waits for the output to drain only once it holds 4 batches (or its
   * highWaterMark, if that is more), so the output writes one batch while the next is gathered.
   */
  readonly batchBytes?: number;
}

/**
 * Takes over `output`: an error of it is caught and returned by the next `write` or `close`.
 *
 * @param name - names the writer in errors ("the pcap output closed before it drained").
 */
export function createOutputSink(
  output: Writable,
  name: string,
  options: OutputSinkOptions = {},
): OutputSink {
  const batchBytes = options.batchBytes ?? 0;
  // A batch is far beyond a stream's default highWaterMark (16 KiB), so output.write is false
  // for every one; waiting for each to drain would leave the merge idle while the output writes.
  const maxBuffered = BATCHES_IN_FLIGHT * batchBytes;
  let batch: Buffer | undefined;
  let fill = 0;
  let failure: unknown;
  let closing: Promise<void> | undefined;
  let draining: Promise<void> | undefined;
  let bytesWritten = 0;

  output.on('error', (error) => {
    failure ??= error;
  });

  function waitForDrain(): Promise<void> {
    draining ??= new Promise<void>((resolve, reject) => {
      const settle = (error?: unknown): void => {
        output.off('drain', onDrain);
        output.off('error', onError);
        output.off('close', onClose);
        draining = undefined;
        if (error === undefined) resolve();
        else reject(toError(error, name));
      };
      const onDrain = (): void => settle();
      const onError = (error: unknown): void => settle(error);
      const onClose = (): void =>
        settle(failure ?? new Error(`the ${name} output closed before it drained`));
      output.on('drain', onDrain);
      output.on('error', onError);
      output.on('close', onClose);
    });
    return draining;
  }

  /** Hands `buf` to the output; undefined while it has room, else its drain. */
  function send(buf: Buffer): Promise<void> | undefined {
    if (failure !== undefined) return Promise.reject(toError(failure, name));
    if (output.write(buf) || output.writableLength <= maxBuffered) return undefined;
    return waitForDrain();
  }

  function flushBatch(): Promise<void> | undefined {
    if (batch === undefined || fill === 0) return undefined;
    const full = batch.subarray(0, fill);
    batch = undefined; // the output holds on to it
    fill = 0;
    return send(full);
  }

  function write(buf: Buffer): Promise<void> | undefined {
    if (closing !== undefined) return Promise.reject(new Error(`${name} write after close`));
    // Both go to the output at once, in order; only their drain is waited for.
    const flushed = flushBatch();
    bytesWritten += buf.length;
    const sent = send(buf);
    if (flushed === undefined) return sent;
    return Promise.all([flushed, sent]).then(() => undefined);
  }

  function writeInPlace(
    length: number,
    encode: (target: Buffer, offset: number) => void,
  ): Promise<void> | undefined {
    if (closing !== undefined) return Promise.reject(new Error(`${name} write after close`));
    if (failure !== undefined) return Promise.reject(toError(failure, name));
    if (length > batchBytes) {
      const buf = Buffer.allocUnsafe(length);
      encode(buf, 0);
      return write(buf);
    }
    const flushed = batch !== undefined && fill + length > batchBytes ? flushBatch() : undefined;
    batch ??= Buffer.allocUnsafe(batchBytes);
    encode(batch, fill);
    fill += length;
    bytesWritten += length;
    return flushed;
  }

  return {
    get bytesWritten() {
      return bytesWritten;
    },
    failure: () => (failure === undefined ? undefined : toError(failure, name)),
    write: (buf) => write(buf) ?? resolved,
    writeWith: (length, encode) => writeInPlace(length, encode) ?? resolved,
    writeInPlace,
    flush: () => flushBatch() ?? resolved,
    close() {
      closing ??= (async () => {
        if (failure !== undefined) throw toError(failure, name);
        await flushBatch();
        output.end();
        await finished(output, { readable: false });
      })();
      return closing;
    },
  };
}

/** `error` if it is an Error, else an Error that carries it. */
export function toError(error: unknown, name = 'pcap'): Error {
  return error instanceof Error ? error : new Error(`the ${name} output failed`, { cause: error });
}
