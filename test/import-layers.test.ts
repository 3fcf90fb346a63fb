/**
 * The map of src/ in docs/design.md ("Folders and what they may import"), checked against the
 * code: a file imports from its own folder or from a folder on a lower layer, never from one on
 * its own layer or above, and nothing in src/ imports tests or benches. Every folder of src/ must
 * have a place on the map.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = path.resolve(import.meta.dirname, '..', 'src');

/** The layers of docs/design.md, bottom (0) up. */
const LAYER: Readonly<Record<string, number>> = {
  model: 0,
  files: 0,
  pcap: 1,
  capture: 2,
  blob: 3,
  store: 3,
  agent: 4,
  control: 4,
  server: 5,
  up: 6,
  cli: 7,
};

async function sourceFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) found.push(...(await sourceFiles(full)));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts')) found.push(full);
  }
  return found;
}

/** Relative module specifiers of `import … from`, `export … from` and `import(…)`. */
function relativeImports(text: string): string[] {
  const specifiers = [...text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^import\s+)'([^']+)'/gm)];
  return specifiers.map((m) => m[1]!).filter((s) => s.startsWith('.'));
}

/** Why `file` may not import `specifier` (a relative one), or undefined when it may. */
function refusal(file: string, specifier: string): string | undefined {
  const from = path.relative(SRC, file).split(path.sep)[0]!;
  const target = path.relative(SRC, path.resolve(path.dirname(file), specifier));
  const to = target.split(path.sep)[0]!;
  if (target.startsWith('..')) return 'outside src/';
  if (to === from || (LAYER[to] ?? Infinity) < (LAYER[from] ?? -Infinity)) return undefined;
  return `${from}, layer ${LAYER[from]}, → ${to}, layer ${LAYER[to]}`;
}

describe("src/ folders import only downward (docs/design.md's map)", () => {
  it('every folder of src/ has a layer', async () => {
    const folders = (await readdir(SRC, { withFileTypes: true }))
      .filter((e) => e.isDirectory())
      .map((e) => e.name);
    expect(folders.filter((f) => LAYER[f] === undefined)).toEqual([]);
  });

  it('no import goes sideways, up, or out of src/', async () => {
    const wrong: string[] = [];
    let seen = 0;
    for (const file of await sourceFiles(SRC)) {
      for (const specifier of relativeImports(await readFile(file, 'utf8'))) {
        seen++;
        const why = refusal(file, specifier);
        if (why) wrong.push(`${path.relative(SRC, file)} imports ${specifier} (${why})`);
      }
    }
    expect(seen).toBeGreaterThan(100);
    expect(wrong).toEqual([]);
  });

  it('the rule: down is allowed; sideways, up and out are not', () => {
    const at = (p: string) => path.join(SRC, p);
    expect(refusal(at('cli/main.ts'), '../model/errors.js')).toBeUndefined();
    expect(refusal(at('store/sqlite/rows.ts'), '../store.js')).toBeUndefined();
    expect(refusal(at('model/errors.ts'), '../cli/main.js')).toBe('model, layer 0, → cli, layer 7');
    expect(refusal(at('store/store.ts'), '../blob/azurite.js')).toBe(
      'store, layer 3, → blob, layer 3',
    );
    expect(refusal(at('up/up.ts'), '../../test/lab/lab.js')).toBe('outside src/');
    expect(
      relativeImports(
        "import type { A } from './a.js';\nexport { B } from '../b.js';\nawait import('./c.js');\nimport 'node:fs';",
      ),
    ).toEqual(['./a.js', '../b.js', './c.js']);
  });
});
