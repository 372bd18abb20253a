// Child process for the "libbpf prints nothing" test: loads a good object,
// fails to load a bad one and a missing one, and reports on stdout. libbpf
// prints warnings for the failures; none of them may reach stderr.
// Usage: node --import tsx load-quiet-child.ts GOOD.o BAD.o
import { BpfObject } from '../../../src/bpf/object.ts';

const [good, bad] = process.argv.slice(2);
const results: string[] = [];
BpfObject.open(good!).close();
results.push('good loaded');
for (const path of [bad!, `${bad}.missing`]) {
  try {
    BpfObject.open(path).close();
    results.push(`${path} loaded`);
  } catch (err) {
    results.push((err as Error).message);
  }
}
process.stdout.write(JSON.stringify(results) + '\n');
