// Policy documents (src/policy/document.ts): every accepted construct, and
// every kind of bad document refused with its document, path, line and
// column, all problems listed. No root needed.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { exitCodeOf, httpStatusOf } from '../../src/shared/error-codes.ts';
import { PolicyError, formatSelector, parsePolicies, parsePolicyValues, type Policy, type PolicyProblem } from '../../src/policy/index.ts';

const TESTDATA = fileURLToPath(new URL('../testdata/policy/', import.meta.url));

function parseOne(text: string): Policy {
  const { policies } = parsePolicies(text);
  assert.equal(policies.length, 1);
  return policies[0]!;
}

function problemsOf(text: string, opts = {}): PolicyError {
  try {
    parsePolicies(text, opts);
  } catch (err) {
    assert.ok(err instanceof PolicyError, `a PolicyError, not ${String(err)}`);
    assert.equal(err.code, 'E_POLICY_INVALID');
    return err;
  }
  assert.fail('the text was accepted');
}

/** The one problem of a text, as [path, message fragment, line, column]. */
function onlyProblem(text: string): PolicyProblem {
  const err = problemsOf(text);
  assert.equal(err.problems.length, 1, `one problem: ${err.message}`);
  return err.problems[0]!;
}

const cnp = (spec: string, extra = '') => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: p${extra}
spec:
${spec.replace(/^/gm, '  ')}
`;

describe('accepted documents', () => {
  it('accepts every file in test/testdata/policy unchanged', () => {
    const files = readdirSync(TESTDATA);
    assert.ok(files.length >= 6);
    for (const f of files) {
      const { policies, warnings } = parsePolicies(readFileSync(TESTDATA + f, 'utf8'), { source: f });
      assert.ok(policies.length >= 1, f);
      assert.deepEqual(warnings, [], f);
    }
  });

  it('reads the L3 example: namespace default, the subject limited to it, peers too', () => {
    const p = parsePolicies(readFileSync(TESTDATA + 'l3-allow.yaml', 'utf8')).policies[0]!;
    assert.equal(p.kind, 'CiliumNetworkPolicy');
    assert.equal(p.namespace, 'default');
    assert.equal(p.rules[0]!.description, 'Allow frontends to reach backends');
    assert.equal(formatSelector(p.rules[0]!.selector), 'any:role=backend, k8s:io.kubernetes.pod.namespace=default');
    const peers = p.rules[0]!.ingress[0]!.peers;
    assert.equal(peers.kind, 'endpoints');
    assert.equal(peers.kind === 'endpoints' && formatSelector(peers.selectors[0]!), 'any:role=frontend, k8s:io.kubernetes.pod.namespace=default');
    assert.deepEqual(p.rules[0]!.defaultDeny, { ingress: true, egress: false });
  });

  it('reads ports: a numeric string, a number, endPort, the default protocol ANY', () => {
    const p = parseOne(cnp(`endpointSelector: {}
egress:
- toPorts:
  - ports:
    - port: "80"
      endPort: 444
      protocol: TCP
    - port: 53
    - port: "0"
      protocol: ICMP
  - ports:
    - port: 8080
      protocol: UDP`));
    assert.deepEqual(p.rules[0]!.egress[0]!.ports, [
      { port: 80, endPort: 444, protocol: 'TCP' }, { port: 53, protocol: 'ANY' }, { port: 0, protocol: 'ICMP' }, { port: 8080, protocol: 'UDP' },
    ]);
  });

  it('reads icmps as ICMP types (type 0 stays one type), joined with toPorts', () => {
    const p = parseOne(cnp(`endpointSelector: {}
ingress:
- icmps: [{fields: [{type: 8, family: IPv4}, {type: EchoReply}, {type: "11"}]}]
  toPorts: [{ports: [{port: "22", protocol: TCP}]}]`));
    assert.deepEqual(p.rules[0]!.ingress[0]!.ports, [
      { port: 22, protocol: 'TCP' }, { port: 8, endPort: 8, protocol: 'ICMP' }, { port: 0, endPort: 0, protocol: 'ICMP' }, { port: 11, endPort: 11, protocol: 'ICMP' },
    ]);
  });

  it('keeps Cilium\'s distinction: no peer field = every peer, an empty list = none, toPorts: [] = every port', () => {
    const p = parseOne(cnp(`endpointSelector: {}
ingress:
- {}
- fromEndpoints: []
- fromEntities: []
  toPorts: []
- toPorts: [{ports: [{port: "80", protocol: TCP}]}]`));
    const items = p.rules[0]!.ingress;
    assert.deepEqual(items.map((i) => i.peers.kind), ['all', 'none', 'none', 'all']);
    assert.deepEqual(items.map((i) => i.ports === undefined), [true, true, true, false]);
    assert.deepEqual(items.map((i) => i.path), ['spec.ingress[0]', 'spec.ingress[1]', 'spec.ingress[2]', 'spec.ingress[3]']);
  });

  it('reads a stream, a JSON object, a JSON list and a YAML list, numbering documents in order', () => {
    const one = '{"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "metadata": {"name": "a"}, "spec": {"endpointSelector": {}, "ingress": [{}]}}';
    assert.equal(parseOne(one).name, 'a');
    const list = `[${one}, ${one.replace('"a"', '"b"')}]`;
    assert.deepEqual(parsePolicies(list).policies.map((p) => [p.name, p.document]), [['a', 1], ['b', 2]]);
    const stream = `---\n${cnp('endpointSelector: {}\ningress: [{}]', '1')}---\n- ${one.replace('"a"', '"c"')}\n- ${one.replace('"a"', '"d"')}\n---\n# nothing here\n`;
    assert.deepEqual(parsePolicies(stream).policies.map((p) => [p.name, p.document]), [['p1', 1], ['c', 2], ['d', 3]]);
  });

  it('reads JSON indented with tabs', () => {
    const text = '{\n\t"apiVersion": "cilium.io/v2",\n\t"kind": "CiliumNetworkPolicy",\n\t"metadata": {\n\t\t"name": "tabs"\n\t},\n\t"spec": {\n\t\t"endpointSelector": {},\n\t\t"egress": [{}]\n\t}\n}\n';
    assert.equal(parseOne(text).name, 'tabs');
  });

  it('keeps metadata labels, annotations, a top-level description and the raw document', () => {
    const text = `apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
description: "Cilium's own examples put one here"
metadata:
  name: all.ns
  labels: {team: net}
  annotations: {note: "x: y"}
spec:
  endpointSelector: {}
  ingress: [{fromEntities: [cluster]}]
`;
    const p = parseOne(text);
    assert.equal(p.namespace, undefined);
    assert.deepEqual(p.labels, { team: 'net' });
    assert.deepEqual(p.annotations, { note: 'x: y' });
    assert.equal(p.description, "Cilium's own examples put one here");
    assert.equal((p.raw as { metadata: { name: string } }).metadata.name, 'all.ns');
    // The raw document parses again to the same policy.
    assert.deepEqual(parseOne(JSON.stringify(p.raw)).rules, p.rules);
  });

  it('reads plain values (what the store keeps: Policy.raw) to the same policies, without the YAML parser', () => {
    const all = readdirSync(TESTDATA).flatMap((f) => parsePolicies(readFileSync(TESTDATA + f, 'utf8')).policies);
    const again = parsePolicyValues(all.map((p) => JSON.parse(JSON.stringify(p.raw)))).policies;
    assert.deepEqual(again.map((p) => ({ ...p, document: 0 })), all.map((p) => ({ ...p, document: 0 })));
    const err = (() => { try { parsePolicyValues([{ ...(all[0]!.raw as object), spec: { endpointSelector: {}, ingress: [{ fromCIDR: ['x'] }] } }]); } catch (e) { return e as PolicyError; } })();
    assert.equal(err?.message, 'read policies: document 1 (cidr-rule): spec.ingress[0].fromCIDR[0]: "x" is not an IPv4 CIDR (want a.b.c.d/n or a.b.c.d)');
  });

  it('takes spec and specs together, spec first', () => {
    const text = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: both, namespace: prod}
spec: {endpointSelector: {}, ingress: [{}]}
specs:
- {endpointSelector: {matchLabels: {a: b}}, egress: [{}]}
`;
    assert.deepEqual(parseOne(text).rules.map((r) => r.path), ['spec', 'specs[0]']);
  });

  it('scopes selectors like Cilium: CNP peers to the namespace unless named; CCNP peers to pods; reserved labels as written', () => {
    const text = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ns, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints:
    - {}
    - matchLabels: {"k8s:io.kubernetes.pod.namespace": kube-system, k8s-app: kube-dns}
    - matchExpressions: [{key: io.kubernetes.pod.namespace, operator: In, values: [a, b]}]
    - matchLabels: {"reserved:host": ""}
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: cw}
spec:
  endpointSelector: {}
  ingress: [{fromEndpoints: [{}]}]
`;
    const [a, b] = parsePolicies(text).policies;
    const sel = (p: Policy) => { const peers = p.rules[0]!.ingress[0]!.peers; return peers.kind === 'endpoints' ? peers.selectors.map(formatSelector) : []; };
    assert.deepEqual(sel(a!), [
      'k8s:io.kubernetes.pod.namespace=prod',
      'k8s:io.kubernetes.pod.namespace=kube-system, any:k8s-app=kube-dns',
      'any:io.kubernetes.pod.namespace in (a, b)',
      'reserved:host=',
    ]);
    assert.equal(formatSelector(a!.rules[0]!.selector), 'any:app=web, k8s:io.kubernetes.pod.namespace=prod');
    assert.deepEqual(sel(b!), ['k8s:io.kubernetes.pod.namespace exists']);
  });

  it('warns, and keeps the policy\'s namespace, when a CNP endpointSelector names another namespace', () => {
    const { policies, warnings } = parsePolicies(cnp('endpointSelector: {matchLabels: {io.kubernetes.pod.namespace: other}}\ningress: [{}]'));
    assert.equal(formatSelector(policies[0]!.rules[0]!.selector), 'k8s:io.kubernetes.pod.namespace=default');
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!.message, /always applies in the policy's own namespace \(default\)/);
  });

  it('normalizes CIDRs: a bare address is /32, host bits are cleared with a warning', () => {
    const { policies, warnings } = parsePolicies(cnp('endpointSelector: {}\negress:\n- toCIDR: [1.2.3.4, 10.1.2.3/8]'));
    const peers = policies[0]!.rules[0]!.egress[0]!.peers;
    assert.deepEqual(peers.kind === 'cidr' && peers.cidrs.map((c) => c.cidr.text), ['1.2.3.4/32', '10.0.0.0/8']);
    assert.deepEqual(warnings.map((w) => [w.path, w.line, w.message]), [['spec.egress[0].toCIDR[1]', 8, '"10.1.2.3/8" has host bits set: read as 10.0.0.0/8']]);
  });

  it('reads enableDefaultDeny, and counts deny sections for default deny', () => {
    const p = parseOne(cnp('endpointSelector: {}\nenableDefaultDeny: {egress: false}\negressDeny: [{toEntities: [world]}]\ningressDeny: [{fromEntities: [world]}]'));
    assert.deepEqual(p.rules[0]!.defaultDeny, { ingress: true, egress: false });
  });

  it('accepts every entity, and each matchExpressions operator', () => {
    const p = parseOne(cnp(`endpointSelector:
  matchExpressions:
  - {key: a, operator: In, values: [x]}
  - {key: b, operator: NotIn, values: [x, y]}
  - {key: "k8s:c", operator: Exists}
  - {key: d, operator: DoesNotExist, values: []}
egress:
- toEntities: [host, remote-node, world, world-ipv4, cluster, all, health, init, unmanaged, kube-apiserver, ingress]`));
    assert.equal(p.rules[0]!.selector.requirements.length, 5);
  });
});

describe('refused documents: each problem names its place', () => {
  it('formats the message as operation -> file -> document -> path -> cause at line, column', () => {
    const text = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: allow-db
spec:
  endpointSelector: {}
  ingress: [{}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: allow-web
specs:
  - endpointSelector:
      matchLabels: {app: web}
    ingress:
      - toPorts:
          - ports:
              - port: 70000
`;
    const err = problemsOf(text, { source: 'web.yaml', operation: 'import policy file' });
    assert.equal(err.message,
      'import policy file web.yaml: document 2 (allow-web): specs[0].ingress[0].toPorts[0].ports[0].port: 70000 is not a port (0-65535) at line 19, column 23');
    assert.deepEqual(err.problems, [{
      document: 2, name: 'allow-web', path: 'specs[0].ingress[0].toPorts[0].ports[0].port', line: 19, column: 23, message: '70000 is not a port (0-65535)',
    }]);
    assert.equal(exitCodeOf(err.code), 3);
    assert.equal(httpStatusOf(err.code), 400);
  });

  it('lists every problem of every document, not only the first', () => {
    const text = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: one}
spec:
  endpointSelector: {matchExpressions: [{key: app, operator: Equals, values: [x]}]}
  ingress:
  - fromCIDR: [10.0.0.0/33]
    toPorts: [{ports: [{port: "80", protocol: TPC}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: two}
spec:
  endpointSelector: {}
  egress:
  - toPorts: [{ports: [{port: "444", endPort: 80}]}]
  egres: []
`;
    const err = problemsOf(text);
    assert.deepEqual(err.problems.map((p) => [p.document, p.name, p.path, p.line, p.column]), [
      [1, 'one', 'spec.endpointSelector.matchExpressions[0].operator', 5, 62],
      [1, 'one', 'spec.ingress[0].fromCIDR[0]', 7, 16],
      [1, 'one', 'spec.ingress[0].toPorts[0].ports[0].protocol', 8, 47],
      [2, 'two', 'spec.egress[0].toPorts[0].ports[0].endPort', 16, 47],
      [2, 'two', 'spec.egres', 17, 3],
    ]);
    assert.match(err.message, /^parse policies: 5 problems: document 1 \(one\): spec\.endpointSelector/);
    assert.match(err.problems[0]!.message, /"Equals" is not an operator \(In, NotIn, Exists, DoesNotExist\)/);
    assert.match(err.problems[1]!.message, /prefix length 33 is more than 32/);
    assert.match(err.problems[2]!.message, /"TPC" is not a protocol \(TCP, UDP, SCTP, ICMP, ANY\)/);
    assert.match(err.problems[3]!.message, /endPort 80 is less than port 444/);
    assert.match(err.problems[4]!.message, /unknown field "egres" \(did you mean egress\?\)/);
  });

  const cases: [string, string, string, RegExp, number][] = [
    ['unknown field', 'endpointSelector: {}\ningress:\n- fromEndpoint: [{}]', 'spec.ingress[0].fromEndpoint', /unknown field "fromEndpoint" \(did you mean fromEndpoints\?\)/, 8],
    ['bad selector operator', 'endpointSelector: {matchExpressions: [{key: a, operator: in, values: [b]}]}\ningress: [{}]', 'spec.endpointSelector.matchExpressions[0].operator', /"in" is not an operator/, 6],
    ['In without values', 'endpointSelector: {matchExpressions: [{key: a, operator: In}]}\ningress: [{}]', 'spec.endpointSelector.matchExpressions[0].values', /needs at least one value/, 6],
    ['Exists with values', 'endpointSelector: {matchExpressions: [{key: a, operator: Exists, values: [b]}]}\ningress: [{}]', 'spec.endpointSelector.matchExpressions[0].values', /takes no values/, 6],
    ['bad CIDR', 'endpointSelector: {}\negress:\n- toCIDR: [10.0.0/8]', 'spec.egress[0].toCIDR[0]', /"10\.0\.0\/8" is not an IPv4 CIDR/, 8],
    ['IPv6 CIDR', 'endpointSelector: {}\negress:\n- toCIDR: ["2001:db8::/32"]', 'spec.egress[0].toCIDR[0]', /IPv6 prefix: membrane's network is IPv4 only/, 8],
    ['except outside its cidr', 'endpointSelector: {}\negress:\n- toCIDRSet: [{cidr: 10.0.0.0/8, except: [11.0.0.0/16]}]', 'spec.egress[0].toCIDRSet[0].except[0]', /11\.0\.0\.0\/16 is not inside 10\.0\.0\.0\/8/, 8],
    ['cidrSet without prefix length', 'endpointSelector: {}\negress:\n- toCIDRSet: [{cidr: 10.0.0.1}]', 'spec.egress[0].toCIDRSet[0].cidr', /has no prefix length/, 8],
    ['port out of range', 'endpointSelector: {}\ningress:\n- toPorts: [{ports: [{port: "65536"}]}]', 'spec.ingress[0].toPorts[0].ports[0].port', /^65536 is not a port \(0-65535\)$/, 8],
    ['negative port', 'endpointSelector: {}\ningress:\n- toPorts: [{ports: [{port: -1}]}]', 'spec.ingress[0].toPorts[0].ports[0].port', /^-1 is not a port/, 8],
    ['endPort < port', 'endpointSelector: {}\ningress:\n- toPorts: [{ports: [{port: "90", endPort: 80}]}]', 'spec.ingress[0].toPorts[0].ports[0].endPort', /endPort 80 is less than port 90/, 8],
    ['endPort with port 0', 'endpointSelector: {}\ningress:\n- toPorts: [{ports: [{port: "0", endPort: 80}]}]', 'spec.ingress[0].toPorts[0].ports[0].endPort', /needs a port of 1 or more/, 8],
    ['unknown protocol', 'endpointSelector: {}\ningress:\n- toPorts: [{ports: [{port: "80", protocol: HTTP}]}]', 'spec.ingress[0].toPorts[0].ports[0].protocol', /"HTTP" is not a protocol/, 8],
    ['lower-case protocol', 'endpointSelector: {}\ningress:\n- toPorts: [{ports: [{port: "80", protocol: tcp}]}]', 'spec.ingress[0].toPorts[0].ports[0].protocol', /protocols are upper case \(TCP\)/, 8],
    ['VRRP', 'endpointSelector: {}\ningress:\n- toPorts: [{ports: [{port: "0", protocol: VRRP}]}]', 'spec.ingress[0].toPorts[0].ports[0].protocol', /VRRP is not supported/, 8],
    ['ICMP with a port', 'endpointSelector: {}\ningress:\n- toPorts: [{ports: [{port: "8", protocol: ICMP}]}]', 'spec.ingress[0].toPorts[0].ports[0].port', /ICMP has no ports/, 8],
    ['named port', 'endpointSelector: {}\ningress:\n- toPorts: [{ports: [{port: http-alt, protocol: TCP}]}]', 'spec.ingress[0].toPorts[0].ports[0].port', /named ports \("http-alt"\) are not supported: write the port number/, 8],
    ['L7 rules', 'endpointSelector: {}\ningress:\n- toPorts:\n  - ports: [{port: "80", protocol: TCP}]\n    rules: {http: [{method: GET}]}', 'spec.ingress[0].toPorts[0].rules', /L7 rules \(HTTP, Kafka, DNS\) are not supported/, 10],
    ['no ports in a toPorts item', 'endpointSelector: {}\ningress:\n- toPorts: [{ports: []}]', 'spec.ingress[0].toPorts[0].ports', /needs at least one port/, 8],
    ['toFQDNs', 'endpointSelector: {}\negress:\n- toFQDNs: [{matchName: example.com}]', 'spec.egress[0].toFQDNs', /DNS-based rules \(toFQDNs\) are not supported/, 8],
    ['an unknown ICMP type name', 'endpointSelector: {}\negress:\n- icmps: [{fields: [{type: Ping}]}]', 'spec.egress[0].icmps[0].fields[0].type', /a string \("Ping"\) is not an ICMPv4 type \(0-255 or one of EchoReply/, 8],
    ['ICMPv6', 'endpointSelector: {}\negress:\n- icmps: [{fields: [{type: 128, family: IPv6}]}]', 'spec.egress[0].icmps[0].fields[0].family', /IPv4 only/, 8],
    ['a peer field of the other direction', 'endpointSelector: {}\ningress:\n- toEndpoints: [{}]', 'spec.ingress[0].toEndpoints', /toEndpoints belongs in egress rules: an ingress rule names its peers with fromEndpoints/, 8],
    ['two peer fields in one item', 'endpointSelector: {}\ningress:\n- fromEndpoints: [{}]\n  fromCIDR: [10.0.0.0/8]', 'spec.ingress[0].fromCIDR', /fromEndpoints and fromCIDR cannot be combined in one rule/, 9],
    ['unknown entity', 'endpointSelector: {}\ningress:\n- fromEntities: [everything]', 'spec.ingress[0].fromEntities[0]', /"everything" is not an entity \(host, remote-node/, 8],
    ['world-ipv6', 'endpointSelector: {}\ningress:\n- fromEntities: [world-ipv6]', 'spec.ingress[0].fromEntities[0]', /IPv4 only/, 8],
    ['ingress that is not a list', 'endpointSelector: {}\ningress: {fromEntities: [world]}', 'spec.ingress', /must be a list, not a mapping/, 7],
    ['a port that is a boolean', 'endpointSelector: {}\ningress:\n- toPorts: [{ports: [{port: true}]}]', 'spec.ingress[0].toPorts[0].ports[0].port', /must be a port number \(0-65535\), not true/, 8],
    ['a label value that is a number', 'endpointSelector: {matchLabels: {version: 2}}\ningress: [{}]', 'spec.endpointSelector.matchLabels.version', /label values must be strings, not a number \(2\) \(quote it: "2"\)/, 6],
    ['an entity that is not a string', 'endpointSelector: {}\ningress:\n- fromEntities: [{host: true}]', 'spec.ingress[0].fromEntities[0]', /must be a string, not a mapping/, 8],
    ['a bad label key', 'endpointSelector: {matchLabels: {"k8s:": x}}\ningress: [{}]', 'spec.endpointSelector.matchLabels["k8s:"]', /is not a label key/, 6],
    ['a rule that does nothing', 'endpointSelector: {}\negress:', 'spec', /the rule has no ingress, ingressDeny, egress or egressDeny items/, 6],
    ['a rule with no selector', 'ingress: [{}]', 'spec.endpointSelector', /is required/, 6],
    ['nodeSelector on a CNP', 'nodeSelector: {}\ningress: [{}]', 'spec.nodeSelector', /nodeSelector is only allowed in a CiliumClusterwideNetworkPolicy/, 6],
  ];
  for (const [what, spec, path, message, line] of cases) {
    it(`refuses ${what} (${path}, line ${line})`, () => {
      const p = onlyProblem(cnp(spec));
      assert.equal(p.document, 1);
      assert.equal(p.name, 'p');
      assert.equal(p.path, path);
      assert.match(p.message, message);
      assert.equal(p.line, line);
      assert.ok(p.column !== undefined && p.column >= 1);
    });
  }

  it('refuses a missing name, and names the document by number only', () => {
    const err = problemsOf('apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {namespace: a}\nspec: {endpointSelector: {}, ingress: [{}]}\n');
    assert.equal(err.message, 'parse policies: document 1: metadata.name: is required at line 3, column 11');
  });

  it('refuses a name that is not a DNS-1123 subdomain, still naming the document by it', () => {
    const p = onlyProblem(cnp('endpointSelector: {}\ningress: [{}]').replace('name: p', 'name: Allow_Web'));
    assert.equal(p.name, 'Allow_Web');
    assert.equal(p.path, 'metadata.name');
    assert.match(p.message, /is not a valid name/);
  });

  it('refuses a namespace on a clusterwide policy, a nodeSelector with an endpointSelector, a CCNP without either', () => {
    const err = problemsOf(`apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: cw, namespace: default}
specs:
- {endpointSelector: {}, nodeSelector: {}, ingress: [{}]}
- {ingress: [{}]}
`);
    assert.deepEqual(err.problems.map((p) => [p.path, p.line]), [['metadata.namespace', 3], ['specs[0].nodeSelector', 5], ['specs[1].endpointSelector', 6]]);
    assert.match(err.problems[0]!.message, /belongs to no namespace/);
    assert.match(err.problems[1]!.message, /not both/);
    assert.match(err.problems[2]!.message, /endpointSelector \(pods\) or nodeSelector \(nodes\)/);
  });

  it('refuses another apiVersion or kind, a missing spec, server-set metadata and status', () => {
    const err = problemsOf(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np, uid: 1234}
status: {}
`);
    // A missing field is reported at its mapping's start, so first.
    assert.deepEqual(err.problems.map((p) => p.path), ['spec', 'apiVersion', 'kind', 'metadata.uid', 'status']);
    assert.match(err.problems[0]!.message, /has no rules/);
    assert.match(err.problems[1]!.message, /must be cilium.io\/v2, not "networking.k8s.io\/v1"/);
    assert.match(err.problems[2]!.message, /"NetworkPolicy" is not a policy kind membrane reads/);
    assert.match(err.problems[4]!.message, /set by the Kubernetes API server/);
  });

  it('refuses the same policy twice in one input', () => {
    const doc = cnp('endpointSelector: {}\ningress: [{}]');
    const err = problemsOf(`${doc}---\n${doc}`);
    assert.equal(err.problems.length, 1);
    assert.equal(err.problems[0]!.document, 2);
    assert.match(err.problems[0]!.message, /CiliumNetworkPolicy default\/p is already defined by document 1/);
  });

  it('reports YAML and JSON syntax errors with their position, and a document that is not a policy object', () => {
    const yaml = problemsOf(`${cnp('endpointSelector: {}\ningress: [{}]')}---\na: [1\n---\n- just a string\n`);
    assert.deepEqual(yaml.problems.map((p) => [p.document, p.line]), [[2, 10], [3, 11]]);
    assert.match(yaml.problems[0]!.message, /^not valid YAML or JSON: /);
    assert.match(yaml.problems[1]!.message, /must be a mapping \(a CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy object\), not a string/);
    const json = problemsOf('{"apiVersion": "cilium.io/v2",\n "kind": "CiliumNetworkPolicy",\n "metadata": {"name": "x"}, "metadata": {}}');
    assert.equal(json.problems[0]!.line, 3);
    assert.match(json.problems[0]!.message, /unique/);
  });

  it('spells out the first 20 problems in the message and keeps them all in problems', () => {
    const bad = Array.from({ length: 25 }, (_, i) => cnp('endpointSelector: {}\ningress: [{fromCIDR: [bad]}]', String(i))).join('---\n');
    const err = problemsOf(bad);
    assert.equal(err.problems.length, 25);
    assert.match(err.message, /^parse policies: 25 problems: document 1 \(p0\): .*; document 20 \(p19\): [^;]*; and 5 more$/);
  });

  it('refuses an input with no policy', () => {
    assert.equal(problemsOf('# nothing\n', { source: 'empty.yaml' }).message,
      'parse policy file empty.yaml: no policy in the input (want a CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy document)');
    problemsOf('');
  });

  it('warns about a null peer list (Cilium reads it as absent: every peer)', () => {
    const { policies, warnings } = parsePolicies(cnp('endpointSelector: {}\ningress:\n- fromEndpoints:\n  toPorts: [{ports: [{port: "80"}]}]'));
    assert.equal(policies[0]!.rules[0]!.ingress[0]!.peers.kind, 'all');
    assert.match(warnings[0]!.message, /fromEndpoints is null, which Cilium reads as absent/);
  });

  it('survives an alias bomb', () => {
    const lines = ['a0: &a0 [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 12; i++) lines.push(`a${i}: &a${i} [*a${i - 1}, *a${i - 1}, *a${i - 1}, *a${i - 1}, *a${i - 1}, *a${i - 1}, *a${i - 1}, *a${i - 1}, *a${i - 1}, *a${i - 1}]`);
    const err = problemsOf(`${lines.join('\n')}\nspec:\n  endpointSelector: {}\n  ingress: *a11\n`);
    assert.ok(err.problems.length > 0);
  });
});
