/**
 * Encryption at rest of the secrets the store keeps (storage accounts' connection strings, which
 * hold account keys): AES-256-GCM with a 32-byte key kept apart from the database (the server's
 * `DIR/secrets.key` or `--secrets-key FILE`), so a copied database file or backup holds no key.
 *
 * A sealed value is `wwsec1:<key id>:<iv>:<ciphertext>:<tag>` (base64url parts). The key id (the
 * first 8 bytes of a hash of the key, hex) says which key sealed it, so that a wrong key is
 * reported as such instead of as garbage, and so that a rotation can open values sealed with
 * the previous key while it re-seals them with the new one. Each value is bound to the row it
 * belongs to (`context`, as GCM's additional data): a sealed value copied to another row does
 * not open.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

const PREFIX = 'wwsec1';
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** A sealed value that cannot be opened: its key is not held, or it was altered. */
export class SecretsKeyError extends Error {
  override readonly name = 'SecretsKeyError';
  constructor(
    message: string,
    /** The id of the key that sealed the value, when the value says. */
    readonly keyId: string | undefined,
  ) {
    super(message);
  }
}

/** The id of a key as sealed values name it: not secret (a hash prefix), 16 hex digits. */
export function secretsKeyId(key: Buffer): string {
  return createHash('sha256')
    .update('wirewatch secrets key id\0')
    .update(key)
    .digest('hex')
    .slice(0, 16);
}

/** A new random key. */
export function generateSecretsKey(): Buffer {
  return randomBytes(KEY_BYTES);
}

/** Whether `text` is a sealed value (anything else is a plaintext left from before sealing). */
export function isSealed(text: string): boolean {
  return text.startsWith(`${PREFIX}:`);
}

/**
 * Seals with one key and opens with it or any of the previous keys (during a rotation).
 */
export class SecretBox {
  readonly #current: Buffer;
  readonly #keys: ReadonlyMap<string, Buffer>;
  /** The current key's id. */
  readonly keyId: string;

  constructor(current: Buffer, previous: readonly Buffer[] = []) {
    for (const key of [current, ...previous]) {
      if (key.length !== KEY_BYTES) {
        throw new RangeError(`a secrets key is ${KEY_BYTES} bytes, not ${key.length}`);
      }
    }
    this.#current = Buffer.from(current);
    this.keyId = secretsKeyId(current);
    this.#keys = new Map(
      [current, ...previous].map((key) => [secretsKeyId(key), Buffer.from(key)] as const),
    );
  }

  /** Encrypts `plaintext` for the row named by `context`. */
  seal(plaintext: string, context: string): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#current, iv);
    cipher.setAAD(Buffer.from(context, 'utf8'));
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    const parts = [iv, ciphertext, cipher.getAuthTag()].map((b) => b.toString('base64url'));
    return [PREFIX, this.keyId, ...parts].join(':');
  }

  /** Whether `text` is sealed with the current key (nothing to re-seal). */
  isCurrent(text: string): boolean {
    return text.startsWith(`${PREFIX}:${this.keyId}:`);
  }

  /**
   * Decrypts a sealed value of the row named by `context`.
   *
   * @throws SecretsKeyError when the value is malformed, was sealed with a key this box does not
   *   hold, or does not authenticate (altered, or moved from another row).
   */
  open(sealed: string, context: string): string {
    const parts = sealed.split(':');
    if (parts.length !== 5 || parts[0] !== PREFIX) {
      throw new SecretsKeyError(`${context}: the stored secret is not a sealed value`, undefined);
    }
    const keyId = parts[1]!;
    const key = this.#keys.get(keyId);
    if (key === undefined) {
      throw new SecretsKeyError(
        `${context}: sealed with secrets key ${keyId}, which is not the key given (${this.keyId})`,
        keyId,
      );
    }
    const [iv, ciphertext, tag] = parts.slice(2).map((p) => Buffer.from(p, 'base64url'));
    if (iv?.length !== IV_BYTES || tag?.length !== TAG_BYTES || ciphertext === undefined) {
      throw new SecretsKeyError(`${context}: the stored secret is malformed`, keyId);
    }
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, iv);
      decipher.setAAD(Buffer.from(context, 'utf8'));
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString('utf8');
    } catch {
      throw new SecretsKeyError(
        `${context}: the stored secret does not authenticate with secrets key ${keyId} (altered, or copied from another row)`,
        keyId,
      );
    }
  }
}
