/**
 * Merging pcap files by timestamp, as mergecap does: a k-way merge that holds one record per
 * input, so memory does not grow with the files (the merge itself is merge-streams.ts).
 */
import type { Writable } from 'node:stream';
import { createReadStream } from 'node:fs';
import { MERGE_CHUNK_BYTES, mergePcapStreams } from './merge-streams.js';
import type { TimestampPrecision } from './types.js';

/** Options of {@link mergePcaps}. */
export interface MergePcapsOptions {
  /** Stops the merge; it then rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

/** What {@link mergePcaps} wrote. */
export interface MergePcapsResult {
  /** Records written. */
  readonly records: number;
  readonly precision: TimestampPrecision;
}

/**
 * Merges pcap or pcapng files (any mix) into one classic pcap stream ordered by timestamp.
 * Records with equal timestamps come in the order of `inputs`; each input's own order is kept
 * (inputs are assumed sorted, as captures are). For a pcapng output with an interface per
 * file, use {@link mergePcapStreams} with `format: 'pcapng'`.
 *
 * The output has nanosecond precision if any input has it (microsecond timestamps are
 * converted), microsecond otherwise; its snaplen is the largest of the inputs'. Records
 * longer than that (which only a malformed input can hold) are cut to it. `output` is ended
 * when the merge is done and destroyed if it fails.
 *
 * @throws WirewatchError `InvalidPcap` if `inputs` is empty, if the inputs do not all have the
 *   same link type (target: the first file that differs), or if an input is not a valid pcap
 *   or pcapng file (target: that file).
 */
export async function mergePcaps(
  inputs: readonly string[],
  output: Writable,
  options: MergePcapsOptions = {},
): Promise<MergePcapsResult> {
  // The files are streams like any other: one merge serves files, blobs and agents' files.
  return mergePcapStreams(
    inputs.map((path) => ({
      name: path,
      stream: createReadStream(path, { highWaterMark: MERGE_CHUNK_BYTES }),
    })),
    output,
    { ...options, destroyQuietly: true },
  );
}
