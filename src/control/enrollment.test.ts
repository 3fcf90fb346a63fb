import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createControlFixture, type ControlFixture } from '../../test/support/control-context.js';
import { enrollmentToken, subA } from '../../test/support/store-conformance/fixtures.js';
import type { EnrollRequest } from '../model/channel.js';
import type { EnrollmentTokenRecord } from '../store/store.js';
import { Enrollment } from './enrollment.js';
import { CaptureOperations } from './operations.js';
import { hashToken } from './tokens.js';
import { NetworkWatchers } from './watchers.js';

const limits = { sourceIp: '192.0.2.7', maxVmsPerSubscription: 100 };

describe('Enrollment', () => {
  let f: ControlFixture;
  let enrollment: Enrollment;
  beforeEach(async () => {
    f = await createControlFixture();
    const memory = f.memory();
    const watchers = new NetworkWatchers(f.ctx, memory, new CaptureOperations(f.ctx, memory, 1));
    enrollment = new Enrollment(f.ctx, watchers);
  });
  afterEach(async () => {
    await f.close();
  });

  async function addToken(
    secret: string,
    overrides: Partial<EnrollmentTokenRecord> = {},
  ): Promise<EnrollmentTokenRecord> {
    const record = enrollmentToken(subA, {
      hash: hashToken(secret),
      expiresAt: new Date(Date.now() + 3_600_000),
      ...overrides,
    });
    await f.store.createEnrollmentToken(record);
    return record;
  }

  const body = (name: string) => ({
    subscriptionId: subA.toUpperCase(),
    resourceGroup: 'web',
    name,
    location: 'northeurope',
    hostname: `${name}.example`,
    captureRoot: '/var/captures',
  });

  it('finds only tokens that may enroll now', async () => {
    await addToken('wwe_ok');
    await addToken('wwe_old', { expiresAt: new Date(Date.now() - 1) });
    await addToken('wwe_revoked', { revokedAt: new Date() });
    expect(await enrollment.findUsableToken('wwe_ok')).toBeDefined();
    for (const t of ['wwe_old', 'wwe_revoked', 'wwe_unknown', undefined]) {
      expect(await enrollment.findUsableToken(t)).toBeUndefined();
    }
  });

  it('refuses a token that has used up its maxUses', async () => {
    const record = await addToken('wwe_used', { maxUses: 2, uses: 2 });
    expect(() => enrollment.checkUses(record)).toThrow(
      expect.objectContaining({ code: 'EnrollmentLimitReached' }),
    );
  });

  it('enrolls once with an ordinary token, brings the watcher, audits; a re-enroll is refused', async () => {
    const record = await addToken('wwe_a');
    const enrolled = await enrollment.enroll(record, body('vm-a'), limits);
    expect(enrolled.credential).toMatch(/^wwa_/);
    expect(await f.store.getVmById(enrolled.agentId)).toMatchObject({ name: 'vm-a' });
    expect(await f.store.findWatcherByLocation(subA, 'northeurope')).toBeDefined();
    const audit = await f.store.listAudit(subA, { limit: 10 });
    expect(audit.items[0]).toMatchObject({
      action: 'virtualMachine.enroll',
      actor: `enrollment:${record.id}`,
      sourceIp: '192.0.2.7',
    });
    await expect(enrollment.enroll(record, body('vm-a'), limits)).rejects.toMatchObject({
      code: 'VmAlreadyEnrolled',
    });
  });

  it('a takeover token enrolls only its VM, once', async () => {
    const plain = await addToken('wwe_b');
    await enrollment.enroll(plain, body('vm-b'), limits);
    const takeover = await addToken('wwe_t', { takeover: { resourceGroup: 'WEB', name: 'VM-B' } });
    await expect(enrollment.enroll(takeover, body('vm-c'), limits)).rejects.toMatchObject({
      code: 'InvalidEnrollmentToken',
      target: 'name',
    });
    const replaced = await enrollment.enroll(takeover, body('vm-b'), limits);
    expect((await f.store.listAudit(subA, { limit: 10 })).items[0]).toMatchObject({
      action: 'virtualMachine.takeover',
      resourceId: replaced.vmId,
    });
    await expect(enrollment.enroll(takeover, body('vm-b'), limits)).rejects.toMatchObject({
      code: 'InvalidEnrollmentToken',
    });
  });

  it('refuses another subscription in the body and a VM whose agent is connected', async () => {
    const record = await addToken('wwe_c');
    await expect(
      enrollment.enroll(record, { ...body('vm-d'), subscriptionId: 'other' }, limits),
    ).rejects.toMatchObject({ code: 'InvalidEnrollmentToken', target: 'subscriptionId' });
    const takeover = await addToken('wwe_t2', {
      takeover: { resourceGroup: 'Fleet-RG', name: 'Web-01' },
    });
    f.agents.connected.add(f.vmId);
    await expect(
      enrollment.enroll(
        takeover,
        { ...body('Web-01'), resourceGroup: 'Fleet-RG', location: 'westus' },
        limits,
      ),
    ).rejects.toMatchObject({ code: 'AgentAlreadyConnected' });
  });

  describe('scale-set instances', () => {
    const member = (extra: { scaleSet?: string; instanceId?: string; name?: string } = {}) => {
      const { name: _name, ...rest } = body('unused');
      return { ...rest, scaleSet: 'web', ...extra };
    };

    it('assigns the next free instance id, one past the highest; racers get distinct ids', async () => {
      const record = await addToken('wwe_ss');
      const first = await enrollment.enroll(record, member(), limits);
      expect(first).toMatchObject({ name: 'web_0', instanceId: '0' });
      expect(first.vmId).toBe(
        `/subscriptions/${subA}/resourceGroups/web/providers/Microsoft.Compute/virtualMachineScaleSets/web/virtualMachines/0`,
      );
      expect(await f.store.getVmById(first.agentId)).toMatchObject({
        name: 'web_0',
        scaleSet: 'web',
        instanceId: '0',
      });
      // An explicit id leaves a gap; the next assigned id is past it. The first casing stays.
      await enrollment.enroll(record, member({ scaleSet: 'WEB', instanceId: '5' }), limits);
      const racers = await Promise.all(
        [1, 2, 3, 4].map(() => enrollment.enroll(record, member({ scaleSet: 'Web' }), limits)),
      );
      expect(racers.map((r) => r.instanceId).sort()).toEqual(['6', '7', '8', '9']);
      expect(racers.every((r) => r.name.startsWith('web_'))).toBe(true);
      const instances = await f.store.listScaleSetInstances(subA, 'web', 'web');
      expect(instances.map((v) => v.instanceId)).toEqual(['0', '5', '6', '7', '8', '9']);
      expect(instances.map((v) => v.name)).toEqual(instances.map((v) => `web_${v.instanceId}`));
      expect(new Set(instances.map((v) => v.scaleSet))).toEqual(new Set(['web']));
      expect((await f.store.listAudit(subA, { limit: 1 })).items[0]).toMatchObject({
        action: 'virtualMachine.enroll',
      });
    });

    it('skips an id whose name a plain VM holds', async () => {
      const record = await addToken('wwe_plain');
      await enrollment.enroll(record, body('web_0'), limits);
      expect((await enrollment.enroll(record, member(), limits)).instanceId).toBe('1');
      // An instance cannot take a plain VM's name, nor a plain VM an instance's.
      await expect(
        enrollment.enroll(record, member({ instanceId: '0' }), limits),
      ).rejects.toMatchObject({ code: 'VmAlreadyEnrolled', target: 'instanceId' });
      await expect(enrollment.enroll(record, body('WEB_1'), limits)).rejects.toMatchObject({
        code: 'VmAlreadyEnrolled',
        target: 'name',
      });
    });

    it('refuses bad names, ids and combinations with a 400 naming the field', async () => {
      const record = await addToken('wwe_bad');
      const cases: [EnrollRequest, string, string][] = [
        [member({ scaleSet: 'web_1' }), 'InvalidResourceName', 'scaleSet'],
        [member({ scaleSet: '-web' }), 'InvalidResourceName', 'scaleSet'],
        [member({ scaleSet: 'a'.repeat(65) }), 'InvalidResourceName', 'scaleSet'],
        [member({ scaleSet: 'web.1' }), 'InvalidResourceName', 'scaleSet'],
        [member({ instanceId: 'x1' }), 'InvalidRequestContent', 'instanceId'],
        [member({ instanceId: '01' }), 'InvalidRequestContent', 'instanceId'],
        [member({ instanceId: '-1' }), 'InvalidRequestContent', 'instanceId'],
        [member({ instanceId: '1000000000' }), 'InvalidRequestContent', 'instanceId'],
        [member({ name: 'vm-x' }), 'InvalidRequestContent', 'name'],
        [{ ...body('vm-y'), instanceId: '1' }, 'InvalidRequestContent', 'instanceId'],
      ];
      for (const [request, code, target] of cases) {
        await expect(
          enrollment.enroll(record, request, limits),
          JSON.stringify(request),
        ).rejects.toMatchObject({ code, target, status: 400 });
      }
      const { name: _name, ...nameless } = body('x');
      await expect(enrollment.enroll(record, nameless, limits)).rejects.toMatchObject({
        code: 'InvalidRequestContent',
        target: 'name',
      });
      expect(await f.store.listVms(subA, 'web')).toEqual([]);
    });

    it('an instance is enrolled once; a scale set keeps its location; instances count as VMs', async () => {
      const record = await addToken('wwe_once');
      await enrollment.enroll(record, member({ instanceId: '3' }), limits);
      await expect(
        enrollment.enroll(record, member({ instanceId: '3' }), limits),
      ).rejects.toMatchObject({
        code: 'VmAlreadyEnrolled',
        target: 'instanceId',
        message: expect.stringContaining('-n web_3'),
      });
      await expect(
        enrollment.enroll(record, { ...member(), location: 'westus' }, limits),
      ).rejects.toMatchObject({ code: 'InvalidLocation', target: 'location' });
      // The fixture's VM and web_3: a limit of 2 VMs is reached.
      await expect(
        enrollment.enroll(record, member(), { ...limits, maxVmsPerSubscription: 2 }),
      ).rejects.toMatchObject({ code: 'EnrollmentLimitReached' });
    });

    it('a takeover token names an instance as {scaleSet}_{id} and needs its instanceId', async () => {
      const record = await addToken('wwe_i');
      const before = await enrollment.enroll(record, member(), limits);
      const takeover = await addToken('wwe_ti', {
        takeover: { resourceGroup: 'web', name: 'WEB_0' },
      });
      await expect(enrollment.enroll(takeover, member(), limits)).rejects.toMatchObject({
        code: 'InvalidRequestContent',
        target: 'instanceId',
      });
      await expect(
        enrollment.enroll(takeover, member({ instanceId: '1' }), limits),
      ).rejects.toMatchObject({ code: 'InvalidEnrollmentToken', target: 'instanceId' });
      // A plain VM of the instance's name is not the instance.
      await expect(enrollment.enroll(takeover, body('web_0'), limits)).rejects.toMatchObject({
        code: 'VmAlreadyEnrolled',
      });
      const after = await enrollment.enroll(takeover, member({ instanceId: '0' }), limits);
      expect(after).toMatchObject({ agentId: before.agentId, name: 'web_0', instanceId: '0' });
      expect(after.credential).not.toBe(before.credential);
      expect((await f.store.listAudit(subA, { limit: 1 })).items[0]).toMatchObject({
        action: 'virtualMachine.takeover',
        resourceId: before.vmId,
      });
    });
  });
});
