// ipcache ownership against the real pinned LPM map: each writer reconciles
// and deletes only its own entries, the owner is in the entry (so it
// survives the process), the higher-ranked owner holds a contested prefix,
// and an entry written before owners existed is adopted by whoever wants it.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { BpfObject, removePinTree } from '../../src/bpf/index.ts';
import { deleteEndpointIpcache, listIpcache, putEndpointIpcache, reconcileIpcache } from '../../src/datapath/ipcache.ts';
import * as codec from '../../src/datapath/maps/ipcache.ts';
import { MAP_NAMES, withNodeMap } from '../../src/datapath/node-maps.ts';
import { objectPath } from '../../src/datapath/objects.ts';
import { globalsDir } from '../../src/datapath/paths.ts';
import { projectBpffs } from '../helpers/membrane.ts';
import { uniqueName } from '../helpers/netns.ts';
import { rootOnly } from '../helpers/skip.ts';

/** A node pin directory holding the real maps (pinned by loading bpf_overlay.o once), removed after the test. */
function nodeDir(t: TestContext): string {
  const dir = `${projectBpffs()}/${uniqueName('ipc')}`;
  t.after(() => removePinTree(dir));
  BpfObject.open(objectPath('bpf_overlay'), { pinRoot: globalsDir(dir), mapPins: { cilium_calls: `${globalsDir(dir)}/cilium_calls_overlay_2` } }).close();
  return dir;
}

const table = (dir: string) => Object.fromEntries(listIpcache(dir).map((e) => [e.prefix, `${e.identity}${e.tunnelEndpoint ? `@${e.tunnelEndpoint}` : ''} ${e.owner}`]));

test('ipcache: each owner reconciles only its own entries; the owner is stored in the entry', { skip: rootOnly() }, (t) => {
  const dir = nodeDir(t);
  reconcileIpcache(dir, 'node', new Map([['0.0.0.0/0', { identity: 2 }], ['10.244.1.1/32', { identity: 1 }]]));
  reconcileIpcache(dir, 'cluster', new Map([['10.244.2.0/24', { identity: 2, tunnelEndpoint: '10.13.0.12' }], ['10.244.2.7/32', { identity: 300, tunnelEndpoint: '10.13.0.12' }]]));
  putEndpointIpcache(dir, '10.244.1.5', 400);
  assert.deepEqual(table(dir), {
    '0.0.0.0/0': '2 node', '10.244.1.1/32': '1 node', '10.244.1.5/32': '400 endpoint',
    '10.244.2.0/24': '2@10.13.0.12 cluster', '10.244.2.7/32': '300@10.13.0.12 cluster',
  });

  // The cluster forgets a pod: only its entry goes; nothing of node or endpoint is touched.
  const r = reconcileIpcache(dir, 'cluster', new Map([['10.244.2.0/24', { identity: 2, tunnelEndpoint: '10.13.0.12' }]]));
  assert.deepEqual([r.written, r.deleted], [0, 1]);
  assert.deepEqual(Object.keys(table(dir)).sort(), ['0.0.0.0/0', '10.244.1.1/32', '10.244.1.5/32', '10.244.2.0/24']);
  // An empty endpoint set removes the endpoint's /32 and nothing else.
  assert.equal(reconcileIpcache(dir, 'endpoint', new Map()).deleted, 1);
  assert.deepEqual(Object.keys(table(dir)).sort(), ['0.0.0.0/0', '10.244.1.1/32', '10.244.2.0/24']);
  // Without prune nothing is deleted (an agent that has not re-learned its peers).
  assert.equal(reconcileIpcache(dir, 'cluster', new Map(), { prune: false }).deleted, 0);
  assert.ok(table(dir)['10.244.2.0/24']);
});

test('ipcache: a contested prefix stays with the higher-ranked owner; an unowned entry is adopted', { skip: rootOnly() }, (t) => {
  const dir = nodeDir(t);
  // A stale remote pod /32 for an IP now used by a local pod: the endpoint takes it over.
  reconcileIpcache(dir, 'cluster', new Map([['10.244.1.9/32', { identity: 300, tunnelEndpoint: '10.13.0.12' }]]));
  putEndpointIpcache(dir, '10.244.1.9', 400);
  assert.equal(table(dir)['10.244.1.9/32'], '400 endpoint');
  // The cluster cannot take it back, and a cluster reconcile does not delete it (not its own).
  const r = reconcileIpcache(dir, 'cluster', new Map([['10.244.1.9/32', { identity: 300, tunnelEndpoint: '10.13.0.12' }]]));
  assert.deepEqual(r.contested, ['10.244.1.9/32']);
  assert.equal(reconcileIpcache(dir, 'cluster', new Map()).deleted, 0);
  assert.equal(table(dir)['10.244.1.9/32'], '400 endpoint');
  // deleteEndpointIpcache removes only an endpoint's entry: not the /0 an LPM lookup of a missing /32 finds.
  reconcileIpcache(dir, 'node', new Map([['0.0.0.0/0', { identity: 2 }]]));
  assert.equal(deleteEndpointIpcache(dir, '10.244.1.77'), false);
  assert.equal(table(dir)['0.0.0.0/0'], '2 node');
  assert.equal(deleteEndpointIpcache(dir, '10.244.1.9'), true);

  // Written before owners existed (owner byte 0): listed as unknown, adopted by the first owner that wants it.
  withNodeMap(dir, MAP_NAMES.ipcache, (m) => m.update(codec.encodeKey('10.244.3.0/24'), codec.encodeValue({ identity: 2, tunnelEndpoint: '10.13.0.13' })));
  assert.equal(table(dir)['10.244.3.0/24'], '2@10.13.0.13 unknown');
  assert.equal(reconcileIpcache(dir, 'cluster', new Map()).deleted, 0, 'nobody deletes an entry that is not theirs');
  reconcileIpcache(dir, 'cluster', new Map([['10.244.3.0/24', { identity: 2, tunnelEndpoint: '10.13.0.13' }]]));
  assert.equal(table(dir)['10.244.3.0/24'], '2@10.13.0.13 cluster');
});
