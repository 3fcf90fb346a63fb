import { constants } from 'node:fs';
import { mkdir, open, readlink, realpath, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { WirewatchError } from '../model/errors.js';

/** Azure's rule for Linux targets: capture files live under /var/captures. */
export const DEFAULT_CAPTURE_ROOT = '/var/captures';

const captureExtensions = new Set(['.cap', '.pcap']);

/**
 * The one "is this path inside the capture root" test: true when `candidate` is `root` itself or
 * lies below it (both absolute). Paths are compared as strings; {@link openCaptureFile} adds the
 * real-path test on the file actually opened.
 */
export function isInside(root: string, candidate: string): boolean {
  const relative = path.relative(root, candidate);
  return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative));
}

/** True when `candidate` lies below `root` (not `root` itself). */
export function isUnder(root: string, candidate: string): boolean {
  return path.relative(root, candidate) !== '' && isInside(root, candidate);
}

/**
 * Checks a capture file path against the capture root, without touching the disk: absolute,
 * under the root, no `..` segment, a file name ending in .cap or .pcap. `target` names the
 * field in errors (e.g. `storageLocation.filePath`).
 */
export function checkCapturePath(filePath: string, root: string, target = 'filePath'): string {
  const fail = (rule: string): never => {
    throw new WirewatchError('InvalidCapturePath', `${target}: "${filePath}" ${rule}`, { target });
  };
  if (filePath.length === 0 || filePath.includes('\0')) fail('is not a valid path');
  if (!path.isAbsolute(filePath)) fail('must be an absolute path');
  if (filePath.split('/').includes('..')) fail('must not contain ".." segments');
  const resolved = path.resolve(filePath);
  if (!isUnder(path.resolve(root), resolved)) {
    fail(`must lie under the capture root ${root}`);
  }
  if (!captureExtensions.has(path.extname(resolved).toLowerCase())) {
    fail('must name a capture file ending in .cap or .pcap');
  }
  return resolved;
}

/**
 * Creates the capture file's folder under the root and checks, on disk, that no symbolic link
 * leads it out of the root. Returns the real path of the file to create.
 */
export async function prepareCapturePath(
  filePath: string,
  root: string,
  target = 'filePath',
): Promise<string> {
  const resolved = checkCapturePath(filePath, root, target);
  let realRoot: string;
  try {
    await mkdir(root, { recursive: true, mode: 0o750 });
    realRoot = await realpath(root);
  } catch (cause) {
    throw new WirewatchError(
      'LocalFileFailed',
      `capture root ${root} is not usable: ${message(cause)}`,
      {
        target,
        cause,
      },
    );
  }
  const folder = path.dirname(resolved);
  // Walk down from the root one segment at a time so that a symlink anywhere below the root is
  // caught before mkdir could follow it.
  let current = realRoot;
  for (const segment of path.relative(path.resolve(root), folder).split(path.sep).filter(Boolean)) {
    const next = path.join(current, segment);
    try {
      await mkdir(next, { mode: 0o750 });
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new WirewatchError('LocalFileFailed', `cannot create ${next}: ${message(cause)}`, {
          target,
          cause,
        });
      }
    }
    const real = await realpath(next);
    if (!isInside(realRoot, real)) {
      throw new WirewatchError(
        'InvalidCapturePath',
        `${target}: "${filePath}" leads out of the capture root ${root} through a symbolic link`,
        { target },
      );
    }
    current = real;
  }
  return path.join(current, path.basename(resolved));
}

export interface OpenCaptureFileOptions {
  /**
   * The folders the file must really lie under: checked on the file actually opened, so no
   * symbolic link among the folders above it leads elsewhere. Empty: not checked.
   */
  readonly roots: readonly string[];
  /** How errors name the file (default: the path opened). */
  readonly name?: string;
}

/**
 * Opens a capture file for reading: not through a symbolic link (O_NOFOLLOW), without hanging on
 * a FIFO (O_NONBLOCK), a regular file, and really under one of `roots`.
 *
 * @throws WirewatchError `InvalidCapturePath` when it is not a regular file or leads out of the
 *   roots; errors of `open` (ENOENT, ELOOP, …) as they are.
 */
export async function openCaptureFile(
  filePath: string,
  options: OpenCaptureFileOptions,
): Promise<FileHandle> {
  const name = options.name ?? filePath;
  const file = await open(
    filePath,
    constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK,
  );
  try {
    if (!(await file.stat()).isFile()) {
      throw new WirewatchError('InvalidCapturePath', `${name} is not a regular file`);
    }
    if (options.roots.length > 0) {
      // Where the opened file really is: a link among the folders above it cannot lead out.
      const real = await readlink(`/proc/self/fd/${file.fd}`);
      const realRoots = await Promise.all(
        options.roots.map((r) => realpath(r).catch(() => undefined)),
      );
      if (!realRoots.some((root) => root !== undefined && isUnder(root, real))) {
        throw new WirewatchError('InvalidCapturePath', `${name} leads out of the capture folders`);
      }
    }
    return file;
  } catch (err) {
    await file.close();
    throw err;
  }
}

function message(cause: unknown): string {
  return cause instanceof Error ? cause.message : String(cause);
}
