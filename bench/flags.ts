/** Command-line flags of the benches. */

/** The whole number ≥ 1 after `--{name}` in the arguments, or `fallback` without the flag. */
export function intFlag(name: string, fallback: number, args = process.argv.slice(2)): number {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const value = Number(args[i + 1]);
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name}: a whole number ≥ 1`);
  return value;
}
