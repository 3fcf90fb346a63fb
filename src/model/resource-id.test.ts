import { describe, expect, it } from 'vitest';
import { parseResourceId } from './resource-id.js';

const VM = 'Microsoft.Compute/virtualMachines';

describe('parseResourceId', () => {
  it('reads the parts of an id of the given type, as spelled', () => {
    expect(
      parseResourceId(
        '/subscriptions/s-1/resourceGroups/Web/providers/Microsoft.Compute/virtualMachines/Vm-01',
        VM,
      ),
    ).toEqual({ subscriptionId: 's-1', resourceGroup: 'Web', name: 'Vm-01' });
  });

  it('compares the type and fixed segments without regard to case, and allows a trailing /', () => {
    expect(
      parseResourceId(
        '/SUBSCRIPTIONS/s/resourcegroups/rg/providers/microsoft.compute/VIRTUALMACHINES/vm/',
        VM,
      ),
    ).toEqual({ subscriptionId: 's', resourceGroup: 'rg', name: 'vm' });
  });

  it.each([
    [
      'another type',
      '/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a',
    ],
    [
      'a child resource',
      '/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm/extensions/x',
    ],
    ['no resource group', '/subscriptions/s/providers/Microsoft.Compute/virtualMachines/vm'],
    [
      'an empty name',
      '/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/',
    ],
    ['a name', 'vm-01'],
  ])('refuses %s', (_what, id) => {
    expect(parseResourceId(id, VM)).toBeUndefined();
  });
});
