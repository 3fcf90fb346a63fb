/**
 * The agent channel: the one WebSocket an agent dials out to the server
 * (`GET /api/v1/agent/channel`, `Authorization: Bearer <agent credential>`). Every frame is one
 * JSON message with a `type`. Both sides validate what they receive with these schemas.
 *
 * Flow: the agent sends `hello` with everything it runs or has finished but not yet had
 * acknowledged; the server reconciles (kubelet-style) and answers with `start`, `stop` and `ack`
 * messages; afterwards the server pushes `start`/`stop` as captures are created or stopped, and
 * the agent reports `started`, `progress` and `stopped`. A `stopped` session stays in the agent's
 * journal until the server sends `ack` for it, so no final state is lost across restarts of
 * either side.
 */
import { Type, type Static } from 'typebox';
import { Compile } from 'typebox/compile';
import { WirewatchError } from './errors.js';
import { StopReasonSchema, StopRequestReasonSchema } from './stop-reason.js';

export const CHANNEL_PATH = '/api/v1/agent/channel';
export const ENROLL_PATH = '/api/v1/agent/enroll';
/** Bumped when a message changes incompatibly; the server refuses other versions. */
export const CHANNEL_PROTOCOL_VERSION = 1;

/**
 * Binary frames (file reads and live streams) start with the id of the read or stream they
 * belong to, as its 36 ASCII characters, followed by the data.
 */
export const BINARY_FRAME_ID_LENGTH = 36;

/**
 * The largest data part of a binary frame: a file read sends at most 256 KiB per frame, a live
 * stream at most 256 KiB of records or one record alone (a 16-byte record header and at most
 * tcpdump's largest snaplen, 262,144 bytes).
 */
export const MAX_BINARY_FRAME_DATA = 16 + 262_144;

/**
 * The largest message either side may send on the agent channel, in bytes (the WebSocket's
 * maxPayload on both ends). The largest legitimate message is a `hello` of an agent with many
 * sessions: about 600 bytes per session with one file and a blob, so the most sessions one VM
 * can run (the quota, 10,000) fit in about 6 MiB. An agent whose `hello` would not fit leaves
 * Stopped sessions out of it and offers them after `welcome`, one `stopped` at a time. Binary
 * frames are far smaller (BINARY_FRAME_ID_LENGTH + MAX_BINARY_FRAME_DATA).
 */
export const CHANNEL_MAX_PAYLOAD_BYTES = 8 * 1024 * 1024;

/** At most this many sessions in one `hello` (the quota of active sessions per location). */
export const MAX_HELLO_SESSIONS = 10_000;

/** At most this many files per session (a ring keeps at most 10,000). */
export const MAX_SESSION_FILES = 10_000;

/** At most this many blobs in one upload report (a ring's files uploaded over its lifetime). */
export const MAX_UPLOAD_BLOBS = 100_000;

/**
 * Times an agent may report: no earlier than this (capture times of this millennium), and no
 * later than this.
 */
export const EARLIEST_CHANNEL_TIME = Date.UTC(2000, 0, 1);
export const LATEST_CHANNEL_TIME = Date.UTC(2200, 0, 1);

/**
 * True when `value` is an RFC 3339 date-time that is a real instant (`Date` reads it: no
 * leap second `23:59:60`, no 30 February) between EARLIEST_CHANNEL_TIME and LATEST_CHANNEL_TIME.
 */
export function isChannelTime(value: string): boolean {
  const ms = Date.parse(value);
  return Number.isFinite(ms) && ms >= EARLIEST_CHANNEL_TIME && ms <= LATEST_CHANNEL_TIME;
}

const Uuid = Type.String({ format: 'uuid', maxLength: BINARY_FRAME_ID_LENGTH });
/** Counts and sizes: whole numbers that stay exact in a double. */
const Count = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
const Time = Type.Refine(
  Type.String({ format: 'date-time', maxLength: 40 }),
  isChannelTime,
  () => 'must be a real date-time between 2000 and 2200',
);

export const ChannelFilterSchema = Type.Object({
  protocol: Type.Optional(Type.String({ maxLength: 8 })),
  localIPAddress: Type.Optional(Type.String({ maxLength: 4096 })),
  remoteIPAddress: Type.Optional(Type.String({ maxLength: 4096 })),
  localPort: Type.Optional(Type.String({ maxLength: 4096 })),
  remotePort: Type.Optional(Type.String({ maxLength: 4096 })),
});

/**
 * Where a capture goes in blob storage. The agent never sees an account key: it gets a SAS per
 * blob that allows only creating and writing that one blob, until `expiresAt` (the session's
 * deadline plus an upload grace).
 */
function BlobTargetSchema() {
  return Type.Object({
    /**
     * The blob URL (no query) of the capture; for a ring, of file n it is this URL with `_n`
     * before the extension, and the agent asks for each file's SAS with `blobGrantRequest`.
     */
    url: Type.String({ maxLength: 4096 }),
    /** SAS query (no leading `?`) for `url` itself; absent for a ring. */
    sas: Type.Optional(Type.String({ maxLength: 4096 })),
    expiresAt: Time,
    /**
     * The local file is only a spool (no filePath was asked for): delete it once the blob is
     * committed and its length checked. Otherwise both copies are kept.
     */
    spoolOnly: Type.Boolean(),
  });
}

/** The longest message a channel error carries. */
const MAX_ERROR_MESSAGE_LENGTH = 4096;

export const ChannelErrorSchema = Type.Object({
  code: Type.String({ maxLength: 64 }),
  message: Type.String({ maxLength: MAX_ERROR_MESSAGE_LENGTH }),
});
export type ChannelError = Static<typeof ChannelErrorSchema>;

/**
 * A thrown value as a channel error: a {@link WirewatchError} keeps its code, anything else gets
 * `otherCode`; the message is cut to the length the channel carries.
 */
export function toChannelError(err: unknown, otherCode: string): ChannelError {
  const message = (err instanceof Error ? err.message : String(err)).slice(
    0,
    MAX_ERROR_MESSAGE_LENGTH,
  );
  return { code: err instanceof WirewatchError ? err.code : otherCode, message };
}

/** A blob upload's outcome, reported in `uploaded` and in `hello`. */
export const UploadReportSchema = Type.Object({
  state: Type.Union([Type.Literal('Pending'), Type.Literal('Completed'), Type.Literal('Failed')]),
  /** The committed blobs (URL without SAS) and their lengths. */
  blobs: Type.Array(Type.Object({ url: Type.String({ maxLength: 4096 }), size: Count }), {
    maxItems: MAX_UPLOAD_BLOBS,
  }),
  error: Type.Optional(ChannelErrorSchema),
});
export type UploadReport = Static<typeof UploadReportSchema>;

/** What the server asks an agent to capture. Limits are already resolved (no 0 = max). */
export const CaptureAssignmentSchema = Type.Object({
  sessionId: Uuid,
  /** The capture's ARM id, for logs. */
  resourceId: Type.String({ maxLength: 1024 }),
  /** Absolute path under the agent's capture root. For a ring, the stem of its files. */
  filePath: Type.String({ maxLength: 4096 }),
  filters: Type.Array(ChannelFilterSchema, { maxItems: 256 }),
  bytesToCapturePerPacket: Count,
  totalBytesPerSession: Count,
  timeLimitInSeconds: Count,
  continuousCapture: Type.Boolean(),
  captureSettings: Type.Optional(
    Type.Object({
      fileCount: Count,
      fileSizeInBytes: Count,
      sessionTimeLimitInSeconds: Count,
    }),
  ),
  /** Created at; a session created long ago and never started still ends at its deadline. */
  createdAt: Time,
  /** Upload the capture to blob storage as it is written (storageId was given). */
  blob: Type.Optional(BlobTargetSchema()),
  /**
   * Capture the agent's own connections too (the capture's includeOwnTraffic); absent or false:
   * the agent leaves them out (docs/agent.md).
   */
  includeOwnTraffic: Type.Optional(Type.Boolean()),
});
export type CaptureAssignment = Static<typeof CaptureAssignmentSchema>;

export const ProgressSchema = Type.Object({
  packets: Count,
  bytes: Count,
  kernelDrops: Count,
  /** When the agent took these figures. */
  at: Time,
});
export type ChannelProgress = Static<typeof ProgressSchema>;

/** A session as the agent sees it, in `hello`. */
export const ObservedSessionSchema = Type.Object({
  sessionId: Uuid,
  state: Type.Union([Type.Literal('Running'), Type.Literal('Stopped')]),
  startTime: Type.Optional(Time),
  progress: Type.Optional(ProgressSchema),
  stopReason: Type.Optional(StopReasonSchema),
  stopTime: Type.Optional(Time),
  error: Type.Optional(ChannelErrorSchema),
  files: Type.Optional(
    Type.Array(Type.String({ maxLength: 4096 }), { maxItems: MAX_SESSION_FILES }),
  ),
  /** Sessions with a blob target: how the upload stands. */
  upload: Type.Optional(UploadReportSchema),
});
export type ObservedSession = Static<typeof ObservedSessionSchema>;

export const AgentMessageSchema = Type.Union([
  Type.Object({
    type: Type.Literal('hello'),
    protocolVersion: Type.Integer(),
    agentVersion: Type.String({ maxLength: 64 }),
    hostname: Type.String({ maxLength: 255 }),
    captureRoot: Type.String({ maxLength: 4096 }),
    sessions: Type.Array(ObservedSessionSchema, { maxItems: MAX_HELLO_SESSIONS }),
  }),
  Type.Object({ type: Type.Literal('started'), sessionId: Uuid, startTime: Time }),
  Type.Object({ type: Type.Literal('progress'), sessionId: Uuid, progress: ProgressSchema }),
  Type.Object({
    type: Type.Literal('stopped'),
    sessionId: Uuid,
    stopReason: StopReasonSchema,
    startTime: Type.Optional(Time),
    stopTime: Time,
    progress: ProgressSchema,
    error: Type.Optional(ChannelErrorSchema),
    files: Type.Array(Type.String({ maxLength: 4096 }), { maxItems: MAX_SESSION_FILES }),
  }),
  /** The upload of a session's capture ended (Completed or Failed); the server acks it. */
  Type.Object({ type: Type.Literal('uploaded'), sessionId: Uuid, upload: UploadReportSchema }),
  /** A ring needs the SAS of its file n (1-based), to upload it once it is finished. */
  Type.Object({
    type: Type.Literal('blobGrantRequest'),
    sessionId: Uuid,
    fileIndex: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }),
  }),
  /**
   * The end of a `readFile` answer; the bytes came before it in binary frames, each the 36
   * characters of the request id followed by data.
   */
  Type.Object({
    type: Type.Literal('readFileEnd'),
    requestId: Uuid,
    /** The file's size (the whole file, not the range). */
    size: Type.Optional(Count),
    error: Type.Optional(ChannelErrorSchema),
  }),
  /** Every second or so while a stream runs: what the viewer missed and how far behind it is. */
  Type.Object({
    type: Type.Literal('streamStats'),
    streamId: Uuid,
    packets: Count,
    dropped: Count,
    lagMs: Count,
  }),
  /** The stream ended (the capture stopped, or streamStop); final counts. */
  Type.Object({
    type: Type.Literal('streamEnd'),
    streamId: Uuid,
    packets: Count,
    dropped: Count,
    error: Type.Optional(ChannelErrorSchema),
  }),
]);
export type AgentMessage = Static<typeof AgentMessageSchema>;

export const ServerMessageSchema = Type.Union([
  /** Sent once after `hello` has been reconciled; the agent is now in sync. */
  Type.Object({ type: Type.Literal('welcome'), agentId: Uuid, serverTime: Time }),
  Type.Object({ type: Type.Literal('start'), assignment: CaptureAssignmentSchema }),
  Type.Object({ type: Type.Literal('stop'), sessionId: Uuid, reason: StopRequestReasonSchema }),
  /** The final state of this session is stored: the agent may forget it. */
  Type.Object({ type: Type.Literal('ack'), sessionId: Uuid }),
  /** The VM was deleted: stop everything (TargetDeleted), forget the credential, exit. */
  Type.Object({ type: Type.Literal('deregistered') }),
  /** The SAS for ring file n of a session (answer to `blobGrantRequest`). */
  Type.Object({
    type: Type.Literal('blobGrant'),
    sessionId: Uuid,
    fileIndex: Type.Integer({ minimum: 1 }),
    url: Type.String({ maxLength: 4096 }),
    sas: Type.String({ maxLength: 4096 }),
    expiresAt: Time,
  }),
  /**
   * Send bytes of a capture file of one of this agent's sessions (a download when the agent's
   * file is the only copy). `path` must be a file the session wrote; the agent checks it lies
   * under its capture root. `length` absent = to the end.
   */
  Type.Object({
    type: Type.Literal('readFile'),
    requestId: Uuid,
    sessionId: Uuid,
    path: Type.String({ maxLength: 4096 }),
    offset: Count,
    length: Type.Optional(Count),
  }),
  /** Abandon a `readFile` (the downloader went away). */
  Type.Object({ type: Type.Literal('readFileCancel'), requestId: Uuid }),
  /**
   * Start a live view of a running session's packets: the agent sends the pcap header, then
   * whole records as they are captured, in binary frames prefixed with the stream id (as for
   * `readFile`). A slow viewer never slows the capture: the agent drops records for the viewer
   * (never for the stored file) and counts them.
   */
  Type.Object({ type: Type.Literal('streamStart'), streamId: Uuid, sessionId: Uuid }),
  Type.Object({ type: Type.Literal('streamStop'), streamId: Uuid }),
]);
export type ServerMessage = Static<typeof ServerMessageSchema>;

const agentMessageCheck = Compile(AgentMessageSchema);
const serverMessageCheck = Compile(ServerMessageSchema);

/** Parses one frame from an agent; undefined when it is not valid JSON or not a known message. */
export function parseAgentMessage(text: string): AgentMessage | undefined {
  return parseWith(text, (v) => agentMessageCheck.Check(v));
}

/** Parses one frame from the server; undefined when it is not valid JSON or not a known message. */
export function parseServerMessage(text: string): ServerMessage | undefined {
  return parseWith(text, (v) => serverMessageCheck.Check(v));
}

function parseWith<T>(text: string, check: (value: unknown) => boolean): T | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  return check(value) ? (value as T) : undefined;
}

/** The characters of a VM's name: letters, digits, `-._`, starting with a letter or digit. */
export const VM_NAME_PATTERN = '^[A-Za-z0-9][-A-Za-z0-9._]*$';

/** A plain VM's name as a host enrolls under it. */
export const VmNameSchema = Type.String({ minLength: 1, maxLength: 64, pattern: VM_NAME_PATTERN });

/**
 * Enrollment: `POST /api/v1/agent/enroll` with `Authorization: Bearer <enrollment token>`. A
 * host enrolls as a plain VM (`name`) or as an instance of a scale set (`scaleSet`, and
 * `instanceId` to choose its id; without, the server assigns the next). The scale-set rules are
 * checked by the control plane (src/model/scale-set.ts), so that a refusal names the field and
 * the rule; so is "name or scaleSet, not both".
 */
export const EnrollRequestSchema = Type.Object({
  subscriptionId: Uuid,
  resourceGroup: Type.String({ minLength: 1, maxLength: 90, pattern: '^[-\\w._()]+$' }),
  name: Type.Optional(VmNameSchema),
  scaleSet: Type.Optional(Type.String({ maxLength: 256 })),
  instanceId: Type.Optional(Type.String({ maxLength: 64 })),
  location: Type.String({ minLength: 1, maxLength: 64, pattern: '^[a-z0-9]+$' }),
  hostname: Type.String({ maxLength: 255 }),
  captureRoot: Type.String({ minLength: 1, maxLength: 4096 }),
});
export type EnrollRequest = Static<typeof EnrollRequestSchema>;

export const EnrollResponseSchema = Type.Object({
  agentId: Uuid,
  /** The VM's ARM id (a scale-set instance's: …/virtualMachineScaleSets/{ss}/virtualMachines/{id}). */
  vmId: Type.String(),
  /** The agent's own credential; shown once. */
  credential: Type.String(),
  /** The VM's name (an instance's: `{scaleSet}_{instanceId}`); absent from older servers. */
  name: Type.Optional(Type.String({ maxLength: 128 })),
  /** A scale-set instance's id, as enrolled or assigned. */
  instanceId: Type.Optional(Type.String({ maxLength: 64 })),
});
export type EnrollResponse = Static<typeof EnrollResponseSchema>;
