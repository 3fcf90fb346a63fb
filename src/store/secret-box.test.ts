import { describe, expect, it } from 'vitest';
import { generateSecretsKey, isSealed, SecretBox, SecretsKeyError } from './secret-box.js';

describe('SecretBox', () => {
  const key = generateSecretsKey();
  const box = new SecretBox(key);
  const secret = 'AccountName=a;AccountKey=c2VjcmV0;';

  it('seals to a value that names its key and holds no plaintext, and opens it again', () => {
    const sealed = box.seal(secret, 'row/1');
    expect(isSealed(sealed)).toBe(true);
    expect(sealed.startsWith(`wwsec1:${box.keyId}:`)).toBe(true);
    expect(sealed).not.toContain('c2VjcmV0');
    expect(box.isCurrent(sealed)).toBe(true);
    expect(box.open(sealed, 'row/1')).toBe(secret);
    // A fresh IV each time.
    expect(box.seal(secret, 'row/1')).not.toBe(sealed);
  });

  it('refuses a value of another row, an altered value and a foreign key with SecretsKeyError', () => {
    const sealed = box.seal(secret, 'row/1');
    expect(() => box.open(sealed, 'row/2')).toThrow(SecretsKeyError);
    const parts = sealed.split(':');
    const ciphertext = Buffer.from(parts[3]!, 'base64url');
    ciphertext[0] = ciphertext[0]! ^ 1;
    parts[3] = ciphertext.toString('base64url');
    expect(() => box.open(parts.join(':'), 'row/1')).toThrow(/does not authenticate/);
    const other = new SecretBox(generateSecretsKey());
    expect(() => other.open(sealed, 'row/1')).toThrow(
      new RegExp(
        `sealed with secrets key ${box.keyId}, which is not the key given \\(${other.keyId}\\)`,
      ),
    );
    expect(() => box.open('plain text', 'row/1')).toThrow(/not a sealed value/);
  });

  it('opens with a previous key during a rotation and seals with the new one', () => {
    const sealed = box.seal(secret, 'r');
    const rotated = new SecretBox(generateSecretsKey(), [key]);
    expect(rotated.isCurrent(sealed)).toBe(false);
    expect(rotated.open(sealed, 'r')).toBe(secret);
    expect(rotated.isCurrent(rotated.seal(secret, 'r'))).toBe(true);
  });

  it('takes 32-byte keys only', () => {
    expect(() => new SecretBox(Buffer.alloc(16))).toThrow(RangeError);
  });
});
