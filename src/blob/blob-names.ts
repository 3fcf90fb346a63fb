import path from 'node:path';

/** The container Azure Network Watcher writes packet captures to. */
export const CAPTURE_CONTAINER = 'network-watcher-logs';

export interface CaptureBlobNameInput {
  readonly subscriptionId: string;
  readonly resourceGroup: string;
  readonly vmName: string;
  /**
   * A scale-set instance's capture (one child of a scale-set capture): its scale set and instance
   * id name the folder instead of `vmName`.
   */
  readonly instance?: { readonly scaleSet: string; readonly instanceId: string };
  /** When the capture was created; its UTC time names the blob. */
  readonly createdAt: Date;
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/**
 * The blob name (inside CAPTURE_CONTAINER) of a capture, as Azure names it:
 * `subscriptions/{s}/resourcegroups/{rg}/providers/microsoft.compute/virtualmachines/{vm}/
 * {yyyy}/{MM}/{dd}/packetcapture_{HH}_{mm}_{ss}_{fff}.cap`, ids lower-cased, UTC time; for a
 * scale-set instance `…/microsoft.compute/virtualmachinescalesets/{ss}/virtualmachines/{id}/…`.
 */
export function captureBlobName(input: CaptureBlobNameInput): string {
  const t = input.createdAt;
  if (Number.isNaN(t.getTime())) throw new RangeError('captureBlobName: createdAt is not a date');
  const folder = [
    'subscriptions',
    input.subscriptionId.toLowerCase(),
    'resourcegroups',
    input.resourceGroup.toLowerCase(),
    'providers',
    'microsoft.compute',
    ...(input.instance === undefined
      ? ['virtualmachines', input.vmName.toLowerCase()]
      : [
          'virtualmachinescalesets',
          input.instance.scaleSet.toLowerCase(),
          'virtualmachines',
          input.instance.instanceId,
        ]),
    String(t.getUTCFullYear()).padStart(4, '0'),
    pad(t.getUTCMonth() + 1),
    pad(t.getUTCDate()),
  ].join('/');
  const file = `packetcapture_${pad(t.getUTCHours())}_${pad(t.getUTCMinutes())}_${pad(t.getUTCSeconds())}_${pad(t.getUTCMilliseconds(), 3)}.cap`;
  return `${folder}/${file}`;
}

/**
 * The URL of file `n` of a ring (continuous capture) whose base blob is `url`: `_n` goes before
 * the extension of the URL's last path segment, as ringFileName (src/capture/ring-buffer.ts)
 * does for local files — `…/packetcapture_10_00_00_000.cap` → `…/packetcapture_10_00_00_000_3.cap`.
 * A query or fragment is kept as it is. Works on bare blob names too.
 */
export function ringFileBlobUrl(url: string, n: number): string {
  const cut = url.search(/[?#]/);
  const base = cut === -1 ? url : url.slice(0, cut);
  const rest = cut === -1 ? '' : url.slice(cut);
  const slash = base.lastIndexOf('/');
  const dir = base.slice(0, slash + 1);
  const segment = base.slice(slash + 1);
  const ext = path.posix.extname(segment);
  return `${dir}${segment.slice(0, segment.length - ext.length)}_${n}${ext}${rest}`;
}
