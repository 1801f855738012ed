// Certificates for the test cluster, made with the openssl CLI. EC P-256 keys: fast to generate.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hostBin } from './paths.ts';
import { run } from './proc.ts';

export interface CertPair {
  cert: string;
  key: string;
}

export interface CertSpec {
  name: string;
  cn: string;
  org?: string;
  /** Subject alternative names, e.g. ['IP:10.0.0.1', 'DNS:kubernetes']. */
  sans?: string[];
  usage: 'server' | 'client' | 'both';
}

const keyArgs = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

export async function makeCA(dir: string): Promise<CertPair> {
  const ca = { cert: join(dir, 'ca.crt'), key: join(dir, 'ca.key') };
  if (existsSync(ca.cert)) return ca;
  await run(hostBin('openssl'), [
    'req',
    '-x509',
    '-new',
    ...keyArgs,
    '-keyout',
    ca.key,
    '-out',
    ca.cert,
    '-days',
    '3650',
    '-subj',
    '/CN=enbi-test-ca',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
  ]);
  return ca;
}

export async function makeCert(dir: string, ca: CertPair, spec: CertSpec): Promise<CertPair> {
  const out = { cert: join(dir, `${spec.name}.crt`), key: join(dir, `${spec.name}.key`) };
  if (existsSync(out.cert)) return out;
  const csr = join(dir, `${spec.name}.csr`);
  const ext = join(dir, `${spec.name}.ext`);
  const subj = `/CN=${spec.cn}${spec.org ? `/O=${spec.org}` : ''}`;
  const eku = { server: 'serverAuth', client: 'clientAuth', both: 'serverAuth,clientAuth' }[spec.usage];
  writeFileSync(
    ext,
    [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      `extendedKeyUsage=${eku}`,
      ...(spec.sans?.length ? [`subjectAltName=${spec.sans.join(',')}`] : []),
    ].join('\n') + '\n',
  );
  const openssl = hostBin('openssl');
  await run(openssl, ['req', '-new', ...keyArgs, '-keyout', out.key, '-out', csr, '-subj', subj]);
  await run(openssl, [
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    ca.cert,
    '-CAkey',
    ca.key,
    '-CAcreateserial',
    '-days',
    '3650',
    '-out',
    out.cert,
    '-extfile',
    ext,
  ]);
  return out;
}

/** The service-account token signing key pair (private key and its public half). */
export async function makeServiceAccountKey(dir: string): Promise<{ key: string; pub: string }> {
  const sa = { key: join(dir, 'sa.key'), pub: join(dir, 'sa.pub') };
  if (existsSync(sa.pub)) return sa;
  const openssl = hostBin('openssl');
  await run(openssl, ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', sa.key]);
  await run(openssl, ['pkey', '-in', sa.key, '-pubout', '-out', sa.pub]);
  return sa;
}
