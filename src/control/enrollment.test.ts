import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createControlFixture, type ControlFixture } from '../../test/support/control-context.js';
import { enrollmentToken, subA } from '../../test/support/store-conformance/fixtures.js';
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
});
