/**
 * What the server holds of a capture's local files and blobs, and what it takes from an agent.
 *
 * An agent's word is never a name the server acts on: the server tells the agent where to
 * write (plannedCapturePath, and the blob URL it minted at create), and of what the agent
 * reports back it keeps only what is one of those names: files named as the plan names them,
 * blobs whose URL is the capture's own or one of its ring files'. The blob *names* the server
 * reads with its key are derived from its own stored URL, never decoded from an agent's string.
 */
import path from 'node:path';
import { ringFileBlobUrl } from '../blob/blob-names.js';
import type { SessionRecord } from '../store/store.js';
import { checkCaptureFilePath } from './capture-parameters.js';

/**
 * Where the agent is told to write a session's capture (for a ring, the stem of its files):
 * the file asked for, or a spool file under the capture root named after the session.
 */
export function plannedCapturePath(session: SessionRecord, captureRoot: string): string {
  const asked = session.capture.storage.localFile;
  return asked
    ? checkCaptureFilePath(asked.path, asked.field, captureRoot)
    : path.join(captureRoot, '.wirewatch-spool', `${session.id}.cap`);
}

/**
 * The files of an agent's report that can be this session's: absolute, normalised paths named
 * as the plan names them (the planned file itself, or for a ring `<stem>_<n><ext>`), in the
 * planned folder as the agent resolves it (the agent reports real paths, so a capture root
 * reached through a symbolic link shows another prefix; the folders below the root must match).
 */
export function acceptReportedFiles(
  reported: readonly string[],
  planned: string,
  captureRoot: string,
  continuous: boolean,
): { readonly files: string[]; readonly refused: string[] } {
  const ext = path.posix.extname(planned);
  const stem = path.posix.basename(planned, ext);
  const below = path.posix.relative(path.posix.resolve(captureRoot), path.posix.dirname(planned));
  const files: string[] = [];
  const refused: string[] = [];
  const seen = new Set<string>();
  for (const file of reported) {
    const name = path.posix.basename(file);
    const folder = path.posix.dirname(file);
    const ok =
      path.posix.isAbsolute(file) &&
      !file.includes('\0') &&
      path.posix.normalize(file) === file &&
      (continuous ? isRingFileName(name, stem, ext) : name === path.posix.basename(planned)) &&
      (folder === path.posix.dirname(planned) ||
        below === '' ||
        (!below.startsWith('..') && folder.endsWith(`/${below}`))) &&
      !seen.has(file);
    if (ok) {
      seen.add(file);
      files.push(file);
    } else refused.push(file);
  }
  return { files, refused };
}

function isRingFileName(name: string, stem: string, ext: string): boolean {
  if (!name.startsWith(`${stem}_`) || !name.endsWith(ext)) return false;
  return ringIndex(name.slice(stem.length + 1, name.length - ext.length)) !== undefined;
}

/** A ring file number as the agent writes it: 1, 2, … without leading zeros. */
function ringIndex(text: string): number | undefined {
  if (!/^[1-9][0-9]{0,15}$/.test(text)) return undefined;
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** One blob of a session, as the server names it. */
export interface SessionBlob {
  /** The URL the server minted (no query). */
  readonly url: string;
  /** The blob name in the capture container, derived from the server's own stored name. */
  readonly name: string;
  /** What the agent says it committed; checked against storage before it is believed. */
  readonly reportedSize: number;
  /** A ring's file number (the `n` of `_<n>`); undefined for a single capture's blob. */
  readonly fileIndex?: number;
}

/**
 * Matches the blobs of an agent's upload report against the capture's blob (`storagePath`,
 * whose name in the container is `blobName`): a single capture has only that URL, a ring only
 * that URL with `_<n>` before the extension. Anything else — another capture's blob, `..` or
 * `%2e%2e` in the URL, another container or account — is `foreign`, named for the log.
 */
export function matchReportedBlobs(
  reported: readonly { readonly url: string; readonly size: number }[],
  target: { readonly storagePath: string; readonly blobName: string; readonly continuous: boolean },
):
  | { readonly kind: 'ok'; readonly blobs: SessionBlob[] }
  | { readonly kind: 'foreign'; readonly url: string } {
  const blobs: SessionBlob[] = [];
  const seen = new Set<string>();
  const ext = path.posix.extname(target.storagePath);
  const stem = target.storagePath.slice(0, target.storagePath.length - ext.length);
  for (const blob of reported) {
    let url: string;
    let name: string;
    let fileIndex: number | undefined;
    if (!target.continuous) {
      if (blob.url !== target.storagePath) return { kind: 'foreign', url: blob.url };
      url = target.storagePath;
      name = target.blobName;
    } else {
      const n =
        blob.url.startsWith(`${stem}_`) && blob.url.endsWith(ext)
          ? ringIndex(blob.url.slice(stem.length + 1, blob.url.length - ext.length))
          : undefined;
      // Compared whole as well: the URL must be exactly the one the server would mint.
      if (n === undefined || ringFileBlobUrl(target.storagePath, n) !== blob.url) {
        return { kind: 'foreign', url: blob.url };
      }
      url = ringFileBlobUrl(target.storagePath, n);
      name = ringFileBlobUrl(target.blobName, n);
      fileIndex = n;
    }
    if (seen.has(url)) continue;
    seen.add(url);
    blobs.push({
      url,
      name,
      reportedSize: blob.size,
      ...(fileIndex === undefined ? {} : { fileIndex }),
    });
  }
  return { kind: 'ok', blobs };
}
