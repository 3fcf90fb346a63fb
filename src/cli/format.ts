import { InvalidArgumentError } from 'commander';
import type { PacketCaptureFilter } from '../capture/filter-spec.js';
/** Human-readable byte counts: 1536 → "1.5 KiB". */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  // Move up while the shown value would read 1024 or more: 1048575 B is "1.0 MiB", not "1024.0 KiB".
  while (unit < units.length - 1 && (unit === 0 ? value : Number(value.toFixed(1))) >= 1024) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

const pad2 = (n: number) => String(n).padStart(2, '0');

/**
 * A time for a person: the machine's local time (TZ is respected) to the second, and, within
 * an hour of `now`, how long ago (or how soon) it is: `2026-12-07 21:04:05 (2 min ago)`. A
 * string that is not a time is shown as it is.
 */
export function formatTime(iso: string, now: number = Date.now()): string {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) return iso;
  const t = new Date(ms);
  const local = `${t.getFullYear()}-${pad2(t.getMonth() + 1)}-${pad2(t.getDate())} ${pad2(t.getHours())}:${pad2(t.getMinutes())}:${pad2(t.getSeconds())}`;
  const relative = formatRelative(ms - now);
  return relative === undefined ? local : `${local} (${relative})`;
}

/** `45 s ago`, `2 min ago`, `in 14 min`; beyond an hour either way, nothing. */
function formatRelative(deltaMs: number): string | undefined {
  const seconds = Math.round(Math.abs(deltaMs) / 1000);
  if (seconds >= 3600) return undefined;
  if (seconds === 0) return 'now';
  const span = seconds < 60 ? `${seconds} s` : `${Math.floor(seconds / 60)} min`;
  return deltaMs < 0 ? `${span} ago` : `in ${span}`;
}

/**
 * An ARM id for a table: its last type and name, `…/packetCaptures/pc1`; anything that is not
 * a longer ARM path is shown as it is.
 */
export function shortenId(id: string): string {
  if (!id.startsWith('/')) return id;
  const parts = id.split('/').filter(Boolean);
  return parts.length > 2 ? `…/${parts.slice(-2).join('/')}` : id;
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
