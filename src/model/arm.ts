/**
 * Request schemas of the ARM-compatible API and the native API (TypeBox: one schema gives the
 * route's validation and its static type; the CLI and portal import the same schemas).
 *
 * Field names follow Azure's networkWatcher.json exactly. Where the capture engine already has a
 * parser with a precise message (filters, limits), the schema only checks the JSON type and the
 * parser checks the rule, so the error names the field and the rule it broke.
 */
import { Type, type Static } from 'typebox';
import { EnrollRequestSchema, VM_NAME_PATTERN } from './channel.js';

const Text = (maxLength: number) => Type.String({ maxLength });

export const PacketCaptureFilterSchema = Type.Object({
  protocol: Type.Optional(Text(16)),
  localIPAddress: Type.Optional(Text(4096)),
  remoteIPAddress: Type.Optional(Text(4096)),
  localPort: Type.Optional(Text(4096)),
  remotePort: Type.Optional(Text(4096)),
});

export const PacketCaptureStorageLocationSchema = Type.Object({
  storageId: Type.Optional(Text(1024)),
  storagePath: Type.Optional(Text(2048)),
  filePath: Type.Optional(Text(4096)),
  localPath: Type.Optional(Text(4096)),
});

export const PacketCaptureParametersSchema = Type.Object({
  target: Text(1024),
  scope: Type.Optional(
    Type.Object({
      include: Type.Optional(Type.Array(Text(1024), { maxItems: 1000 })),
      exclude: Type.Optional(Type.Array(Text(1024), { maxItems: 1000 })),
    }),
  ),
  // AzureVM or AzureVMSS in any letter case (checked, and echoed in Azure's spelling, by
  // src/control/capture-parameters.ts).
  targetType: Type.Optional(Text(16)),
  bytesToCapturePerPacket: Type.Optional(Type.Number()),
  totalBytesPerSession: Type.Optional(Type.Number()),
  timeLimitInSeconds: Type.Optional(Type.Number()),
  storageLocation: PacketCaptureStorageLocationSchema,
  filters: Type.Optional(Type.Array(PacketCaptureFilterSchema, { maxItems: 1000 })),
  continuousCapture: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
  captureSettings: Type.Optional(
    Type.Object({
      fileCount: Type.Optional(Type.Number()),
      fileSizeInBytes: Type.Optional(Type.Number()),
      sessionTimeLimitInSeconds: Type.Optional(Type.Number()),
    }),
  ),
  // wirewatch's own: capture the agent's own connections too (default false: left out).
  includeOwnTraffic: Type.Optional(Type.Boolean()),
});

/** PUT body of a packet capture (Azure's PacketCapture). */
export const PacketCaptureSchema = Type.Object({ properties: PacketCaptureParametersSchema });
export type PacketCaptureInput = Static<typeof PacketCaptureSchema>;

/** PUT body of a network watcher (Azure's Common.NetworkWatcher, writable fields). */
export const NetworkWatcherSchema = Type.Object({
  location: Text(64),
  tags: Type.Optional(Type.Record(Type.String({ maxLength: 512 }), Text(256))),
  properties: Type.Optional(Type.Object({})),
});
export type NetworkWatcherInput = Static<typeof NetworkWatcherSchema>;

export const RoleSchema = Type.Enum(['Reader', 'Contributor', 'Owner']);

export const CreateSubscriptionSchema = Type.Object({
  displayName: Type.String({ minLength: 1, maxLength: 128 }),
});

export const CreateTokenSchema = Type.Object({ role: RoleSchema });

/** How many VMs an enrollment token enrolls when its creator does not say (maxUses). */
export const DEFAULT_ENROLLMENT_TOKEN_MAX_USES = 1000;

export const CreateEnrollmentTokenSchema = Type.Object({
  /** Hours until the token expires; default 24, or 1 for a takeover token. */
  expiresInHours: Type.Optional(Type.Integer({ minimum: 1, maximum: 8760 })),
  /**
   * How many VMs the token may enroll; default DEFAULT_ENROLLMENT_TOKEN_MAX_USES. A takeover
   * token enrolls one VM whatever this says.
   */
  maxUses: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
  /**
   * A takeover token: it enrolls only this VM, once, replacing the credential of the VM if it
   * is enrolled already (a rebuilt host). Without it, enrolling an existing VM is refused. A
   * scale-set instance is named `{scaleSet}_{instanceId}` here.
   */
  takeover: Type.Optional(
    Type.Object(
      {
        resourceGroup: EnrollRequestSchema.properties.resourceGroup,
        // A VM's name, or a scale-set instance's: `{scaleSet}_{instanceId}` (longer than 64).
        name: Type.String({ minLength: 1, maxLength: 74, pattern: VM_NAME_PATTERN }),
      },
      { additionalProperties: false },
    ),
  ),
});
export type CreateSubscriptionInput = Static<typeof CreateSubscriptionSchema>;
export type CreateTokenInput = Static<typeof CreateTokenSchema>;
export type CreateEnrollmentTokenInput = Static<typeof CreateEnrollmentTokenSchema>;

/**
 * POST body of `/api/v1/subscriptions/{s}/storageAccounts`. The name rule (Azure's: 3–24
 * lower-case letters and digits) is checked by the route, so that it answers InvalidResourceName;
 * the connection string is parsed by src/blob/connection-string.ts (InvalidConnectionString).
 */
export const CreateStorageAccountSchema = Type.Object({
  name: Type.String({ maxLength: 64 }),
  resourceGroup: Type.String({ maxLength: 90 }),
  connectionString: Type.String({ maxLength: 4096 }),
});
export type CreateStorageAccountInput = Static<typeof CreateStorageAccountSchema>;
