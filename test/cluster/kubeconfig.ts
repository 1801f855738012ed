// Kubeconfig files for the admin user, the control-plane components and each kubelet.
import { writeFileSync } from 'node:fs';
import { stringify } from 'yaml';
import type { CertPair } from './pki.ts';

export function writeKubeconfig(path: string, server: string, caCert: string, user: string, cred: CertPair): void {
  const doc = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'enbi-test', cluster: { server, 'certificate-authority': caCert } }],
    users: [{ name: user, user: { 'client-certificate': cred.cert, 'client-key': cred.key } }],
    contexts: [{ name: 'enbi-test', context: { cluster: 'enbi-test', user } }],
    'current-context': 'enbi-test',
  };
  writeFileSync(path, stringify(doc), { mode: 0o600 });
}
