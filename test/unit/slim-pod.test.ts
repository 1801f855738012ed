import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { V1Pod } from '@kubernetes/client-node';
import { podConcernsEnbi, slimPod } from '../../src/kube/slim-pod.ts';
import { imageWaits } from '../../src/plan/on-demand.ts';

const managedFields = [{ manager: 'kubelet', operation: 'Update', fieldsV1: { 'f:status': { 'f:conditions': {} } } }];
const pod = (annotations: Record<string, string>, labels: Record<string, string> = {}): V1Pod => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'p', namespace: 'ns', uid: 'u1', resourceVersion: '7', annotations, labels, managedFields },
  spec: {
    nodeName: 'n1',
    containers: [{ name: 'app', image: 'registry.local/app:v1', env: [{ name: 'X', value: 'y'.repeat(1000) }] }],
  },
  status: {
    phase: 'Pending',
    containerStatuses: [
      {
        name: 'app',
        image: 'registry.local/app:v1',
        imageID: '',
        ready: false,
        restartCount: 0,
        state: { waiting: { reason: 'ErrImageNeverPull' } },
      },
    ],
  },
});

it('keeps pods with enbi annotations whole but for managedFields: what the planner reads is intact', () => {
  const full = pod({ 'enbi.hrzn.ee/flake': 'github:a/b/c#image' });
  const slim = slimPod(full);
  assert.equal(slim.metadata?.managedFields, undefined);
  assert.deepEqual({ ...slim, metadata: { ...slim.metadata, managedFields } }, full);
  const nodes = new Map();
  assert.deepEqual(imageWaits(slim, nodes), imageWaits(full, nodes));
  assert.equal(imageWaits(slim, nodes).length, 1);
});

it('keeps enbi build pods (enbi labels) whole', () => {
  const build = pod({}, { 'enbi.hrzn.ee/nixbuild': 'nb-1' });
  assert.ok(podConcernsEnbi(build));
  assert.deepEqual(slimPod(build).status, build.status);
});

it('reduces other pods to identity, node and phase', () => {
  const other = pod({ 'example.com/x': '1' }, { app: 'web' });
  assert.equal(podConcernsEnbi(other), false);
  const slim = slimPod(other);
  assert.deepEqual(slim, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'p', namespace: 'ns', uid: 'u1', resourceVersion: '7' },
    spec: { containers: [], nodeName: 'n1' },
    status: { phase: 'Pending' },
  });
  assert.ok(JSON.stringify(slim).length * 5 < JSON.stringify(other).length);
  assert.deepEqual(imageWaits(slim, new Map()), []);
});
