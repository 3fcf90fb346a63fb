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
  /** Rejects with the output's error if it failed; undefined while it is healthy. */
  failure(): Error | undefined;
  /** Ends the output and resolves when it has flushed (`finish`). Safe to call more than once. */
  close(): Promise<void>;
}

const resolved = Promise.resolve();

/**
 * Takes over `output`: an error of it is caught and returned by the next `write` or `close`.
 *
 * @param name - names the writer in errors ("the pcap output closed before it drained").
 */
export function createOutputSink(output: Writable, name: string): OutputSink {
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

  return {
    get bytesWritten() {
      return bytesWritten;
    },
    failure: () => (failure === undefined ? undefined : toError(failure, name)),
    write(buf) {
      if (failure !== undefined) return Promise.reject(toError(failure, name));
      if (closing !== undefined) return Promise.reject(new Error(`${name} write after close`));
      const hasRoom = output.write(buf);
      bytesWritten += buf.length;
      return hasRoom ? resolved : waitForDrain();
    },
    close() {
      closing ??= (async () => {
        if (failure !== undefined) throw toError(failure, name);
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
