/**
 * Building blocks of a lying agent (test/security/malicious-agent.test.ts): the blob URLs it
 * claims to have uploaded, the messages with times and numbers that are no real time or count.
 * The agent itself is the synthetic one (test/lab/synthetic-agent.ts), which sends whatever it
 * is given over the real channel.
 */
import { CAPTURE_CONTAINER } from '../../src/blob/blob-names.js';

/**
 * URLs that name another blob than the capture's own while looking like one of its ring files
 * (`<capture>_<n>.cap…`) to a check of the prefix: `..` plain or percent-encoded, a `/` encoded
 * in a segment, another container, another account, another subscription's capture outright.
 */
export function lyingBlobUrls(options: {
  /** The capture's own blob URL, as the server minted it. */
  readonly own: string;
  /** The blob endpoint of the account, e.g. http://127.0.0.1:10000/devstoreaccount1. */
  readonly endpoint: string;
  /** A blob name (in the capture container) of another tenant's capture. */
  readonly victimName: string;
  /** Another container and a blob in it. */
  readonly otherContainer: string;
  readonly otherBlob: string;
}): { readonly label: string; readonly url: string }[] {
  const base = options.own.replace(/\.cap$/, '');
  // From `<container>/<name of the ring file>/` back up to the container's folder.
  const depth = options.own
    .slice(`${options.endpoint}/${CAPTURE_CONTAINER}/`.length)
    .split('/').length;
  const up = (step: string) => step.repeat(depth);
  return [
    {
      label: "another tenant's blob, outright",
      url: `${options.endpoint}/${CAPTURE_CONTAINER}/${options.victimName}`,
    },
    { label: '.. after the ring prefix', url: `${base}_1.cap/${up('../')}${options.victimName}` },
    {
      label: '%2e%2e after the ring prefix',
      url: `${base}_1.cap/${up('%2e%2e/')}${options.victimName}`,
    },
    {
      label: '%2E%2E%2F inside one segment',
      url: `${base}_1.cap${up('%2F%2E%2E')}%2F${encodeURIComponent(options.victimName)}`,
    },
    {
      label: 'another container',
      url: `${base}_1.cap/${up('../')}../${options.otherContainer}/${options.otherBlob}`,
    },
    { label: 'the prefix then anything', url: `${base}_1x.cap` },
    {
      label: 'another account',
      url: options.own.replace(/^http:\/\/[^/]+/, 'http://127.0.0.2:10000'),
    },
    {
      label: 'a query that names another blob',
      url: `${options.own}?comp=../${options.victimName}`,
    },
  ];
}

/** Times a JSON schema's date-time accepts or that no Date reads; each must be refused. */
export const LYING_TIMES: readonly string[] = [
  '2026-12-07T23:59:60Z',
  '2026-02-30T10:00:00Z',
  '+099999-01-01T00:00:00Z',
  '99999-01-01T00:00:00Z',
  '1970-01-01T00:00:00Z',
  '2999-01-01T00:00:00Z',
  'NaN',
  '',
];

/** Counts that are no count: each must be refused. */
export const LYING_COUNTS: readonly unknown[] = [-1, 1.5, 1e300, 2 ** 53, '1', null, true];
