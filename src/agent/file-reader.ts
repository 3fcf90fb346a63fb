/**
 * The agent's answers to the server's `readFile` (src/model/channel.ts): bytes of a capture file
 * sent back over the channel, for downloads of captures whose only copy is on this host.
 *
 * Only capture files are served: a path must be one of the files this agent wrote for that very
 * session (its journal while it knows the session, src/agent/written-files.ts afterwards; a
 * session it never ran has none), lie under the capture root or the spool folder (checked on the
 * file actually opened, so no symbolic link leads elsewhere) and be a regular file. Whether a
 * path is the session's is decided before anything is opened, so a refusal tells nothing of
 * what else lies under the capture root. Data goes
 * in binary frames of at most 256 KiB, each sent only once the previous one has been handed to
 * the operating system, so a download never floods the channel that also carries the captures'
 * control messages.
 */
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { isUnder, openCaptureFile } from '../capture/capture-path.js';
import { existingRingFiles } from '../capture/ring-buffer.js';
import type { AgentMessage, ChannelError, ServerMessage } from '../model/channel.js';
import { BINARY_FRAME_ID_LENGTH, toChannelError } from '../model/channel.js';
import { WirewatchError } from '../model/errors.js';
import type { AgentLog } from './agent-log.js';
import type { JournalEntry } from './journal.js';

/** Largest data part of one binary frame. */
export const MAX_CHUNK_BYTES = 256 * 1024;

type FileRequest = Extract<ServerMessage, { type: 'readFile' | 'readFileCancel' }>;

export interface FileReaderOptions {
  /** Folders whose files may be served: the capture root and the spool folder. */
  readonly roots: readonly string[];
  /**
   * The files this agent wrote for a session: from its journal entry ({@link sessionFiles})
   * while it knows the session, from its record of written files after; [] for a session it
   * never ran.
   */
  readonly files: (sessionId: string) => Promise<readonly string[]>;
  readonly send: (message: AgentMessage) => void;
  /** Sends one binary frame; resolves once it is written out, false when the channel is down. */
  readonly sendBinary: (frame: Buffer) => Promise<boolean>;
  readonly log: AgentLog;
}

/**
 * The file reads of this agent's channel: a `readFile` starts sending (and returns at once), a
 * `readFileCancel` ends its read; {@link close} ends them all.
 */
export class FileReader {
  readonly #o: FileReaderOptions;
  /** Reads in progress, by request id, so a cancel finds its read. */
  readonly #reads = new Map<string, AbortController>();

  constructor(options: FileReaderOptions) {
    this.#o = options;
  }

  /** The reads in progress now. */
  get size(): number {
    return this.#reads.size;
  }

  /** Handles a `readFile` (starts sending; returns at once) or a `readFileCancel`. */
  handle(message: FileRequest): void {
    const reads = this.#reads;
    if (message.type === 'readFileCancel') {
      reads.get(message.requestId)?.abort();
      return;
    }
    const abort = new AbortController();
    reads.set(message.requestId, abort);
    void serveRead(message, this.#o, abort.signal)
      .catch((err: unknown) => {
        this.#o.log('error', 'file read failed', { requestId: message.requestId, error: err });
      })
      .finally(() => reads.delete(message.requestId));
  }

  /** Ends every read in progress (each stops before its next frame); safe to call twice. */
  close(): void {
    for (const abort of this.#reads.values()) abort.abort();
  }
}

async function serveRead(
  request: Extract<FileRequest, { type: 'readFile' }>,
  o: FileReaderOptions,
  signal: AbortSignal,
): Promise<void> {
  const { requestId } = request;
  let file: FileHandle | undefined;
  try {
    file = await openSessionFile(request, o);
    const { size } = await file.stat();
    const start = Math.min(request.offset, size);
    const end = Math.min(size, request.length === undefined ? size : start + request.length);
    const id = Buffer.from(requestId, 'latin1');
    for (let position = start; position < end;) {
      if (signal.aborted) return;
      const frame = Buffer.allocUnsafe(
        BINARY_FRAME_ID_LENGTH + Math.min(MAX_CHUNK_BYTES, end - position),
      );
      id.copy(frame, 0);
      const { bytesRead } = await file.read(
        frame,
        BINARY_FRAME_ID_LENGTH,
        frame.length - BINARY_FRAME_ID_LENGTH,
        position,
      );
      // Shorter than its size said: cut meanwhile. The server sees fewer bytes than the size.
      if (bytesRead === 0) break;
      position += bytesRead;
      if (signal.aborted) return;
      if (!(await o.sendBinary(frame.subarray(0, BINARY_FRAME_ID_LENGTH + bytesRead)))) return;
    }
    if (signal.aborted) return;
    o.send({ type: 'readFileEnd', requestId, size });
  } catch (err) {
    const error = toReadError(err);
    o.log(error.code === 'LocalFileFailed' ? 'error' : 'warn', 'file read refused', {
      requestId,
      sessionId: request.sessionId,
      path: request.path,
      error,
    });
    if (!signal.aborted) o.send({ type: 'readFileEnd', requestId, error });
  } finally {
    await file?.close();
  }
}

/** Opens the file for reading if it may be served; see the module comment for the rules. */
async function openSessionFile(
  request: Extract<FileRequest, { type: 'readFile' }>,
  o: FileReaderOptions,
): Promise<FileHandle> {
  const asked = request.path;
  if (!path.isAbsolute(asked) || asked.includes('\0')) {
    throw new WirewatchError('InvalidCapturePath', `${asked} is not an absolute path`);
  }
  const resolved = path.resolve(asked);
  const roots = o.roots.map((r) => path.resolve(r));
  // Nothing outside the roots is even opened (opening a device or a FIFO can have effects).
  if (!roots.some((root) => isUnder(root, resolved))) {
    throw new WirewatchError('InvalidCapturePath', `${asked} is not under a capture folder`);
  }
  const own = (await o.files(request.sessionId)).map((f) => path.resolve(f));
  if (!own.includes(resolved)) {
    throw new WirewatchError(
      'InvalidCapturePath',
      `${asked} is not a file this agent wrote for session ${request.sessionId}`,
    );
  }
  return openCaptureFile(resolved, { roots, name: asked });
}

/** The files a session may be read from: its final files, or what it writes while running. */
export async function sessionFiles(entry: JournalEntry): Promise<string[]> {
  if (entry.state === 'Stopped') return (entry.files ?? []).map((f) => path.resolve(f));
  const capturePath = entry.capturePath;
  if (capturePath === undefined) return [];
  return entry.assignment.continuousCapture ? existingRingFiles(capturePath) : [capturePath];
}

/**
 * The server maps CaptureFileGone to 410 and everything else to 502; the message stays in the
 * agent's log and the server's (it names paths of this host).
 */
function toReadError(err: unknown): ChannelError {
  const errno = (err as NodeJS.ErrnoException | null)?.code;
  if (errno === 'ENOENT' || errno === 'ENOTDIR') return toChannelError(err, 'CaptureFileGone');
  if (errno === 'ELOOP') return toChannelError(err, 'InvalidCapturePath');
  return toChannelError(err, 'LocalFileFailed');
}
