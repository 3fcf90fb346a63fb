import { randomUUID } from 'node:crypto';
import type { EnrollRequest } from '../model/channel.js';
import { WirewatchError } from '../model/errors.js';
import {
  INSTANCE_ID_RULE,
  instanceVmName,
  isInstanceId,
  isScaleSetName,
  MAX_INSTANCE_ID,
  SCALE_SET_NAME_RULE,
} from '../model/scale-set.js';
import type { EnrollmentTokenRecord, VmRecord } from '../store/store.js';
import type { ControlContext } from './control-context.js';
import { hostResourceId } from './resource-ids.js';
import { generateToken, hashToken } from './tokens.js';
import type { NetworkWatchers } from './watchers.js';

/** What an enrollment answers: the VM's ids and its agent's credential (shown once). */
export interface Enrolled {
  readonly agentId: string;
  readonly vmId: string;
  readonly credential: string;
  readonly name: string;
  /** A scale-set instance's id. */
  readonly instanceId?: string;
}

export function invalidEnrollmentToken(): WirewatchError {
  return new WirewatchError(
    'InvalidEnrollmentToken',
    'The enrollment token is not valid for this subscription, has expired, was revoked or was used',
  );
}

/** `field`: the request's field at fault, `name` for a VM, `instanceId` for an instance. */
function alreadyEnrolled(vm: VmRecord, field: 'name' | 'instanceId'): WirewatchError {
  const what =
    vm.scaleSet === null
      ? `VM '${vm.name}'`
      : `Instance '${vm.instanceId}' of scale set '${vm.scaleSet}'`;
  return new WirewatchError(
    'VmAlreadyEnrolled',
    `${what} in resource group '${vm.resourceGroup}' is enrolled already; enroll this host under another name, or have an Owner create a takeover token for this VM (wirewatch admin enroll-token create --takeover -g ${vm.resourceGroup} -n ${vm.name})`,
    { target: field },
  );
}

/** Where an enrollment puts the host: a plain VM, an instance, or a new instance of a scale set. */
export type EnrollTarget =
  | { readonly kind: 'vm'; readonly name: string }
  | { readonly kind: 'instance'; readonly scaleSet: string; readonly instanceId: string }
  /** An instance whose id the server assigns: the next free one. */
  | { readonly kind: 'newInstance'; readonly scaleSet: string };

/**
 * The host an enrollment body names: `name` (a VM) or `scaleSet` with an optional `instanceId`
 * (an instance), checked against Azure's rules; each refusal a 400 naming the field.
 */
export function enrollTargetOf(body: EnrollRequest): EnrollTarget {
  const { name, scaleSet, instanceId } = body;
  if (scaleSet === undefined) {
    if (instanceId !== undefined) {
      throw new WirewatchError(
        'InvalidRequestContent',
        'instanceId: is only for a scale-set instance; give scaleSet too (or drop instanceId)',
        { target: 'instanceId' },
      );
    }
    if (name === undefined) {
      throw new WirewatchError(
        'InvalidRequestContent',
        'name: is required (or scaleSet, to enroll the host as an instance of a scale set)',
        { target: 'name' },
      );
    }
    return { kind: 'vm', name };
  }
  if (name !== undefined) {
    throw new WirewatchError(
      'InvalidRequestContent',
      "name: give either name (a VM) or scaleSet (an instance of a scale set, named '{scaleSet}_{instanceId}'), not both",
      { target: 'name' },
    );
  }
  if (!isScaleSetName(scaleSet)) {
    throw new WirewatchError(
      'InvalidResourceName',
      `scaleSet: ${JSON.stringify(scaleSet.slice(0, 100))} is not a valid scale set name: ${SCALE_SET_NAME_RULE}`,
      { target: 'scaleSet' },
    );
  }
  if (instanceId !== undefined && !isInstanceId(instanceId)) {
    throw new WirewatchError(
      'InvalidRequestContent',
      `instanceId: ${JSON.stringify(instanceId)} is not an instance id: ${INSTANCE_ID_RULE}`,
      { target: 'instanceId' },
    );
  }
  return instanceId === undefined
    ? { kind: 'newInstance', scaleSet }
    : { kind: 'instance', scaleSet, instanceId };
}

/** What the route passes along with an enrollment. */
export interface EnrollOptions {
  readonly sourceIp: string;
  readonly maxVmsPerSubscription: number;
}

function limitsOf(record: EnrollmentTokenRecord, options: EnrollOptions) {
  return { enrollmentTokenId: record.id, maxVmsPerSubscription: options.maxVmsPerSubscription };
}

/** The record an enrollment writes; a takeover keeps the VM's id, location and creation time. */
function newVm(
  record: EnrollmentTokenRecord,
  body: EnrollRequest,
  host: {
    name: string;
    scaleSet: string | null;
    instanceId: string | null;
    credential: string;
    existing: VmRecord | undefined;
  },
): VmRecord {
  const { existing } = host;
  return {
    id: existing?.id ?? randomUUID(),
    subscriptionId: record.subscriptionId,
    resourceGroup: body.resourceGroup,
    name: host.name,
    location: existing?.location ?? body.location,
    hostname: body.hostname,
    captureRoot: body.captureRoot,
    credentialHash: hashToken(host.credential),
    createdAt: existing?.createdAt ?? new Date(),
    lastSeenAt: null,
    scaleSet: host.scaleSet,
    instanceId: host.instanceId,
  };
}

/** The most attempts at the next free instance id when racing enrollments keep taking it. */
const MAX_ASSIGN_ATTEMPTS = 100;

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

  /**
   * Enrolls (or, with a takeover token, re-enrolls) the VM or scale-set instance the body names;
   * an instance without an id gets the next free one. Audited.
   */
  async enroll(
    record: EnrollmentTokenRecord,
    body: EnrollRequest,
    options: EnrollOptions,
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
    const target = enrollTargetOf(body);
    const takeover = record.takeover;
    if (target.kind === 'newInstance') {
      if (takeover) {
        throw new WirewatchError(
          'InvalidRequestContent',
          `instanceId: a takeover token re-enrolls one enrolled instance ('${takeover.name}'); give its instanceId`,
          { target: 'instanceId' },
        );
      }
      const credential = generateToken('agent');
      const vm = await this.#assignInstance(record, body, {
        scaleSet: target.scaleSet,
        credential,
        options,
      });
      return this.#register(record, credential, options, vm);
    }
    // An instance's name is spelled with its scale set's name as the scale set has it.
    let scaleSet: string | null = null;
    let name = target.kind === 'vm' ? target.name : '';
    if (target.kind === 'instance') {
      scaleSet = await this.#scaleSetName(record, body, target.scaleSet);
      name = instanceVmName(scaleSet, target.instanceId);
    }
    const field = target.kind === 'vm' ? 'name' : 'instanceId';
    if (
      takeover &&
      // Names compare case-insensitively, as the store compares them.
      (takeover.resourceGroup.toLowerCase() !== body.resourceGroup.toLowerCase() ||
        takeover.name.toLowerCase() !== name.toLowerCase())
    ) {
      throw new WirewatchError(
        'InvalidEnrollmentToken',
        `This takeover token enrolls only VM '${takeover.name}' in resource group '${takeover.resourceGroup}'`,
        { target: field },
      );
    }
    const existing = await store.getVm(record.subscriptionId, body.resourceGroup, name);
    if (existing && agents.isConnected(existing.id)) {
      throw new WirewatchError(
        'AgentAlreadyConnected',
        `VM '${existing.name}' has a connected agent; stop it (or delete the VM) before enrolling another`,
        { target: field },
      );
    }
    // A plain VM and an instance never take each other's place, not even by takeover.
    if (existing && (!takeover || (existing.scaleSet === null) !== (target.kind === 'vm'))) {
      throw alreadyEnrolled(existing, field);
    }
    // A takeover token works once, even when two hosts race with it.
    if (takeover && !(await store.useEnrollmentToken(record.id, new Date()))) {
      throw invalidEnrollmentToken();
    }
    const credential = generateToken('agent');
    const candidate = newVm(record, body, {
      name,
      scaleSet,
      instanceId: target.kind === 'instance' ? target.instanceId : null,
      credential,
      existing,
    });
    // Only a takeover replaces a VM; a plain enrollment inserts or, losing a race, is refused.
    // A new VM is one of the token's uses and counts against the subscription's VMs.
    const vm = existing
      ? await store.upsertVm(candidate)
      : await store.createVm(candidate, limitsOf(record, options));
    if (!vm) {
      const winner = await store.getVm(record.subscriptionId, body.resourceGroup, name);
      throw alreadyEnrolled(winner ?? candidate, field);
    }
    return this.#register(record, credential, options, vm, existing);
  }

  /** The scale set's name as its instances spell it (names compare case-insensitively). */
  async #scaleSetName(
    record: EnrollmentTokenRecord,
    body: EnrollRequest,
    scaleSet: string,
  ): Promise<string> {
    const instances = await this.#ctx.store.listScaleSetInstances(
      record.subscriptionId,
      body.resourceGroup,
      scaleSet,
    );
    return instances[0]?.scaleSet ?? scaleSet;
  }

  /**
   * Enrolls a new instance of `scaleSet` under the next free id: one past the highest of the
   * scale set's instances (ids are not reused while a higher one exists). Racing enrollments
   * cannot take one id twice: the store inserts a name once, and the loser tries the next.
   */
  async #assignInstance(
    record: EnrollmentTokenRecord,
    body: EnrollRequest,
    {
      scaleSet,
      credential,
      options,
    }: { scaleSet: string; credential: string; options: EnrollOptions },
  ): Promise<VmRecord> {
    const { store } = this.#ctx;
    let floor = 0;
    for (let attempt = 0; attempt < MAX_ASSIGN_ATTEMPTS; attempt++) {
      const instances = await store.listScaleSetInstances(
        record.subscriptionId,
        body.resourceGroup,
        scaleSet,
      );
      const highest = instances.at(-1)?.instanceId;
      const next = Math.max(floor, highest == null ? 0 : Number(highest) + 1);
      if (next > MAX_INSTANCE_ID) {
        throw new WirewatchError(
          'EnrollmentLimitReached',
          `Scale set '${scaleSet}' has used every instance id up to ${MAX_INSTANCE_ID}; enroll with an explicit instanceId that is free`,
          { target: 'instanceId' },
        );
      }
      // The scale set keeps the casing its first instance gave it.
      const name = instanceVmName(instances[0]?.scaleSet ?? scaleSet, String(next));
      const candidate = newVm(record, body, {
        name,
        scaleSet: instances[0]?.scaleSet ?? scaleSet,
        instanceId: String(next),
        credential,
        existing: undefined,
      });
      const vm = await store.createVm(candidate, limitsOf(record, options));
      if (vm) return vm;
      // Taken meanwhile (or by a plain VM of that name): try past it.
      floor = next + 1;
    }
    throw new Error(
      `no free instance id in scale set '${scaleSet}' after ${MAX_ASSIGN_ATTEMPTS} attempts`,
    );
  }

  /** What follows every enrollment: the location's network watcher, the audit entry, the answer. */
  async #register(
    record: EnrollmentTokenRecord,
    credential: string,
    options: EnrollOptions,
    vm: VmRecord,
    existing?: VmRecord,
  ): Promise<Enrolled> {
    await this.#watchers.ensureFor(vm.subscriptionId, vm.location);
    const vmId = hostResourceId(vm);
    await this.#ctx.store.appendAudit({
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
    return {
      agentId: vm.id,
      vmId,
      credential,
      name: vm.name,
      ...(vm.instanceId === null ? {} : { instanceId: vm.instanceId }),
    };
  }

  /** The VM whose agent holds this credential (the agent channel's login); undefined if none. */
  vmOfCredential(credential: string): Promise<VmRecord | undefined> {
    return this.#ctx.store.getVmByCredentialHash(hashToken(credential));
  }
}
