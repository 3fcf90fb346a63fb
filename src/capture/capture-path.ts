import { mkdir, realpath } from 'node:fs/promises';
import path from 'node:path';
import { WirewatchError } from '../model/errors.js';

/** Azure's rule for Linux targets: capture files live under /var/captures. */
export const DEFAULT_CAPTURE_ROOT = '/var/captures';

const captureExtensions = new Set(['.cap', '.pcap']);

function isInside(root: string, candidate: string): boolean {
  const relative = path.relative(root, candidate);
  return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative));
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
  if (!isInside(path.resolve(root), resolved) || resolved === path.resolve(root)) {
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

function message(cause: unknown): string {
  return cause instanceof Error ? cause.message : String(cause);
}
