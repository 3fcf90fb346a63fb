import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Bearer secrets: API tokens (`wwt_`), enrollment tokens (`wwe_`), agent credentials (`wwa_`)
 * and the admin token (`wwadmin_`). 32 random bytes each; only their sha256 is stored, so a
 * leaked database holds no usable secret. The prefix lets a reader (and secret scanners) tell
 * them apart.
 */
export type TokenKind = 'api' | 'enrollment' | 'agent' | 'admin';

const prefixes: Record<TokenKind, string> = {
  api: 'wwt_',
  enrollment: 'wwe_',
  agent: 'wwa_',
  admin: 'wwadmin_',
};

export function generateToken(kind: TokenKind): string {
  return `${prefixes[kind]}${randomBytes(32).toString('base64url')}`;
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** The kind a token's prefix announces; undefined for anything else. */
export function tokenKind(token: string): TokenKind | undefined {
  for (const [kind, prefix] of Object.entries(prefixes) as [TokenKind, string][]) {
    if (token.startsWith(prefix)) return kind;
  }
  return undefined;
}

/** Constant-time comparison of two hex digests. */
export function sameHash(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && timingSafeEqual(x, y);
}
