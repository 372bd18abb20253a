// Child process for the "pinned link survives the process" test: loads
// counter.o (pinned maps under PIN_ROOT, COUNTER_SLOT = SLOT), attaches
// count_pkts to tcx egress of IFINDEX in NETNS through the link pin
// LINK_PIN, prints {"linkId","progId"} and exits without detaching.
// Usage: node --import tsx attach-child.ts OBJ PIN_ROOT NETNS IFINDEX LINK_PIN SLOT
import { BpfObject } from '../../../src/bpf/object.ts';
import { attachTcx } from '../../../src/bpf/attach/attach-tcx.ts';

const [obj, pinRoot, netns, ifindex, linkPin, slot] = process.argv.slice(2);
if (!obj || !pinRoot || !netns || !ifindex || !linkPin || !slot) {
  process.stderr.write('usage: attach-child.ts OBJ PIN_ROOT NETNS IFINDEX LINK_PIN SLOT\n');
  process.exit(2);
}
const o = BpfObject.open(obj, { pinRoot, constants: { COUNTER_SLOT: Number(slot) } });
const prog = o.program('count_pkts');
const { linkId } = attachTcx({ progFd: prog.fd, ifindex: Number(ifindex), direction: 'egress', pinPath: linkPin, netns });
process.stdout.write(JSON.stringify({ linkId, progId: prog.id }) + '\n');
o.close(); // the pin keeps the link, the link keeps the program
