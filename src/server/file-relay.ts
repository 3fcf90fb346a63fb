/**
 * Reading capture files that only exist on an agent's host, through its channel (src/model/
 * channel.ts: `readFile` out; binary frames of the request id and data, then `readFileEnd`, in).
 *
 * Back-pressure: one WebSocket carries every download of an agent, and its reading cannot be
 * paused for one of them. So a download never asks the agent for the whole file: it asks for
 * windows of `windowBytes` (at most two in flight) and asks for the next only while the
 * consumer keeps up. A slow HTTP client thus holds at most about three windows of its file in
 * the server's memory, and an agent that sends more than it was asked for fails the download.
 *
 * Live streams (`streamStart` out; binary frames of the stream id and data, `streamStats` and
 * `streamEnd` in) share the same routing: every id the server gave an agent, a read's or a
 * stream's, is one entry in one map, so a frame finds its consumer whichever it is, and a
 * disconnect fails both alike. What a stream does with a slow viewer is its route's business
 * (src/server/routes/capture-stream.ts).
 */
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import type { AgentMessage, ServerMessage } from '../model/channel.js';
import { BINARY_FRAME_ID_LENGTH } from '../model/channel.js';
import { WirewatchError } from '../model/errors.js';

/** Bytes of the ASCII request id that starts every binary frame. */

type ReadFileEnd = Extract<AgentMessage, { type: 'readFileEnd' }>;
type StreamStats = Extract<AgentMessage, { type: 'streamStats' }>;
type StreamEnd = Extract<AgentMessage, { type: 'streamEnd' }>;

export interface FileRelayOptions {
  /** Sends to an agent; false when it is not connected. */
  readonly send: (vmId: string, message: ServerMessage) => boolean;
  /** Bytes asked of the agent per `readFile` (default 1 MiB). */
  readonly windowBytes?: number;
  /** Silence from the agent, within a request, after which the request fails (default 30 s). */
  readonly idleTimeoutMs?: number;
}

/** A file of one of an agent's sessions. */
export interface AgentFileRef {
  readonly sessionId: string;
  /** The path on the agent's host, as the agent reported it. */
  readonly path: string;
}

export interface OpenAgentFileOptions extends AgentFileRef {
  readonly offset: number;
  /** Bytes to read; absent = to the end of the file as it is when the first answer comes. */
  readonly length?: number;
  /** Overrides the relay's window for this stream (a merge of many files uses smaller ones). */
  readonly windowBytes?: number;
}

interface Pending {
  readonly kind: 'read';
  readonly vmId: string;
  readonly onData: (data: Buffer) => void;
  readonly onEnd: (end: ReadFileEnd) => void;
  readonly onError: (error: WirewatchError) => void;
  timer: NodeJS.Timeout;
}

/** Where a live stream's frames and messages go. Exactly one of onEnd and onError is called. */
export interface StreamHandlers {
  /** The data of one binary frame: the pcap header first, then whole records. */
  readonly onData: (data: Buffer) => void;
  readonly onStats: (stats: StreamStats) => void;
  /** The agent ended the stream (the capture ended, or it could not stream). */
  readonly onEnd: (end: StreamEnd) => void;
  /** The agent went away, or sent nothing for the idle timeout. */
  readonly onError: (error: WirewatchError) => void;
}

/** A live stream an agent runs for the server. */
export interface AgentStream {
  readonly streamId: string;
  /** Tells the agent to stop (if the stream still runs) and forgets it; no handler is called. */
  stop(): void;
}

interface OpenStream extends StreamHandlers {
  readonly kind: 'stream';
  readonly vmId: string;
  timer: NodeJS.Timeout;
}

/** At most this many windows of one stream are asked for at a time. */
const WINDOWS_IN_FLIGHT = 2;

/**
 * The server's side of agent file reads and live streams. The agent hub feeds it every binary
 * frame, `readFileEnd`, `streamStats` and `streamEnd`, and tells it when an agent goes away;
 * download and stream routes go through it.
 */
export class FileRelay {
  readonly #send: FileRelayOptions['send'];
  readonly #windowBytes: number;
  readonly #idleMs: number;
  /** Every id given to an agent and not yet answered in full: reads and streams. */
  readonly #pending = new Map<string, Pending | OpenStream>();

  constructor(options: FileRelayOptions) {
    this.#send = options.send;
    this.#windowBytes = options.windowBytes ?? 1024 * 1024;
    this.#idleMs = options.idleTimeoutMs ?? 30_000;
  }

  /** Reads and streams in flight (for tests and metrics). */
  get pendingCount(): number {
    return this.#pending.size;
  }

  /**
   * The file's size now (a `readFile` of zero bytes).
   *
   * @throws WirewatchError `AgentNotConnected` (the agent is not connected or goes away),
   *   `CaptureFileGone` (nothing at the path), `CaptureFileUnavailable` (anything else).
   */
  size(vmId: string, ref: AgentFileRef): Promise<number> {
    return new Promise((resolve, reject) => {
      this.request(
        vmId,
        { ...ref, offset: 0, length: 0 },
        {
          onData: () => undefined,
          onEnd: (end) => {
            if (end.error === undefined && end.size !== undefined) resolve(end.size);
            else reject(agentError(ref, end.error));
          },
          onError: reject,
        },
      );
    });
  }

  /**
   * Streams bytes of the file. The stream fails with the errors of {@link size}, and with
   * `CaptureFileUnavailable` when the file turns out shorter than asked for (it changed).
   * Destroying the stream cancels what is still asked of the agent.
   */
  open(vmId: string, options: OpenAgentFileOptions): Readable {
    return new AgentFileStream(this, vmId, options, options.windowBytes ?? this.#windowBytes);
  }

  /** A binary frame from an agent: the request (or stream) id, then data. */
  data(vmId: string, frame: Buffer): void {
    if (frame.length < BINARY_FRAME_ID_LENGTH) return;
    const pending = this.#pending.get(frame.toString('latin1', 0, BINARY_FRAME_ID_LENGTH));
    // Frames of requests already cancelled, or of another agent's requests, are dropped.
    if (pending?.vmId !== vmId) return;
    pending.timer.refresh();
    pending.onData(frame.subarray(BINARY_FRAME_ID_LENGTH));
  }

  /** A `readFileEnd` from an agent. */
  end(vmId: string, message: ReadFileEnd): void {
    const pending = this.#pending.get(message.requestId);
    if (pending?.kind !== 'read' || pending.vmId !== vmId) return;
    this.#forget(message.requestId);
    pending.onEnd(message);
  }

  /** A `streamStats` or `streamEnd` from an agent. */
  streamMessage(vmId: string, message: StreamStats | StreamEnd): void {
    const stream = this.#pending.get(message.streamId);
    // Messages of streams already stopped, or of another agent's streams, are dropped.
    if (stream?.kind !== 'stream' || stream.vmId !== vmId) return;
    if (message.type === 'streamStats') {
      stream.timer.refresh();
      stream.onStats(message);
      return;
    }
    this.#forget(message.streamId);
    stream.onEnd(message);
  }

  /**
   * Asks the agent to stream a running session (`streamStart`). Returns the stream, or
   * undefined after calling onError because the agent is not connected.
   */
  openStream(vmId: string, sessionId: string, handlers: StreamHandlers): AgentStream | undefined {
    const streamId = randomUUID();
    const timer = setTimeout(() => {
      if (!this.#pending.has(streamId)) return;
      this.#forget(streamId);
      this.#send(vmId, { type: 'streamStop', streamId });
      handlers.onError(
        new WirewatchError(
          'AgentNotConnected',
          `The agent sent nothing for the stream within ${Math.round(this.#idleMs / 1000)} s`,
        ),
      );
    }, this.#idleMs);
    timer.unref();
    this.#pending.set(streamId, { kind: 'stream', vmId, timer, ...handlers });
    if (!this.#send(vmId, { type: 'streamStart', streamId, sessionId })) {
      this.#forget(streamId);
      handlers.onError(
        new WirewatchError(
          'AgentNotConnected',
          'The agent of the VM that runs the capture is not connected; retry when it is',
        ),
      );
      return undefined;
    }
    return {
      streamId,
      stop: () => {
        if (this.#pending.get(streamId)?.kind !== 'stream') return;
        this.#forget(streamId);
        this.#send(vmId, { type: 'streamStop', streamId });
      },
    };
  }

  /** The agent's channel closed (or was replaced): its requests and streams get no answer. */
  disconnected(vmId: string): void {
    for (const [id, pending] of [...this.#pending]) {
      if (pending.vmId !== vmId) continue;
      this.#forget(id);
      pending.onError(
        new WirewatchError(
          'AgentNotConnected',
          pending.kind === 'read'
            ? 'The agent holding the capture file disconnected before the file was read'
            : 'The agent of the VM that runs the capture disconnected',
        ),
      );
    }
  }

  /** Fails every request (server shutdown). */
  close(): void {
    for (const vmId of new Set([...this.#pending.values()].map((p) => p.vmId))) {
      this.disconnected(vmId);
    }
  }

  /**
   * Sends one `readFile` and routes its answer to the handlers (exactly one of onEnd and
   * onError is called). Returns the request id, or undefined after calling onError because the
   * agent is not connected.
   */
  request(
    vmId: string,
    read: AgentFileRef & { offset: number; length?: number },
    handlers: Pick<Pending, 'onData' | 'onEnd' | 'onError'>,
  ): string | undefined {
    const requestId = randomUUID();
    const timer = setTimeout(() => {
      if (!this.#pending.has(requestId)) return;
      this.cancel(requestId);
      handlers.onError(
        unavailable(read, `the agent did not answer within ${Math.round(this.#idleMs / 1000)} s`),
      );
    }, this.#idleMs);
    timer.unref();
    this.#pending.set(requestId, { kind: 'read', vmId, timer, ...handlers });
    const sent = this.#send(vmId, {
      type: 'readFile',
      requestId,
      sessionId: read.sessionId,
      path: read.path,
      offset: read.offset,
      ...(read.length === undefined ? {} : { length: read.length }),
    });
    if (!sent) {
      this.#forget(requestId);
      handlers.onError(
        new WirewatchError(
          'AgentNotConnected',
          "The capture file is only on its VM, and the VM's agent is not connected; retry when it is",
        ),
      );
      return undefined;
    }
    return requestId;
  }

  /** Abandons a request: the agent is told to stop, and later frames of it are dropped. */
  cancel(requestId: string): void {
    const pending = this.#pending.get(requestId);
    if (pending?.kind !== 'read') return;
    this.#forget(requestId);
    this.#send(pending.vmId, { type: 'readFileCancel', requestId });
  }

  #forget(requestId: string): void {
    const pending = this.#pending.get(requestId);
    if (!pending) return;
    clearTimeout(pending.timer);
    this.#pending.delete(requestId);
  }
}

/** One `readFile` of a stream: a byte range of the file. */
interface Window {
  readonly offset: number;
  readonly length: number;
  readonly chunks: Buffer[];
  received: number;
  done: boolean;
  requestId: string | undefined;
}

/**
 * A file read in windows, in order. Data of a later window that arrives before an earlier one
 * is done waits in that window; a window is asked for only while the consumer wants more (from
 * a `_read` until a `push` is refused), so a consumer that does not read stops the requests.
 */
class AgentFileStream extends Readable {
  readonly #relay: FileRelay;
  readonly #vmId: string;
  readonly #ref: AgentFileRef;
  readonly #window: number;
  readonly #windows: Window[] = [];
  #next: number;
  /** Exclusive end; undefined until the first answer gives the file's size. */
  #end: number | undefined;
  readonly #lengthAsked: number | undefined;
  /** The consumer wants more: _read was called and no push has since been refused. */
  #wanted = false;
  #ended = false;

  constructor(relay: FileRelay, vmId: string, options: OpenAgentFileOptions, window: number) {
    super({ highWaterMark: window });
    this.#relay = relay;
    this.#vmId = vmId;
    this.#ref = { sessionId: options.sessionId, path: options.path };
    this.#window = window;
    this.#next = options.offset;
    this.#lengthAsked = options.length;
    this.#end = options.length === undefined ? undefined : options.offset + options.length;
  }

  override _read(): void {
    this.#wanted = true;
    this.#flush();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    for (const w of this.#windows.splice(0)) {
      if (!w.done && w.requestId !== undefined) this.#relay.cancel(w.requestId);
    }
    callback(error);
  }

  /** Hands over what is in order, ends when everything is, and asks for more if there is room. */
  #flush(): void {
    if (this.destroyed || this.#ended) return;
    for (let w = this.#windows[0]; w !== undefined; w = this.#windows[0]) {
      for (const chunk of w.chunks.splice(0)) this.#wanted = this.push(chunk);
      if (!w.done) break;
      this.#windows.shift();
    }
    if (this.#windows.length === 0 && this.#end !== undefined && this.#next >= this.#end) {
      this.#ended = true;
      this.push(null);
      return;
    }
    this.#ask();
  }

  #ask(): void {
    while (
      this.#windows.length < WINDOWS_IN_FLIGHT &&
      this.#wanted &&
      // Until the size is known, one window at a time: the file may be shorter than one.
      (this.#end === undefined ? this.#windows.length === 0 : this.#next < this.#end)
    ) {
      const length =
        this.#end === undefined ? this.#window : Math.min(this.#window, this.#end - this.#next);
      const w: Window = {
        offset: this.#next,
        length,
        chunks: [],
        received: 0,
        done: false,
        requestId: undefined,
      };
      this.#windows.push(w);
      this.#next += length;
      w.requestId = this.#relay.request(
        this.#vmId,
        { ...this.#ref, offset: w.offset, length },
        {
          onData: (data) => this.#onData(w, data),
          onEnd: (end) => this.#onEnd(w, end),
          onError: (error) => this.destroy(error),
        },
      );
      if (this.destroyed) return;
    }
  }

  #onData(w: Window, data: Buffer): void {
    w.received += data.length;
    if (w.received > w.length) {
      this.destroy(
        unavailable(this.#ref, `the agent sent more than the ${w.length} bytes asked for`),
      );
      return;
    }
    w.chunks.push(data);
    if (w === this.#windows[0]) this.#flush();
  }

  #onEnd(w: Window, end: ReadFileEnd): void {
    w.done = true;
    if (end.error !== undefined || end.size === undefined) {
      this.destroy(agentError(this.#ref, end.error));
      return;
    }
    if (this.#end === undefined) {
      this.#end = this.#lengthAsked === undefined ? end.size : w.offset + this.#lengthAsked;
    }
    // What this window should have held, given the size the agent reports now.
    const expected = Math.max(0, Math.min(w.offset + w.length, this.#end, end.size) - w.offset);
    if (w.received !== expected || end.size < Math.min(this.#end, w.offset + w.length)) {
      this.destroy(
        unavailable(
          this.#ref,
          `the file changed while it was read (it is now ${end.size} bytes; ${w.received} bytes came at offset ${w.offset})`,
        ),
      );
      return;
    }
    this.#flush();
  }
}

function unavailable(ref: AgentFileRef, why: string): WirewatchError {
  return new WirewatchError(
    'CaptureFileUnavailable',
    `Cannot read ${ref.path} from its VM: ${why}`,
    {
      target: ref.path,
    },
  );
}

/** The agent's error, as the download's: a missing file is gone, anything else unavailable. */
function agentError(
  ref: AgentFileRef,
  error: { code: string; message: string } | undefined,
): WirewatchError {
  if (error?.code === 'CaptureFileGone') {
    return new WirewatchError('CaptureFileGone', `${ref.path} no longer exists on its VM`, {
      target: ref.path,
    });
  }
  // The agent's message can hold host details; only its stable code goes to the client.
  return new WirewatchError(
    'CaptureFileUnavailable',
    `Cannot read ${ref.path} from its VM: the agent answered ${error?.code ?? 'without a size'}`,
    { target: ref.path, cause: error },
  );
}
