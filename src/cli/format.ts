import { InvalidArgumentError } from 'commander';
import type { PacketCaptureFilter } from '../capture/filter-spec.js';
/** Human-readable byte counts: 1536 → "1.5 KiB". */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** Seconds as m:ss or h:mm:ss. */
export function formatDuration(ms: number): string {
  const total = Math.floor(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

/**
 * Commander parser for `--filters`: a JSON array of PacketCaptureFilter objects, as az takes
 * it. The fields are checked by the filter parser (locally) or the server, which name the rule.
 */
export function filtersJson(value: string): PacketCaptureFilter[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new InvalidArgumentError(
      'expected a JSON array of filters, e.g. \'[{"protocol":"TCP","localPort":"80"}]\'',
    );
  }
  if (!Array.isArray(parsed) || !parsed.every((f) => f !== null && typeof f === 'object')) {
    throw new InvalidArgumentError('expected a JSON array of filter objects');
  }
  return parsed as PacketCaptureFilter[];
}
