/**
 * The errors a capture ends with once tcpdump ran: a tcpdump that exited unasked, packets it
 * captured that never reached the output, anything else thrown on the way.
 */
import { WirewatchError } from '../model/errors.js';
import type { TcpdumpExit } from './tcpdump-process.js';
import { explainTcpdumpFailure } from './tcpdump.js';

/** The error of a tcpdump that ended without being asked to: the interface went away or it crashed. */
export function unexpectedExit(
  exit: TcpdumpExit,
  target: { readonly interface: string; readonly netns?: string | undefined },
): WirewatchError {
  const why = explainTcpdumpFailure(exit.stderrTail, target.interface, target.netns);
  const how = exit.code === null ? `signal ${exit.signal}` : `exit ${exit.code}`;
  return new WirewatchError('CaptureFailed', `tcpdump stopped unexpectedly (${how}): ${why}`);
}

/** What became of the packets tcpdump counted as captured. */
export interface PacketAccount {
  /** tcpdump's own count; undefined when it printed none. */
  readonly captured: number | undefined;
  /** Packets in the output, and those left out for their stamps. */
  readonly accounted: number;
  /**
   * A ring: its writes fail with their own error, so a shortfall is packets tcpdump never
   * handed over; `cutShort` when its output ended in the middle of one.
   */
  readonly ring?: { readonly cutShort: boolean };
}

/**
 * Every packet tcpdump captured must be in the output, or left out for its stamp: the error of
 * a shortfall, undefined when there is none.
 */
export function shortfallError(account: PacketAccount): WirewatchError | undefined {
  const { captured, accounted, ring } = account;
  if (captured === undefined || accounted >= captured) return undefined;
  const missing = captured - accounted;
  if (ring !== undefined) {
    // tcpdump was stopped in the middle of writing (see StopSequence).
    const how = ring.cutShort ? 'in the middle of a packet' : 'before them';
    return new WirewatchError(
      'CaptureFailed',
      `${missing} of ${captured} captured packets never reached wirewatch: tcpdump's output ended ${how}; the packets it wrote are kept`,
    );
  }
  return new WirewatchError(
    'LocalFileFailed',
    `${missing} of ${captured} captured packets could not be written to the capture file (no space left on device?)`,
  );
}

/** Anything thrown during a capture, as the WirewatchError it ends with. */
export function toCaptureError(err: unknown): WirewatchError {
  if (err instanceof WirewatchError) return err;
  return new WirewatchError(
    'CaptureFailed',
    `capture failed: ${err instanceof Error ? err.message : String(err)}`,
    { cause: err },
  );
}
