// Regenerates the captured kernel replies in this directory (root needed):
//   node --import tsx test/testdata/netlink/capture.ts
// The devices, addresses and routes are made with iproute2, not with our
// encoder, so the captures test the decoders against what the kernel really
// sends. Everything lives in two throwaway netns deleted at the end.
// Each .bin file holds the received datagrams, concatenated.
import { execFileSync } from 'node:child_process';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { addrList, linkList, NetlinkHandle, routeAdd, routeList } from '../../../src/netlink/index.ts';

const here = dirname(fileURLToPath(import.meta.url));
const ns = `mbtcap${process.pid.toString(36)}`;
const peerNs = `${ns}p`;
const ip = (...args: string[]): void => void execFileSync('ip', ['-n', ns, ...args]);

function capture(file: string, fn: () => void): void {
  const chunks: Buffer[] = [];
  const onMsg = (m: unknown): void => {
    const { direction, bytes } = m as { direction: string; bytes: Buffer };
    if (direction === 'recv') chunks.push(bytes);
  };
  subscribe('membrane:netlink', onMsg);
  try {
    fn();
  } finally {
    unsubscribe('membrane:netlink', onMsg);
  }
  writeFileSync(join(here, file), Buffer.concat(chunks));
  console.log(`${file}: ${chunks.length} datagrams, ${Buffer.concat(chunks).length} bytes`);
}

execFileSync('ip', ['netns', 'add', ns]);
execFileSync('ip', ['netns', 'add', peerNs]);
try {
  ip('link', 'set', 'lo', 'up');
  ip('link', 'add', 'vcap0', 'address', '02:00:00:00:00:a0', 'mtu', '1450', 'txqlen', '1000', 'type', 'veth',
    'peer', 'name', 'vcap1', 'address', '02:00:00:00:00:a1', 'mtu', '1450');
  ip('link', 'set', 'vcap0', 'up', 'arp', 'off');
  ip('link', 'set', 'vcap1', 'up');
  ip('link', 'add', 'vxcap', 'address', '02:00:00:00:00:b0', 'type', 'vxlan', 'external', 'dstport', '8472', 'srcport', '30000', '40000');
  ip('link', 'set', 'vxcap', 'up');
  ip('link', 'add', 'vcap2', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', peerNs);
  ip('addr', 'add', '10.99.0.1/32', 'dev', 'vcap0');
  ip('addr', 'add', '10.98.0.1/24', 'brd', '10.98.0.255', 'dev', 'vcap1');
  ip('route', 'add', '10.99.0.1', 'dev', 'vcap0', 'proto', 'kernel', 'scope', 'link');
  ip('route', 'add', '10.99.1.0/24', 'via', '10.99.0.1', 'dev', 'vcap0', 'proto', 'kernel', 'src', '10.99.0.1');
  ip('route', 'add', '10.99.2.0/24', 'via', '10.99.0.1', 'dev', 'vcap0', 'proto', 'kernel', 'src', '10.99.0.1', 'mtu', '1400', 'metric', '7');
  ip('route', 'add', 'default', 'via', '10.98.0.254', 'dev', 'vcap1');

  const h = NetlinkHandle.open(ns);
  try {
    capture('link-dump.bin', () => linkList(h));
    capture('route-dump.bin', () => routeList(h, { table: 0 }));
    capture('addr-dump.bin', () => addrList(h));
    capture('error-extack.bin', () => {
      try {
        routeAdd(h, { dst: '10.77.0.1/16', oif: 2 }); // host bits set: EINVAL with an ext-ack message
      } catch { /* expected */ }
    });
  } finally {
    h.close();
  }
} finally {
  execFileSync('ip', ['netns', 'del', ns]);
  execFileSync('ip', ['netns', 'del', peerNs]);
}
