// The control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, on this host.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { hostBin, kubeBin } from './paths.ts';
import { makeCA, makeCert, makeServiceAccountKey, type CertPair } from './pki.ts';
import { writeKubeconfig } from './kubeconfig.ts';
import { freePort } from './ports.ts';
import { firstDead, startDaemon, waitFor } from './proc.ts';
import type { ProcRecord } from './state.ts';
import { apiGet } from './health.ts';

export const SERVICE_CIDR = '10.96.0.0/16';
export const SERVICE_IP = '10.96.0.1';

export interface ControlPlane {
  server: string;
  kubeconfig: string;
  ca: CertPair;
  admin: CertPair;
}

export interface ControlPlaneOptions {
  dir: string;
  /** Address the API server binds to and advertises: 127.0.0.1, or the bridge address in full mode. */
  address: string;
  log: (msg: string) => void;
  /** Called with each process as soon as it starts, so that a failed start can be undone. */
  record: (p: ProcRecord) => void;
}

export async function startControlPlane(o: ControlPlaneOptions): Promise<ControlPlane> {
  const pki = join(o.dir, 'pki');
  const logs = join(o.dir, 'logs');
  mkdirSync(pki, { recursive: true });
  mkdirSync(logs, { recursive: true });
  const bins = {
    etcd: hostBin('etcd'),
    apiserver: kubeBin('kube-apiserver'),
    cm: kubeBin('kube-controller-manager'),
    scheduler: kubeBin('kube-scheduler'),
  };

  o.log('certificates');
  const ca = await makeCA(pki);
  const serving = await makeCert(pki, ca, {
    name: 'apiserver',
    cn: 'kube-apiserver',
    usage: 'server',
    sans: [
      `IP:${o.address}`,
      'IP:127.0.0.1',
      `IP:${SERVICE_IP}`,
      'DNS:localhost',
      'DNS:kubernetes',
      'DNS:kubernetes.default',
      'DNS:kubernetes.default.svc',
      'DNS:kubernetes.default.svc.cluster.local',
    ],
  });
  const kubeletClient = await makeCert(pki, ca, {
    name: 'apiserver-kubelet-client',
    cn: 'kube-apiserver-kubelet-client',
    org: 'system:masters',
    usage: 'client',
  });
  const admin = await makeCert(pki, ca, { name: 'admin', cn: 'enbi-admin', org: 'system:masters', usage: 'client' });
  const cmCert = await makeCert(pki, ca, {
    name: 'controller-manager',
    cn: 'system:kube-controller-manager',
    usage: 'client',
  });
  const schedCert = await makeCert(pki, ca, { name: 'scheduler', cn: 'system:kube-scheduler', usage: 'client' });
  const sa = await makeServiceAccountKey(pki);

  const [etcdPort, etcdPeer, apiPort] = [await freePort(), await freePort(), await freePort(o.address)];
  const server = `https://${o.address}:${apiPort}`;
  const kubeconfig = join(o.dir, 'kubeconfig');
  writeKubeconfig(kubeconfig, server, ca.cert, 'enbi-admin', admin);
  const cmKubeconfig = join(o.dir, 'controller-manager.kubeconfig');
  writeKubeconfig(cmKubeconfig, server, ca.cert, 'system:kube-controller-manager', cmCert);
  const schedKubeconfig = join(o.dir, 'scheduler.kubeconfig');
  writeKubeconfig(schedKubeconfig, server, ca.cert, 'system:kube-scheduler', schedCert);

  const procs: ProcRecord[] = [];
  const start = (...a: Parameters<typeof startDaemon>): void => {
    const r = startDaemon(...a);
    procs.push(r);
    o.record(r);
  };
  const deadProc = firstDead(procs);

  o.log(`etcd on 127.0.0.1:${etcdPort}`);
  const etcdUrl = `http://127.0.0.1:${etcdPort}`;
  const peerUrl = `http://127.0.0.1:${etcdPeer}`;
  start(
    'etcd',
    bins.etcd,
    [
      '--name=enbi',
      `--data-dir=${join(o.dir, 'etcd')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=enbi=${peerUrl}`,
      '--log-level=warn',
      // Debian's etcd 3.4.23 predates RequestWatchProgress, so the API server's watch cache of a quiet resource
      // learns etcd's revision only from these notifications (10 min by default): a watch from a fresh
      // list's resourceVersion would wait 3 s and end with "Too large resource version".
      '--experimental-watch-progress-notify-interval=250ms',
    ],
    join(logs, 'etcd.log'),
  );
  await waitFor('etcd health', async () => ((await fetch(`${etcdUrl}/health`)).ok ? true : undefined), {
    timeoutMs: 30_000,
    alive: deadProc,
  });

  o.log(`kube-apiserver on ${server}`);
  start(
    'kube-apiserver',
    bins.apiserver,
    [
      `--etcd-servers=${etcdUrl}`,
      `--bind-address=${o.address}`,
      `--advertise-address=${o.address}`,
      `--secure-port=${apiPort}`,
      `--tls-cert-file=${serving.cert}`,
      `--tls-private-key-file=${serving.key}`,
      `--client-ca-file=${ca.cert}`,
      `--service-account-key-file=${sa.pub}`,
      `--service-account-signing-key-file=${sa.key}`,
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-cluster-ip-range=${SERVICE_CIDR}`,
      '--authorization-mode=Node,RBAC',
      '--allow-privileged=true',
      `--kubelet-client-certificate=${kubeletClient.cert}`,
      `--kubelet-client-key=${kubeletClient.key}`,
      `--kubelet-certificate-authority=${ca.cert}`,
      '--kubelet-preferred-address-types=InternalIP',
      '--profiling=false',
      '--v=1',
    ],
    join(logs, 'kube-apiserver.log'),
  );
  const cred = { ca: ca.cert, cert: admin.cert, key: admin.key };
  await waitFor(
    'kube-apiserver /readyz',
    async () => ((await apiGet(server, cred, '/readyz')).status === 200 ? true : undefined),
    {
      timeoutMs: 90_000,
      intervalMs: 500,
      alive: deadProc,
    },
  );

  o.log('kube-controller-manager, kube-scheduler');
  start(
    'kube-controller-manager',
    bins.cm,
    [
      `--kubeconfig=${cmKubeconfig}`,
      '--controllers=*,-nodeipam',
      '--leader-elect=false',
      '--secure-port=0',
      `--service-account-private-key-file=${sa.key}`,
      `--root-ca-file=${ca.cert}`,
      `--cluster-signing-cert-file=${ca.cert}`,
      `--cluster-signing-key-file=${ca.key}`,
      '--use-service-account-credentials=true',
      '--v=1',
    ],
    join(logs, 'kube-controller-manager.log'),
  );
  start(
    'kube-scheduler',
    bins.scheduler,
    [`--kubeconfig=${schedKubeconfig}`, '--leader-elect=false', '--secure-port=0', '--v=1'],
    join(logs, 'kube-scheduler.log'),
  );
  // Pods need the namespace's default ServiceAccount, which the controller manager creates.
  await waitFor(
    'the default ServiceAccount (kube-controller-manager at work)',
    async () =>
      (await apiGet(server, cred, '/api/v1/namespaces/default/serviceaccounts/default')).status === 200
        ? true
        : undefined,
    { timeoutMs: 60_000, intervalMs: 500, alive: deadProc },
  );
  return { server, kubeconfig, ca, admin };
}
