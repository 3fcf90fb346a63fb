import type { ServerMessage } from '../model/channel.js';
import type { Store } from '../store/store.js';

/** How the control plane reaches agents; the server's agent hub implements it. */
export interface AgentLink {
  isConnected(vmId: string): boolean;
  /** Sends if the agent is connected; false when it is not. */
  send(vmId: string, message: ServerMessage): boolean;
}

/** Who asked, for the audit log. */
export interface Caller {
  /** `admin`, `token:<id>` or `agent:<id>`. */
  readonly actor: string;
  readonly sourceIp: string;
}

/** What the control plane needs of a storage account: blob URLs and write-only SAS tokens. */
export interface BlobWriter {
  blobUrl(blobName: string): string;
  /** A SAS (query, no `?`) allowing only create and write of that one blob until `expiresOn`. */
  mintWriteSas(blobName: string, expiresOn: Date): string;
  /** The committed blob's length; undefined when it does not exist. */
  blobSize(blobName: string): Promise<number | undefined>;
}

export interface CaptureRef {
  readonly subscriptionId: string;
  readonly resourceGroup: string;
  readonly watcherName: string;
  readonly name: string;
}

export type ControlLog = (level: 'info' | 'warn' | 'error', msg: string, fields?: object) => void;

/**
 * What every part of the control plane shares: the store, the agents, its clock and its log.
 * Each part gets it (and the other parts it calls) explicitly from the ControlPlane.
 */
export interface ControlContext {
  readonly store: Store;
  readonly agents: AgentLink;
  readonly now: () => Date;
  readonly log: ControlLog;
}
