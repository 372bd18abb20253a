// Certificates for an etcd with TLS and client-certificate authentication,
// made with openssl the way an operator would (docs/deploy.md shows the same
// commands): a CA, a server certificate naming the addresses etcd listens on,
// and client certificates (extendedKeyUsage clientAuth) for the agents. Used
// by `lab up --store etcd --etcd-tls` and the TLS store tests; it is not a
// key management system.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { MembraneError } from '../shared/errors.ts';

/** PEM files (absolute paths); keys are 0600. */
export interface EtcdPki {
  dir: string;
  ca: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

function openssl(args: string[], what: string): void {
  try {
    execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    throw new MembraneError(`make etcd certificates: ${what}`, { code: 'E_LAB', cause: `openssl ${args[0]} failed: ${err.stderr?.toString().trim() || err.message}`, hint: 'apt-get install openssl' });
  }
}

/** A new P-256 key and a CA certificate (10 years) in `dir`/`name`.{crt,key}. */
export function makeCa(dir: string, name: string, cn: string): { cert: string; key: string } {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const cert = `${dir}/${name}.crt`;
  const key = `${dir}/${name}.key`;
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert,
    '-days', '3650', '-subj', `/CN=${cn}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], `CA ${cn}`);
  chmodSync(key, 0o600);
  return { cert, key };
}

/**
 * A key and a certificate signed by `ca`, in `dir`/`name`.{crt,key}: a server
 * certificate names `ips` in its subjectAltName; a client certificate has CN
 * `cn` (etcd takes it as the user name when authentication is on).
 */
export function makeLeaf(dir: string, name: string, ca: { cert: string; key: string }, o: { cn: string; usage: 'server' | 'client'; ips?: string[] }): { cert: string; key: string } {
  const cert = `${dir}/${name}.crt`;
  const key = `${dir}/${name}.key`;
  const csr = `${dir}/${name}.csr`;
  const ext = `${dir}/${name}.ext`;
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${o.cn}`], `${name} key`);
  chmodSync(key, 0o600);
  const san = o.ips?.length ? `subjectAltName=${o.ips.map((ip) => `IP:${ip}`).join(',')}\n` : '';
  writeFileSync(ext, `${san}basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=${o.usage === 'server' ? 'serverAuth,clientAuth' : 'clientAuth'}\n`);
  openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', '3650', '-out', cert, '-extfile', ext], `${name} certificate`);
  rmSync(csr, { force: true });
  rmSync(ext, { force: true });
  return { cert, key };
}

/** A CA, etcd's server certificate for `serverIPs`, and one client certificate (CN `clientCN`), in `dir`. */
export function makeEtcdPki(dir: string, serverIPs: string[], clientCN = 'membrane'): EtcdPki {
  const ca = makeCa(dir, 'ca', 'membrane etcd CA');
  const server = makeLeaf(dir, 'server', ca, { cn: 'etcd', usage: 'server', ips: serverIPs });
  const client = makeLeaf(dir, 'client', ca, { cn: clientCN, usage: 'client' });
  return { dir, ca: ca.cert, caKey: ca.key, serverCert: server.cert, serverKey: server.key, clientCert: client.cert, clientKey: client.key };
}
