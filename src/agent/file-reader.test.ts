/**
 * The agent's file reads on real files in a temp dir: what is served (byte ranges, in frames of
 * at most 256 KiB, one at a time) and what is refused (outside the capture folders, through a
 * symbolic link, not a regular file, not the session's — also when the agent no longer knows the
 * session, or never ran it —, gone). The channel is a recorder.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AgentMessage, CaptureAssignment } from '../model/channel.js';
import {
  FileReader,
  MAX_CHUNK_BYTES,
  sessionFiles,
  type FileReaderOptions,
} from './file-reader.js';
import type { JournalEntry } from './journal.js';
import { openWrittenFiles } from './written-files.js';

type ReadFileEnd = Extract<AgentMessage, { type: 'readFileEnd' }>;

let dir: string;
let root: string;
let spool: string;

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ww-file-reader-'));
  root = path.join(dir, 'captures');
  spool = path.join(dir, 'data', 'spool');
  await mkdir(root, { recursive: true });
  await mkdir(spool, { recursive: true });
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Read {
  readonly frames: Buffer[];
  readonly end: ReadFileEnd;
  /** How many frames were in flight at most (sent but not yet acknowledged). */
  readonly maxInFlight: number;
}

/** Serves one readFile and collects the frames and the end. */
function read(
  request: { path: string; offset?: number; length?: number; sessionId?: string },
  options: Partial<FileReaderOptions> = {},
): Promise<Read> {
  const requestId = randomUUID();
  const frames: Buffer[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  return new Promise((resolve) => {
    new FileReader({
      roots: [root, spool],
      // Unless a test says otherwise, the session wrote the file asked for.
      files: () => Promise.resolve([request.path]),
      log: () => undefined,
      send: (message) => {
        if (message.type === 'readFileEnd') resolve({ frames, end: message, maxInFlight });
      },
      sendBinary: async (frame) => {
        expect(frame.toString('latin1', 0, 36)).toBe(requestId);
        frames.push(frame.subarray(36));
        maxInFlight = Math.max(maxInFlight, ++inFlight);
        await new Promise((r) => setTimeout(r, 1));
        inFlight--;
        return true;
      },
      ...options,
    }).handle({
      type: 'readFile',
      requestId,
      sessionId: request.sessionId ?? randomUUID(),
      path: request.path,
      offset: request.offset ?? 0,
      ...(request.length === undefined ? {} : { length: request.length }),
    });
  });
}

const bytesOf = (r: Read) => Buffer.concat(r.frames);

describe('serving a capture file', () => {
  it('sends the range in frames of at most 256 KiB, one at a time, then the size', async () => {
    const content = randomBytes(700_001);
    const file = path.join(root, 'a.cap');
    await writeFile(file, content);
    const whole = await read({ path: file });
    expect(whole.end).toMatchObject({ size: content.length });
    expect(whole.end.error).toBeUndefined();
    expect(bytesOf(whole).equals(content)).toBe(true);
    expect(whole.frames.map((f) => f.length)).toEqual([
      MAX_CHUNK_BYTES,
      MAX_CHUNK_BYTES,
      700_001 - 2 * MAX_CHUNK_BYTES,
    ]);
    expect(whole.maxInFlight).toBe(1);

    const part = await read({ path: file, offset: 100, length: 1000 });
    expect(bytesOf(part).equals(content.subarray(100, 1100))).toBe(true);
    // Beyond the end: nothing, and the size (the server tells what it makes of it).
    const beyond = await read({ path: file, offset: 800_000, length: 10 });
    expect(beyond.frames).toEqual([]);
    expect(beyond.end.size).toBe(content.length);
    // Zero bytes: the size alone.
    const size = await read({ path: file, length: 0 });
    expect([size.frames.length, size.end.size]).toEqual([0, content.length]);
  });

  it('serves the spool folder too', async () => {
    const file = path.join(spool, 'b.cap');
    await writeFile(file, 'spooled');
    expect(bytesOf(await read({ path: file })).toString()).toBe('spooled');
  });

  /** A reader of a 1 MiB file whose first frame calls `onFirstFrame`. */
  async function bigRead(onFirstFrame: (reader: FileReader, requestId: string) => void) {
    const file = path.join(root, 'big.cap');
    await writeFile(file, randomBytes(4 * MAX_CHUNK_BYTES));
    const requestId = randomUUID();
    const sent: AgentMessage[] = [];
    let frames = 0;
    const reader: FileReader = new FileReader({
      roots: [root],
      files: () => Promise.resolve([file]),
      log: () => undefined,
      send: (m) => sent.push(m),
      sendBinary: () => {
        if (++frames === 1) onFirstFrame(reader, requestId);
        return Promise.resolve(true);
      },
    });
    reader.handle({ type: 'readFile', requestId, sessionId: randomUUID(), path: file, offset: 0 });
    expect(reader.size).toBe(1);
    // The read is forgotten once it has stopped.
    while (reader.size > 0) await new Promise((r) => setImmediate(r));
    return { frames, sent };
  }

  it('stops at a cancel and sends no end', async () => {
    const { frames, sent } = await bigRead((reader, requestId) =>
      reader.handle({ type: 'readFileCancel', requestId }),
    );
    expect(frames).toBe(1);
    expect(sent).toEqual([]);
  });

  it('close() ends every read, and is safe to call twice', async () => {
    const { frames, sent } = await bigRead((reader) => {
      reader.close();
      reader.close();
    });
    expect(frames).toBe(1);
    expect(sent).toEqual([]);
  });
});

describe('refusing', () => {
  const refusal = async (
    request: Parameters<typeof read>[0],
    options: Partial<FileReaderOptions> = {},
  ) => {
    const r = await read(request, options);
    expect(r.frames).toEqual([]);
    expect(r.end.size).toBeUndefined();
    return r.end.error?.code;
  };

  it('a path outside the capture folders, relative, or climbing out with ..', async () => {
    const outside = path.join(dir, 'outside.cap');
    await writeFile(outside, 'secret');
    expect(await refusal({ path: outside })).toBe('InvalidCapturePath');
    expect(await refusal({ path: '/etc/passwd' })).toBe('InvalidCapturePath');
    expect(await refusal({ path: 'captures/a.cap' })).toBe('InvalidCapturePath');
    expect(await refusal({ path: `${root}/../outside.cap` })).toBe('InvalidCapturePath');
    expect(await refusal({ path: root })).toBe('InvalidCapturePath');
  });

  it('a symbolic link out of the root, as the file or as a folder on the way', async () => {
    const outside = path.join(dir, 'outside');
    await mkdir(outside);
    await writeFile(path.join(outside, 'x.cap'), 'secret');
    await symlink(path.join(outside, 'x.cap'), path.join(root, 'link.cap'));
    await symlink(outside, path.join(root, 'linked-dir'));
    expect(await refusal({ path: path.join(root, 'link.cap') })).toBe('InvalidCapturePath');
    expect(await refusal({ path: path.join(root, 'linked-dir', 'x.cap') })).toBe(
      'InvalidCapturePath',
    );
  });

  it('what is not a regular file: a folder, a FIFO (without hanging)', async () => {
    await mkdir(path.join(root, 'folder.cap'));
    expect(await refusal({ path: path.join(root, 'folder.cap') })).toBe('InvalidCapturePath');
    const fifo = path.join(root, 'fifo.cap');
    execFileSync('mkfifo', [fifo]);
    expect(await refusal({ path: fifo })).toBe('InvalidCapturePath');
  });

  it('a file the session did not write, whether the agent knows the session or not', async () => {
    const mine = path.join(root, 'mine.cap');
    const other = path.join(root, 'other.cap');
    await writeFile(mine, 'mine');
    await writeFile(other, 'other');
    const sessionId = randomUUID();
    const entry: JournalEntry = {
      assignment: { sessionId, continuousCapture: false } as CaptureAssignment,
      state: 'Stopped',
      files: [mine],
    };
    const files = async (id: string) => (id === sessionId ? sessionFiles(entry) : []);
    expect(await refusal({ path: other, sessionId }, { files })).toBe('InvalidCapturePath');
    expect(bytesOf(await read({ path: mine, sessionId }, { files })).toString()).toBe('mine');
    // A session the agent has forgotten without a record, or never ran: nothing is its file,
    // and the refusal reads the same whether the path exists or not.
    const other1 = await read({ path: mine, sessionId: randomUUID() }, { files });
    const other2 = await read(
      { path: path.join(root, 'none.cap') },
      { files: () => Promise.resolve([]) },
    );
    expect(other1.frames).toEqual([]);
    expect(other1.end.error?.code).toBe('InvalidCapturePath');
    expect(other2.end.error?.code).toBe('InvalidCapturePath');
  });

  it('after the journal forgot a session: only the files recorded as written for it', async () => {
    const mine = path.join(root, 'kept.cap');
    const secret = path.join(root, 'secret.cap');
    await writeFile(mine, 'kept');
    await writeFile(secret, 'secret', { mode: 0o600 });
    const written = await openWrittenFiles({
      dataDir: path.join(dir, 'data'),
      log: () => undefined,
    });
    const sessionId = randomUUID();
    await written.record(sessionId, [mine]);
    // Read back from disk by a new instance, as after a restart.
    const reopened = await openWrittenFiles({
      dataDir: path.join(dir, 'data'),
      log: () => undefined,
    });
    const files = (id: string) => reopened.get(id);
    expect(bytesOf(await read({ path: mine, sessionId }, { files })).toString()).toBe('kept');
    expect(await refusal({ path: secret, sessionId }, { files })).toBe('InvalidCapturePath');
    expect(await reopened.get('../../etc/passwd')).toEqual([]);
    // Once the file is gone the record goes at the next start.
    await rm(mine);
    await openWrittenFiles({ dataDir: path.join(dir, 'data'), log: () => undefined });
    const fresh = await openWrittenFiles({ dataDir: path.join(dir, 'data'), log: () => undefined });
    expect(await fresh.get(sessionId)).toEqual([]);
  });

  it('a file that is gone: CaptureFileGone', async () => {
    expect(await refusal({ path: path.join(root, 'none.cap') })).toBe('CaptureFileGone');
    expect(await refusal({ path: path.join(root, 'no-dir', 'none.cap') })).toBe('CaptureFileGone');
  });
});
