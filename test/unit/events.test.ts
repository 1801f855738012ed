// Event messages carry text from others (a pod's image string, a Nix error line): they go through the same
// printable filter as logs and conditions, within the 1024 characters kept.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CoreV1Api, CoreV1EventList } from '@kubernetes/client-node';
import { eventMessage, recordEvent } from '../../src/controller/events.ts';

test('control characters in an Event message are escaped as in logs', async () => {
  const image = 'registry.local/app:v1\u001b[2K\u001b[1Ginjected\rfake line\u0000\u202eevil';
  const bodies: CoreV1EventList['items'] = [];
  const core = {
    createNamespacedEvent: async (r: { body: CoreV1EventList['items'][number] }) => {
      bodies.push(r.body);
      return r.body;
    },
  } as unknown as CoreV1Api;
  await recordEvent(
    core,
    { namespace: 'shop', kind: 'Pod', apiVersion: 'v1', name: 'p' },
    'Warning',
    'BuildRefused',
    `pod runs ${image}\n\tsecond line`,
    () => undefined,
  );
  assert.equal(
    bodies[0]!.message,
    'pod runs registry.local/app:v1\\x1b[2K\\x1b[1Ginjected\\x0dfake line\\x00\\u{202e}evil\n\tsecond line',
  );
  assert.ok(!/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/.test(bodies[0]!.message!));
});

test('an Event message is cut at 1024 characters, never in the middle of an escape or a surrogate pair', () => {
  assert.equal(eventMessage('x'.repeat(1024)), 'x'.repeat(1024));
  for (let pad = 1018; pad <= 1024; pad++) {
    const m = eventMessage(`${'x'.repeat(pad)}\u001b\u001b`);
    assert.ok(m.length <= 1024, `${pad}: ${m.length}`);
    assert.match(m, /^x+(\\x1b)*$/, `${pad}: ${m.slice(1010)}`);
  }
  for (let pad = 1014; pad <= 1024; pad++)
    assert.match(eventMessage(`${'x'.repeat(pad)}\u202e\u202e`), /^x+(\\u\{202e\})*$/, String(pad));
  const cut = eventMessage(`${'x'.repeat(1023)}😀`);
  assert.equal(cut, 'x'.repeat(1023));
});
