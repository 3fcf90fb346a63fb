/**
 * The secrets key of `wirewatch server`: the AES-256 key that seals the secrets in the store
 * (src/store/secret-box.ts), kept in its own file (`DIR/secrets.key`, or `--secrets-key FILE`),
 * mode 0600, apart from the database, so that a copy of the database holds no usable secret.
 *
 * The file holds the key as base64 on one line. A rotation writes the new key to `FILE.next`
 * first, re-seals every row with it (the old key still opens them), and only then renames
 * `FILE.next` over `FILE`: a crash at any point leaves a pair the next start can finish.
 */
import { readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { syncFolder, writeNewFileSynced } from '../files/durable-file.js';
import { generateSecretsKey, SecretBox, SecretsKeyError } from '../store/secret-box.js';
import type { StorageAccountStore } from '../store/store.js';

export interface SecretsKeyOptions {
  /** The key file. */
  readonly keyPath: string;
  /** Make a new key and re-seal everything with it (`--rotate-secrets-key`). */
  readonly rotate: boolean;
}

/** The keys this start uses, and how to settle them once the store is open. */
export interface SecretsKeys {
  /** Seals with the new key during a rotation, else with the current one. */
  readonly box: SecretBox;
  /**
   * Re-seals every secret of the store with `box`'s key and finishes a rotation. On a key that
   * does not open the stored secrets, throws an Error that says which file to fix.
   */
  settle(
    store: Pick<StorageAccountStore, 'resealSecrets'>,
  ): Promise<{ resealed: number; rotated: boolean }>;
}

const KEY_TEXT = /^[A-Za-z0-9+/]{43}=$/;

/**
 * Reads the key file (creating it with a new key when missing) and a rotation's pending
 * `FILE.next`; with `rotate`, writes a new `FILE.next`.
 *
 * @throws Error when a key file is unreadable, malformed, or readable by others than its owner.
 */
export async function openSecretsKeys(options: SecretsKeyOptions): Promise<SecretsKeys> {
  const keyPath = path.resolve(options.keyPath);
  const nextPath = `${keyPath}.next`;
  let current = await readKey(keyPath);
  let pending = await readKey(nextPath);
  let created = false;
  if (current === undefined) {
    if (pending !== undefined) {
      throw new Error(
        `the secrets key ${keyPath} is missing but ${nextPath} (an unfinished rotation) exists: restore ${keyPath} from a backup`,
      );
    }
    current = generateSecretsKey();
    await writeKey(keyPath, current);
    created = true;
  }
  if (options.rotate && pending === undefined) {
    pending = generateSecretsKey();
    await writeKey(nextPath, pending);
  }
  const box = pending === undefined ? new SecretBox(current) : new SecretBox(pending, [current]);
  const given = new SecretBox(current);
  return {
    box,
    async settle(store) {
      let resealed: number;
      try {
        resealed = await store.resealSecrets();
      } catch (error) {
        if (!(error instanceof SecretsKeyError)) throw error;
        if (created) {
          // Nothing was sealed with the key just made; leave no file that looks like the key.
          await rm(keyPath, { force: true });
          throw new Error(
            `the database holds secrets sealed with secrets key ${error.keyId ?? '(unknown)'}, but ${keyPath} did not exist: restore that file (or pass --secrets-key FILE) — ${error.message}`,
            { cause: error },
          );
        }
        throw new Error(
          `the secrets key in ${keyPath} (key id ${given.keyId}) does not open the secrets in the database: wrong --secrets-key? ${error.message}`,
          { cause: error },
        );
      }
      if (pending === undefined) return { resealed, rotated: false };
      await rename(nextPath, keyPath);
      await syncFolder(path.dirname(keyPath));
      return { resealed, rotated: true };
    },
  };
}

/** The key in `file`, undefined when the file does not exist. */
async function readKey(file: string): Promise<Buffer | undefined> {
  let text: string;
  try {
    const info = await stat(file);
    if ((info.mode & 0o077) !== 0) {
      throw new Error(
        `the secrets key ${file} is readable by others than its owner (mode ${(info.mode & 0o777).toString(8)}): chmod 600 it`,
      );
    }
    text = (await readFile(file, 'utf8')).trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  if (!KEY_TEXT.test(text)) {
    throw new Error(`the secrets key ${file} is not a 32-byte key in base64 (one line)`);
  }
  return Buffer.from(text, 'base64');
}

/** Creates `file` (never over an existing one) with mode 0600, the key, flushed to disk. */
async function writeKey(file: string, key: Buffer): Promise<void> {
  await writeNewFileSynced(file, Buffer.from(`${key.toString('base64')}\n`), 0o600);
  await syncFolder(path.dirname(file));
}
