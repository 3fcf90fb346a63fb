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
import { constants } from 'node:fs';
import { open, readlink, realpath, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { existingRingFiles } from '../capture/ring-buffer.js';
import type { AgentMessage, ChannelError, ServerMessage } from '../model/channel.js';
import { BINARY_FRAME_ID_LENGTH, toChannelError } from '../model/channel.js';
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

/** Reads in progress per channel (so a cancel finds its read), created on first use. */
const inProgress = new WeakMap<object, Map<string, AbortController>>();

/**
 * Handles a `readFile` (starts sending; returns at once) or a `readFileCancel`. `channel` is the
 * agent's channel client, which the reads in progress are kept with.
 */
export function handleFileRequest(
  channel: object,
  message: FileRequest,
  options: FileReaderOptions,
): void {
  let reads = inProgress.get(channel);
  if (reads === undefined) {
    reads = new Map();
    inProgress.set(channel, reads);
  }
  if (message.type === 'readFileCancel') {
    reads.get(message.requestId)?.abort();
    return;
  }
  const abort = new AbortController();
  const own = reads;
  own.set(message.requestId, abort);
  void serveRead(message, options, abort.signal)
    .catch((err: unknown) => {
      options.log('error', 'file read failed', { requestId: message.requestId, error: err });
    })
    .finally(() => own.delete(message.requestId));
}

/** Why a read is refused, as the channel error the server gets. */
class ReadRefused extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
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
    file = await openCaptureFile(request, o);
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
async function openCaptureFile(
  request: Extract<FileRequest, { type: 'readFile' }>,
  o: FileReaderOptions,
): Promise<FileHandle> {
  const asked = request.path;
  if (!path.isAbsolute(asked) || asked.includes('\0')) {
    throw new ReadRefused('InvalidCapturePath', `${asked} is not an absolute path`);
  }
  const resolved = path.resolve(asked);
  const roots = o.roots.map((r) => path.resolve(r));
  // Nothing outside the roots is even opened (opening a device or a FIFO can have effects).
  if (!roots.some((root) => isInside(root, resolved))) {
    throw new ReadRefused('InvalidCapturePath', `${asked} is not under a capture folder`);
  }
  const own = (await o.files(request.sessionId)).map((f) => path.resolve(f));
  if (!own.includes(resolved)) {
    throw new ReadRefused(
      'InvalidCapturePath',
      `${asked} is not a file this agent wrote for session ${request.sessionId}`,
    );
  }
  // O_NOFOLLOW: the file itself is no symbolic link; O_NONBLOCK: a FIFO does not hang the open.
  const file = await open(
    resolved,
    constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK,
  );
  try {
    if (!(await file.stat()).isFile()) {
      throw new ReadRefused('InvalidCapturePath', `${asked} is not a regular file`);
    }
    // Where the opened file really is: a link among the folders above it cannot lead out.
    const real = await readlink(`/proc/self/fd/${file.fd}`);
    const realRoots = await Promise.all(roots.map((r) => realpath(r).catch(() => undefined)));
    if (!realRoots.some((root) => root !== undefined && isInside(root, real))) {
      throw new ReadRefused('InvalidCapturePath', `${asked} leads out of the capture folders`);
    }
    return file;
  } catch (err) {
    await file.close();
    throw err;
  }
}

/** The files a session may be read from: its final files, or what it writes while running. */
export async function sessionFiles(entry: JournalEntry): Promise<string[]> {
  if (entry.state === 'Stopped') return (entry.files ?? []).map((f) => path.resolve(f));
  const capturePath = entry.capturePath;
  if (capturePath === undefined) return [];
  return entry.assignment.continuousCapture ? existingRingFiles(capturePath) : [capturePath];
}

function isInside(root: string, candidate: string): boolean {
  const relative = path.relative(root, candidate);
  return relative !== '' && !relative.startsWith('..') && !path.isAbsolute(relative);
}

/**
 * The server maps CaptureFileGone to 410 and everything else to 502; the message stays in the
 * agent's log and the server's (it names paths of this host).
 */
function toReadError(err: unknown): ChannelError {
  if (err instanceof ReadRefused) return { code: err.code, message: err.message };
  const errno = (err as NodeJS.ErrnoException | null)?.code;
  if (errno === 'ENOENT' || errno === 'ENOTDIR') return toChannelError(err, 'CaptureFileGone');
  if (errno === 'ELOOP') return toChannelError(err, 'InvalidCapturePath');
  return toChannelError(err, 'LocalFileFailed');
}
