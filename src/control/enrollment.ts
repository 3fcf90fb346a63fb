import { randomUUID } from 'node:crypto';
import type { EnrollRequest } from '../model/channel.js';
import { WirewatchError } from '../model/errors.js';
import type { EnrollmentTokenRecord, VmRecord } from '../store/store.js';
import type { ControlContext } from './control-context.js';
import { vmResourceId } from './resource-ids.js';
import { generateToken, hashToken } from './tokens.js';
import type { NetworkWatchers } from './watchers.js';

/** What an enrollment answers: the VM's ids and its agent's credential (shown once). */
export interface Enrolled {
  readonly agentId: string;
  readonly vmId: string;
  readonly credential: string;
}

export function invalidEnrollmentToken(): WirewatchError {
  return new WirewatchError(
    'InvalidEnrollmentToken',
    'The enrollment token is not valid for this subscription, has expired, was revoked or was used',
  );
}

function alreadyEnrolled(vm: VmRecord): WirewatchError {
  return new WirewatchError(
    'VmAlreadyEnrolled',
    `VM '${vm.name}' in resource group '${vm.resourceGroup}' is enrolled already; enroll this host under another name, or have an Owner create a takeover token for this VM (wirewatch admin enroll-token create --takeover -g ${vm.resourceGroup} -n ${vm.name})`,
    { target: 'name' },
  );
}

/**
 * Enrollment's rules: which tokens enroll, which VM a takeover token may replace, that an
 * ordinary token never replaces an enrolled VM (insert-or-nothing, so racing enrollments register
 * one), the token's uses and the subscription's VM limit. Token expiry and times recorded are the
 * wall clock's.
 */
export class Enrollment {
  readonly #ctx: ControlContext;
  readonly #watchers: NetworkWatchers;

  constructor(ctx: ControlContext, watchers: NetworkWatchers) {
    this.#ctx = ctx;
    this.#watchers = watchers;
  }

  /** The enrollment token a bearer token is, if it may enroll now (not revoked, used or expired). */
  async findUsableToken(token: string | undefined): Promise<EnrollmentTokenRecord | undefined> {
    const record = token
      ? await this.#ctx.store.findEnrollmentTokenByHash(hashToken(token))
      : undefined;
    if (!record || record.revokedAt || record.usedAt || record.expiresAt.getTime() <= Date.now()) {
      return undefined;
    }
    return record;
  }

  /** Refuses a token that has enrolled all the VMs it may. */
  checkUses(record: EnrollmentTokenRecord): void {
    if (!record.takeover && record.maxUses !== null && record.uses >= record.maxUses) {
      throw new WirewatchError(
        'EnrollmentLimitReached',
        `This enrollment token has enrolled ${record.uses} VMs, all it may (maxUses ${record.maxUses}); create another enrollment token`,
      );
    }
  }

  /** Enrolls (or, with a takeover token, re-enrolls) the VM the body names; audited. */
  async enroll(
    record: EnrollmentTokenRecord,
    body: EnrollRequest,
    options: { sourceIp: string; maxVmsPerSubscription: number },
  ): Promise<Enrolled> {
    const { store, agents } = this.#ctx;
    if (record.subscriptionId !== body.subscriptionId.toLowerCase()) {
      // The same code as any other refusal of the token, but naming the field that differs.
      throw new WirewatchError(
        'InvalidEnrollmentToken',
        'The enrollment token is not valid for the subscriptionId in the body; enroll into the subscription the token was created in',
        { target: 'subscriptionId' },
      );
    }
    const takeover = record.takeover;
    if (
      takeover &&
      // Names compare case-insensitively, as the store compares them.
      (takeover.resourceGroup.toLowerCase() !== body.resourceGroup.toLowerCase() ||
        takeover.name.toLowerCase() !== body.name.toLowerCase())
    ) {
      throw new WirewatchError(
        'InvalidEnrollmentToken',
        `This takeover token enrolls only VM '${takeover.name}' in resource group '${takeover.resourceGroup}'`,
        { target: 'name' },
      );
    }
    const existing = await store.getVm(record.subscriptionId, body.resourceGroup, body.name);
    if (existing && agents.isConnected(existing.id)) {
      throw new WirewatchError(
        'AgentAlreadyConnected',
        `VM '${existing.name}' has a connected agent; stop it (or delete the VM) before enrolling another`,
        { target: 'name' },
      );
    }
    if (existing && !takeover) throw alreadyEnrolled(existing);
    // A takeover token works once, even when two hosts race with it.
    if (takeover && !(await store.useEnrollmentToken(record.id, new Date()))) {
      throw invalidEnrollmentToken();
    }
    const credential = generateToken('agent');
    const candidate: VmRecord = {
      id: existing?.id ?? randomUUID(),
      subscriptionId: record.subscriptionId,
      resourceGroup: body.resourceGroup,
      name: body.name,
      location: existing?.location ?? body.location,
      hostname: body.hostname,
      captureRoot: body.captureRoot,
      credentialHash: hashToken(credential),
      createdAt: existing?.createdAt ?? new Date(),
      lastSeenAt: null,
      scaleSet: null,
      instanceId: null,
    };
    // Only a takeover replaces a VM; a plain enrollment inserts or, losing a race, is refused.
    // A new VM is one of the token's uses and counts against the subscription's VMs.
    const vm = existing
      ? await store.upsertVm(candidate)
      : await store.createVm(candidate, {
          enrollmentTokenId: record.id,
          maxVmsPerSubscription: options.maxVmsPerSubscription,
        });
    if (!vm) {
      const winner = await store.getVm(record.subscriptionId, body.resourceGroup, body.name);
      throw alreadyEnrolled(winner ?? candidate);
    }
    await this.#watchers.ensureFor(vm.subscriptionId, vm.location);
    const vmId = vmResourceId(vm.subscriptionId, vm.resourceGroup, vm.name);
    await store.appendAudit({
      id: randomUUID(),
      subscriptionId: vm.subscriptionId,
      at: new Date(),
      actor: `enrollment:${record.id}`,
      action: existing ? 'virtualMachine.takeover' : 'virtualMachine.enroll',
      resourceId: vmId,
      sourceIp: options.sourceIp,
      detail: existing
        ? {
            hostname: vm.hostname,
            captureRoot: vm.captureRoot,
            previousHostname: existing.hostname,
            previousCaptureRoot: existing.captureRoot,
            previousLastSeen: existing.lastSeenAt?.toISOString() ?? null,
          }
        : { hostname: vm.hostname, captureRoot: vm.captureRoot },
    });
    return { agentId: vm.id, vmId, credential };
  }

  /** The VM whose agent holds this credential (the agent channel's login); undefined if none. */
  vmOfCredential(credential: string): Promise<VmRecord | undefined> {
    return this.#ctx.store.getVmByCredentialHash(hashToken(credential));
  }
}
