/**
 * The agent's answers to the server's `streamStart` and `streamStop` (src/model/channel.ts): one
 * {@link LiveStream} per viewer, kept by the object the agent owns, so that a stop finds its
 * stream, and a disconnect or the agent's close ends them all.
 */
import path from 'node:path';
import { isUnder } from '../capture/capture-path.js';
import type { Clock } from '../capture/runner.js';
import type { AgentMessage, ChannelError, ServerMessage } from '../model/channel.js';
import { WirewatchError } from '../model/errors.js';
import type { AgentLog } from './agent-log.js';
import type { JournalEntry } from './journal.js';
import { startLiveStream, type LiveStream, type StreamSource } from './live-stream.js';

/** A running session as a stream needs it. */
export interface StreamedSession {
  /** The session's journal entry now (its capture path appears once the capture is prepared). */
  readonly entry: () => JournalEntry | undefined;
  /** Settles once the capture has ended and its files are final. */
  readonly finished: Promise<unknown>;
  /**
   * Holds the capture's output flushed for a live viewer (packets reach the file as they are
   * captured, not 4 KiB at a time) until the returned function is called.
   */
  readonly watch?: () => () => void;
}

export interface StreamRequestOptions {
  /** A session this agent runs now; undefined for one it does not know or that has ended. */
  readonly session: (sessionId: string) => StreamedSession | undefined;
  /** Every capture file lies under it; nothing else is streamed. */
  readonly captureRoot: string;
  readonly send: (message: AgentMessage) => void;
  readonly sendBinary: (frame: Buffer) => Promise<boolean>;
  /** Subscribes to the channel's disconnection; returns the unsubscribe function. */
  readonly onDisconnect: (listener: () => void) => () => void;
  readonly log: AgentLog;
  /** The streams' timers and clock (default: the system's). */
  readonly clock?: Clock;
}

type StreamRequest = Extract<ServerMessage, { type: 'streamStart' | 'streamStop' }>;

/**
 * The live streams of this agent's channel: a `streamStart` starts one (and returns at once), a
 * `streamStop` ends it; a disconnect ends them all without a word, and so does {@link close}.
 */
export class StreamRequests {
  readonly #o: StreamRequestOptions;
  /** By stream id, so a stop finds its stream. */
  readonly #streams = new Map<string, LiveStream>();
  readonly #unsubscribe: () => void;

  constructor(options: StreamRequestOptions) {
    this.#o = options;
    this.#unsubscribe = options.onDisconnect(() => this.#abandonAll());
  }

  /** The streams running now. */
  get size(): number {
    return this.#streams.size;
  }

  /** Handles a `streamStart` (starts the stream; returns at once) or a `streamStop`. */
  handle(message: StreamRequest): void {
    const options = this.#o;
    if (message.type === 'streamStop') {
      this.#streams.get(message.streamId)?.stop();
      return;
    }
    const { streamId, sessionId } = message;
    if (this.#streams.has(streamId)) return;
    const refuse = (error: ChannelError) => {
      options.log('info', 'live stream refused', { streamId, sessionId, error });
      options.send({ type: 'streamEnd', streamId, packets: 0, dropped: 0, error });
    };
    const session = options.session(sessionId);
    if (session === undefined) {
      refuse({
        code: 'CaptureNotRunning',
        message: `session ${sessionId} is not running on this agent`,
      });
      return;
    }
    const root = path.resolve(options.captureRoot);
    const own = this.#streams;
    const unwatch = session.watch?.();
    own.set(
      streamId,
      startLiveStream({
        streamId,
        source: () => sourceOf(session.entry(), root),
        captureRoot: root,
        captureEnded: session.finished,
        send: options.send,
        sendBinary: options.sendBinary,
        log: options.log,
        onClosed: () => {
          own.delete(streamId);
          unwatch?.();
        },
        ...(options.clock === undefined ? {} : { clock: options.clock }),
      }),
    );
    options.log('info', 'live stream started', { streamId, sessionId });
  }

  /** Ends every stream without a word and stops listening; safe to call twice. */
  close(): void {
    this.#unsubscribe();
    this.#abandonAll();
  }

  #abandonAll(): void {
    for (const stream of [...this.#streams.values()]) stream.abandon();
  }
}

/** Where a session's capture is written, if it is known and lies under the capture root. */
function sourceOf(entry: JournalEntry | undefined, root: string): StreamSource | undefined {
  const capturePath = entry?.capturePath;
  if (entry === undefined || capturePath === undefined) return undefined;
  const resolved = path.resolve(capturePath);
  if (!isUnder(root, resolved)) {
    throw new WirewatchError('InvalidCapturePath', `${capturePath} is not under the capture root`);
  }
  if (entry.assignment.continuousCapture) return { kind: 'ring', stem: resolved };
  return { kind: 'file', path: resolved, maxBytes: entry.assignment.totalBytesPerSession };
}
