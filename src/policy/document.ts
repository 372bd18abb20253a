// Policy documents: YAML or JSON text -> validated policies (./types.ts).
//
// Accepts what `kubectl apply -f` would give Cilium for these fields: a YAML
// stream (`---`), one JSON object, or a JSON/YAML list of objects, each a
// CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy (apiVersion
// cilium.io/v2) with `spec` and/or `specs`. JSON is YAML, so one parser reads
// both and keeps every node's position: each problem names its document (its
// number and metadata.name), the field path (specs[0].ingress[1].toPorts[0]
// .ports[0].protocol) and the line and column. Every problem of every
// document is listed, not only the first, and any problem rejects the whole
// text, so an import applies all of a file or nothing.
//
// Cilium's semantics followed here (sources in the comments where they are
// applied): absent vs empty peer lists, one peer field per rule, the
// namespace scoping of a CiliumNetworkPolicy's selectors, default deny per
// direction, entities, CIDR sets, port ranges. Anything Cilium has that
// membrane does not implement (named ports, L7 rules, FQDNs, services,
// ICMP type rules, IPv6, ...) is refused by name rather than ignored, since
// ignoring part of a security rule changes what it allows.
import { Document, LineCounter, isAlias, isMap, isScalar, isSeq, parseAllDocuments, type Node as YamlNode, type YAMLMap } from 'yaml';
import { MembraneError } from '../shared/errors.ts';
import { parsePolicyCidr, prefixContains } from './cidr.ts';
import { NAMESPACE_KEY, SOURCE_ANY, SOURCE_K8S, SOURCE_RESERVED } from './labels.ts';
import { OPERATORS, makeSelector, parseSelectorKey, selectorNamesKey, selectorNamesSource, type Operator, type Selector } from './selector.ts';
import {
  CCNP, CNP, ENTITIES, policyId,
  type CidrSelector, type Entity, type Peers, type Policy, type PolicyKind, type PolicyRule, type PortProtocol,
  type Prefix, type ProtocolName, type RuleItem, type Section,
} from './types.ts';

export const API_VERSION = 'cilium.io/v2';
export const DEFAULT_NAMESPACE = 'default';

/** One problem (or warning) found in the text. */
export interface PolicyProblem {
  /** 1-based number of the document in the text (0: the text as a whole). */
  readonly document: number;
  /** The document's metadata.name, when it has a usable one. */
  readonly name?: string;
  /** Field path inside the document, e.g. "specs[0].ingress[1].toPorts[0].ports[0].port"; "" for the document itself. */
  readonly path: string;
  /** 1-based line and column in the text. */
  readonly line?: number;
  readonly column?: number;
  readonly message: string;
}

/** "document 2 (allow-web): specs[0].ingress[0]...port: 70000 is not a port (0-65535) at line 14, column 21" */
export function formatProblem(p: PolicyProblem): string {
  const where = p.document === 0 ? '' : `document ${p.document}${p.name !== undefined ? ` (${p.name})` : ''}: `;
  const at = p.line !== undefined ? ` at line ${p.line}, column ${p.column}` : '';
  return `${where}${p.path ? `${p.path}: ` : ''}${p.message}${at}`;
}

/** How many problems the message of a PolicyError spells out (a one-line error stays readable). */
export const MESSAGE_PROBLEMS = 20;

/** The text holds at least one invalid document; `problems` lists them all (E_POLICY_INVALID). */
export class PolicyError extends MembraneError {
  readonly problems: readonly PolicyProblem[];
  readonly warnings: readonly PolicyProblem[];
  constructor(what: string, problems: readonly PolicyProblem[], warnings: readonly PolicyProblem[] = []) {
    // The message lists the first MESSAGE_PROBLEMS; `problems` has them all.
    const text = problems.slice(0, MESSAGE_PROBLEMS).map(formatProblem);
    if (problems.length > MESSAGE_PROBLEMS) text.push(`and ${problems.length - MESSAGE_PROBLEMS} more`);
    super(problems.length === 1 ? `${what}: ${text[0]}` : `${what}: ${problems.length} problems: ${text.join('; ')}`, { code: 'E_POLICY_INVALID' });
    this.problems = problems;
    this.warnings = warnings;
  }
}

export interface ParseOptions {
  /** What the text is, for messages: a file name ("web.yaml"). */
  source?: string;
  /** What is being done, for messages (default "parse policy file" with a source, else "parse policies"). */
  operation?: string;
}

export interface ParseResult {
  readonly policies: Policy[];
  /** Accepted, but worth telling the user (host bits cleared, a namespace match Cilium overrides, a null peer list). */
  readonly warnings: PolicyProblem[];
}

/**
 * Parses and validates every policy in `text`. Throws PolicyError
 * (E_POLICY_INVALID) listing every problem if any document is invalid, or if
 * the text holds no policy at all.
 */
export function parsePolicies(text: string, opts: ParseOptions = {}): ParseResult {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  return validate(describeInput(opts), docs, (offset) => {
    const { line, col } = lineCounter.linePos(offset);
    return { line, column: col };
  });
}

/**
 * Validates policies given as plain data, e.g. Policy.raw values read back
 * from the cluster store: the same checks as parsePolicies, without the YAML
 * parser (several times faster: what an agent needs when 1,000 stored
 * policies change), so problems carry paths but no line and column.
 */
export function parsePolicyValues(values: readonly unknown[], opts: ParseOptions = {}): ParseResult {
  const what = describeInput({ operation: 'read policies', ...opts });
  // A list of documents, as one document holding a list would be read.
  // The values are the raw documents already: keep a copy instead of converting the nodes back.
  return validate(what, [new Document(values, { aliasDuplicateObjects: false })], () => ({}), (i) => structuredClone(values[i]));
}

function describeInput(opts: ParseOptions): string {
  return `${opts.operation ?? (opts.source !== undefined ? 'parse policy file' : 'parse policies')}${opts.source !== undefined ? ` ${opts.source}` : ''}`;
}

function validate(
  what: string, docs: readonly Document[], locate: (offset: number) => { line?: number; column?: number },
  rawOf?: (index: number) => unknown,
): ParseResult {
  const problems: PolicyProblem[] = [];
  const warnings: PolicyProblem[] = [];
  const policies: Policy[] = [];
  const seen = new Map<string, number>();
  let number = 0;
  const emit = (out: PolicyProblem[], document: number, name: string | undefined, raw: readonly Raw[]) => {
    // In the order of the text, not of discovery (a document's unknown fields are found before its items).
    const sorted = [...raw].sort((a, b) => (a.offset ?? Infinity) - (b.offset ?? Infinity));
    for (const r of sorted) {
      out.push({ document, ...(name !== undefined ? { name } : {}), path: r.path, ...(r.offset !== undefined ? locate(r.offset) : {}), message: r.message });
    }
  };

  for (const doc of docs) {
    if (doc.errors.length > 0) {
      number++;
      emit(problems, number, undefined, doc.errors.map((e) => ({ path: '', offset: e.pos[0], message: `not valid YAML or JSON: ${e.message}` })));
      continue;
    }
    const c = new Ctx(doc);
    const root = c.deref(doc.contents);
    if (isNull(root)) continue; // an empty document (e.g. after a trailing ---)
    const items = isSeq(root) ? root.items.map((i) => c.deref(i)) : [root];
    for (const item of items) {
      number++;
      const dc = new Ctx(doc);
      const policy = parsePolicyNode(dc, item, number, rawOf && (() => rawOf(number - 1)));
      const name = dc.name;
      if (policy) {
        const key = `${policy.kind}:${policyId(policy)}`;
        const first = seen.get(key);
        if (first !== undefined) {
          dc.problem(dc.nameNode, 'metadata.name', `${policy.kind} ${policyId(policy)} is already defined by document ${first} of this input`);
        } else {
          seen.set(key, number);
        }
      }
      emit(problems, number, name, dc.problems);
      emit(warnings, number, name, dc.warnings);
      if (policy && dc.problems.length === 0) policies.push(policy);
    }
  }
  if (problems.length === 0 && policies.length === 0) {
    problems.push({ document: 0, path: '', message: 'no policy in the input (want a CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy document)' });
  }
  if (problems.length > 0) throw new PolicyError(what, problems, warnings);
  return { policies, warnings };
}

// ---- the walker ----

interface Raw { path: string; offset: number | undefined; message: string }
type V = YamlNode | null | undefined;

/** Aliases followed per document before giving up (an alias bomb would otherwise expand without bound). */
const MAX_ALIASES = 1000;

class Ctx {
  readonly problems: Raw[] = [];
  readonly warnings: Raw[] = [];
  name: string | undefined;
  nameNode: V;
  private aliases = 0;
  constructor(readonly doc: Document) {}

  problem(node: V, path: string, message: string): void {
    this.problems.push({ path, offset: offsetOf(node), message });
  }
  warning(node: V, path: string, message: string): void {
    this.warnings.push({ path, offset: offsetOf(node), message });
  }
  deref(n: unknown): V {
    let v = n as V;
    while (v && isAlias(v)) {
      if (++this.aliases > MAX_ALIASES) return null;
      v = v.resolve(this.doc) as V;
    }
    return v;
  }
}

function offsetOf(n: V): number | undefined {
  return n?.range?.[0];
}

function isNull(n: V): boolean {
  return n === null || n === undefined || (isScalar(n) && n.value === null);
}

/** "a mapping", "a list", "a string (\"x\")", "a number (80)", "true", "null". */
function describe(n: V): string {
  if (isNull(n)) return 'null';
  if (isMap(n)) return 'a mapping';
  if (isSeq(n)) return 'a list';
  if (isScalar(n)) {
    const v = n.value;
    if (typeof v === 'string') return `a string (${JSON.stringify(v)})`;
    if (typeof v === 'number' || typeof v === 'bigint') return `a number (${String(v)})`;
    if (typeof v === 'boolean') return String(v);
  }
  return 'something else';
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
const child = (path: string, key: string) => (IDENT.test(key) ? (path ? `${path}.${key}` : key) : `${path}[${JSON.stringify(key)}]`);
const at = (path: string, i: number) => `${path}[${i}]`;

interface Field { key: YamlNode; value: V; path: string }

interface FieldSpec {
  known: readonly string[];
  /** Fields Cilium has that membrane refuses, with the reason. */
  unsupported?: Readonly<Record<string, string>>;
  /** Fields that belong elsewhere, with where. */
  misplaced?: Readonly<Record<string, string>>;
}

function asMap(c: Ctx, n: V, path: string, what = 'must be a mapping'): YAMLMap | undefined {
  if (isMap(n)) return n;
  c.problem(n, path, `${what}, not ${describe(n)}`);
  return undefined;
}

function asList(c: Ctx, n: V, path: string): V[] | undefined {
  if (isSeq(n)) return n.items.map((i) => c.deref(i));
  c.problem(n, path, `must be a list, not ${describe(n)}`);
  return undefined;
}

function asString(c: Ctx, n: V, path: string): string | undefined {
  if (isScalar(n) && typeof n.value === 'string') return n.value;
  c.problem(n, path, `must be a string, not ${describe(n)}`);
  return undefined;
}

function asBool(c: Ctx, n: V, path: string): boolean | undefined {
  if (isScalar(n) && typeof n.value === 'boolean') return n.value;
  c.problem(n, path, `must be true or false, not ${describe(n)}`);
  return undefined;
}

/** Levenshtein distance, for "did you mean" (short strings only). */
function distance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]!;
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = d[j]!;
      d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return d[b.length]!;
}

function suggest(name: string, known: readonly string[]): string {
  const best = known.map((k) => ({ k, d: k.toLowerCase() === name.toLowerCase() ? 0 : distance(k, name) }))
    .filter((x) => x.d <= 2).sort((a, b) => a.d - b.d)[0];
  return best ? ` (did you mean ${best.k}?)` : ` (known fields: ${known.join(', ')})`;
}

/** The map's fields by name; reports unknown, unsupported, misplaced and non-string keys. */
function fields(c: Ctx, map: YAMLMap, path: string, spec: FieldSpec): Map<string, Field> {
  const out = new Map<string, Field>();
  for (const pair of map.items) {
    const key = c.deref(pair.key);
    if (!isScalar(key) || typeof key.value !== 'string') {
      c.problem(key, path, `field names must be strings, not ${describe(key)}`);
      continue;
    }
    const name = key.value;
    const p = child(path, name);
    if (spec.known.includes(name)) out.set(name, { key, value: c.deref(pair.value), path: p });
    else if (spec.unsupported?.[name] !== undefined) c.problem(key, p, spec.unsupported[name]!);
    else if (spec.misplaced?.[name] !== undefined) c.problem(key, p, spec.misplaced[name]!);
    else c.problem(key, p, `unknown field ${JSON.stringify(name)}${suggest(name, spec.known)}`);
  }
  return out;
}

/** The field's value, or undefined if it is absent or null (Go reads null as absent, as Cilium does). */
function present(f: Field | undefined): V {
  return f === undefined || isNull(f.value) ? undefined : f.value;
}

// ---- documents ----

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

const SERVER_SET = 'is set by the Kubernetes API server, not part of a policy: remove it (kubectl get -o yaml output keeps it)';

/** The policy's kind and namespace, which decide what its rules may say and how their selectors are scoped. */
interface Scope { kind: PolicyKind | undefined; namespace: string | undefined }

function parsePolicyNode(c: Ctx, node: V, number: number, raw?: () => unknown): Policy | undefined {
  const map = asMap(c, node, '', 'must be a mapping (a CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy object)');
  if (!map) return undefined;
  const f = fields(c, map, '', {
    known: ['apiVersion', 'kind', 'metadata', 'spec', 'specs', 'description'],
    unsupported: { status: SERVER_SET },
  });

  const apiVersion = f.get('apiVersion');
  if (!present(apiVersion)) c.problem(map, 'apiVersion', `is required (${API_VERSION})`);
  else {
    const v = asString(c, apiVersion!.value, apiVersion!.path);
    if (v !== undefined && v !== API_VERSION) c.problem(apiVersion!.value, apiVersion!.path, `must be ${API_VERSION}, not ${JSON.stringify(v)}`);
  }

  let kind: PolicyKind | undefined;
  const kindField = f.get('kind');
  if (!present(kindField)) c.problem(map, 'kind', `is required (${CNP} or ${CCNP})`);
  else {
    const v = asString(c, kindField!.value, kindField!.path);
    if (v === CNP || v === CCNP) kind = v;
    else if (v !== undefined) {
      c.problem(kindField!.value, kindField!.path, `${JSON.stringify(v)} is not a policy kind membrane reads (${CNP} or ${CCNP})`);
    }
  }

  const meta = parseMetadata(c, f.get('metadata'), map, kind);
  const scope: Scope = { kind, namespace: meta?.namespace };

  let description: string | undefined;
  const desc = f.get('description');
  if (present(desc)) description = asString(c, desc!.value, desc!.path);

  const rules: PolicyRule[] = [];
  const spec = f.get('spec');
  const specs = f.get('specs');
  if (present(spec)) {
    const r = parseRule(c, spec!.value, 'spec', rules.length, scope);
    if (r) rules.push(r);
  }
  if (present(specs)) {
    const list = asList(c, specs!.value, 'specs');
    list?.forEach((item, i) => {
      const r = parseRule(c, item, at('specs', i), rules.length, scope);
      if (r) rules.push(r);
    });
  }
  if (!present(spec) && !(present(specs) && isSeq(specs!.value) && specs!.value.items.length > 0)) {
    c.problem(specs?.value ?? spec?.value ?? map, present(specs) ? 'specs' : 'spec', 'the policy has no rules: give spec (one rule) or specs (a list of rules)');
  }

  if (c.problems.length > 0 || !kind || !meta) return undefined;
  return {
    kind, name: meta.name, ...(meta.namespace !== undefined ? { namespace: meta.namespace } : {}),
    labels: meta.labels, annotations: meta.annotations,
    ...(description !== undefined ? { description } : {}),
    rules, document: number, raw: raw ? raw() : map.toJS(c.doc),
  };
}

interface Meta { name: string; namespace?: string; labels: Record<string, string>; annotations: Record<string, string> }

function parseMetadata(c: Ctx, field: Field | undefined, parent: YAMLMap, kind: PolicyKind | undefined): Meta | undefined {
  if (!present(field)) {
    c.problem(parent, 'metadata', 'is required (with at least a name)');
    return undefined;
  }
  const map = asMap(c, field!.value, 'metadata');
  if (!map) return undefined;
  const serverSet = Object.fromEntries(['uid', 'resourceVersion', 'generation', 'creationTimestamp', 'managedFields', 'selfLink',
    'ownerReferences', 'finalizers', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'generateName'].map((k) => [k, SERVER_SET]));
  const f = fields(c, map, 'metadata', { known: ['name', 'namespace', 'labels', 'annotations'], unsupported: serverSet });
  const before = c.problems.length;

  let name: string | undefined;
  const nameField = f.get('name');
  if (!present(nameField)) c.problem(map, 'metadata.name', 'is required');
  else {
    name = asString(c, nameField!.value, 'metadata.name');
    c.nameNode = nameField!.value;
    if (name !== undefined) {
      // Name the document in messages even when the name itself is bad, so the user finds it.
      c.name = name;
      if (name.length > 253 || !DNS1123_SUBDOMAIN.test(name)) {
        c.problem(nameField!.value, 'metadata.name', `${JSON.stringify(name)} is not a valid name: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters (a DNS-1123 subdomain)`);
      }
    }
  }

  let namespace: string | undefined;
  const nsField = f.get('namespace');
  if (present(nsField)) {
    const ns = asString(c, nsField!.value, 'metadata.namespace');
    if (kind === CCNP) {
      c.problem(nsField!.value, 'metadata.namespace', `a ${CCNP} belongs to no namespace: remove metadata.namespace (or make it a ${CNP})`);
    } else if (ns !== undefined && (ns.length > 63 || !DNS1123_LABEL.test(ns))) {
      c.problem(nsField!.value, 'metadata.namespace', `${JSON.stringify(ns)} is not a valid namespace: lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters (a DNS-1123 label)`);
    } else namespace = ns;
  }
  if (kind !== CCNP && namespace === undefined) namespace = DEFAULT_NAMESPACE;

  const labels = parseStringMap(c, f.get('labels'), 'metadata.labels');
  const annotations = parseStringMap(c, f.get('annotations'), 'metadata.annotations');
  if (c.problems.length > before || name === undefined) return undefined;
  return { name, ...(namespace !== undefined ? { namespace } : {}), labels, annotations };
}

function parseStringMap(c: Ctx, field: Field | undefined, path: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!present(field)) return out;
  const map = asMap(c, field!.value, path);
  if (!map) return out;
  for (const pair of map.items) {
    const key = c.deref(pair.key);
    if (!isScalar(key) || typeof key.value !== 'string' || key.value === '') {
      c.problem(key, path, `keys must be non-empty strings, not ${describe(key)}`);
      continue;
    }
    const value = c.deref(pair.value);
    const p = child(path, key.value);
    if (isScalar(value) && typeof value.value === 'string') out[key.value] = value.value;
    else c.problem(value ?? key, p, `must be a string, not ${describe(value)}${isScalar(value) && !isNull(value) ? ` (quote it: "${String(value.value)}")` : ''}`);
  }
  return out;
}

// ---- rules ----

const RULE_FIELDS = ['endpointSelector', 'nodeSelector', 'description', 'ingress', 'ingressDeny', 'egress', 'egressDeny', 'enableDefaultDeny'];
const RULE_UNSUPPORTED: Record<string, string> = {
  labels: 'rule labels are not supported by membrane: remove them (metadata.labels are kept)',
  log: 'policy logging is not supported by membrane: remove it',
};

function parseRule(c: Ctx, node: V, path: string, index: number, scope: Scope): PolicyRule | undefined {
  const map = asMap(c, node, path, 'must be a mapping (one rule)');
  if (!map) return undefined;
  const before = c.problems.length;
  const f = fields(c, map, path, { known: RULE_FIELDS, unsupported: RULE_UNSUPPORTED });

  // The subject: endpointSelector (pods) or, in a clusterwide policy only, nodeSelector (nodes).
  // Cilium: "EndpointSelector and NodeSelector cannot be both empty and are mutually exclusive.
  // [NodeSelector] can only be used in CiliumClusterwideNetworkPolicies."
  const es = f.get('endpointSelector');
  const ns = f.get('nodeSelector');
  let subject: 'endpoint' | 'node' = 'endpoint';
  let selector: Selector | undefined;
  if (present(ns) && scope.kind === CNP) {
    c.problem(ns!.key, ns!.path, `nodeSelector is only allowed in a ${CCNP}: host policies apply to nodes, which belong to no namespace`);
  } else if (present(ns) && present(es)) {
    c.problem(ns!.key, ns!.path, 'give endpointSelector (pods) or nodeSelector (nodes), not both');
  } else if (present(ns)) {
    subject = 'node';
    selector = parseSelector(c, ns!.value, ns!.path)?.selector;
  } else if (present(es)) {
    const parsed = parseSelector(c, es!.value, es!.path);
    if (parsed) selector = subjectSelector(c, parsed, es!, scope);
  } else {
    c.problem(map, child(path, 'endpointSelector'), scope.kind === CCNP
      ? 'is required: give endpointSelector (pods) or nodeSelector (nodes)' : 'is required (use {} to select every pod of the namespace)');
  }

  let description: string | undefined;
  if (present(f.get('description'))) description = asString(c, f.get('description')!.value, f.get('description')!.path);

  const sections = {} as Record<Section, RuleItem[]>;
  for (const section of ['ingress', 'ingressDeny', 'egress', 'egressDeny'] as const) {
    sections[section] = [];
    const field = f.get(section);
    if (!present(field)) continue;
    const list = asList(c, field!.value, field!.path);
    list?.forEach((item, i) => {
      const r = parseItem(c, item, at(field!.path, i), section, i, scope);
      if (r) sections[section].push(r);
    });
  }

  const edd: { ingress?: boolean; egress?: boolean } = {};
  const eddField = f.get('enableDefaultDeny');
  if (present(eddField)) {
    const m = asMap(c, eddField!.value, eddField!.path);
    if (m) {
      const ef = fields(c, m, eddField!.path, { known: ['ingress', 'egress'] });
      for (const d of ['ingress', 'egress'] as const) {
        const v = present(ef.get(d));
        if (v) edd[d] = asBool(c, v, ef.get(d)!.path);
      }
    }
  }

  // Default deny per direction (docs.cilium.io "Policy Enforcement Modes"): a
  // rule that selects an endpoint and has an ingress (egress) section puts it
  // into default deny for ingress (egress); deny sections count too, and
  // enableDefaultDeny overrides both ways. An empty list is no section
  // ("If omitted or empty, this rule does not apply at ingress").
  const defaultDeny = {
    ingress: edd.ingress ?? (sections.ingress.length > 0 || sections.ingressDeny.length > 0),
    egress: edd.egress ?? (sections.egress.length > 0 || sections.egressDeny.length > 0),
  };
  const listed = (s: Section) => present(f.get(s)) && isSeq(f.get(s)!.value) && (f.get(s)!.value as { items: unknown[] }).items.length > 0;
  if (!(['ingress', 'ingressDeny', 'egress', 'egressDeny'] as const).some(listed) && !defaultDeny.ingress && !defaultDeny.egress && c.problems.length === before) {
    // Cilium: "If both ingress and egress are omitted, the rule has no effect"; 1.17 refuses such a rule.
    c.problem(map, path, 'the rule has no ingress, ingressDeny, egress or egressDeny items (a null or empty list has none), so it does nothing (for default deny give an item that selects no peer, e.g. egress: [{toEndpoints: []}], or enableDefaultDeny: {egress: true})');
  }

  if (c.problems.length > before || !selector) return undefined;
  return {
    index, path, subject, selector, ...(description !== undefined ? { description } : {}), defaultDeny,
    ingress: sections.ingress, ingressDeny: sections.ingressDeny, egress: sections.egress, egressDeny: sections.egressDeny,
  };
}

/** A selector as written: its matchLabels (keys as written) and matchExpressions. */
interface WrittenSelector {
  matchLabels: Record<string, string>;
  matchExpressions: { key: string; operator: Operator; values: string[] }[];
  selector: Selector;
}

const isNamespaceKey = (written: string) => {
  const { source, key } = parseSelectorKey(written);
  return key === NAMESPACE_KEY && (source === SOURCE_ANY || source === SOURCE_K8S);
};

/**
 * The effective subject selector. Cilium: "The endpointSelector always
 * applies to pods in the namespace associated with the CiliumNetworkPolicy
 * resource itself" (docs.cilium.io "Using Kubernetes Constructs in Policy:
 * Namespaces"): the namespace match is set to the policy's, replacing one the
 * selector's matchLabels may name (with a warning when it names another).
 */
function subjectSelector(c: Ctx, w: WrittenSelector, field: Field, scope: Scope): Selector {
  if (scope.kind !== CNP || scope.namespace === undefined) return w.selector;
  const labels: Record<string, string> = {};
  for (const [k, v] of Object.entries(w.matchLabels)) {
    if (!isNamespaceKey(k)) labels[k] = v;
    else if (v !== scope.namespace) {
      c.warning(field.value, child(child(field.path, 'matchLabels'), k), `an endpointSelector always applies in the policy's own namespace (${scope.namespace}), so the match on namespace ${JSON.stringify(v)} is overridden, as Cilium does`);
    }
  }
  labels[`${SOURCE_K8S}:${NAMESPACE_KEY}`] = scope.namespace;
  return makeSelector(labels, w.matchExpressions);
}

/**
 * The effective peer selector of fromEndpoints / toEndpoints (Cilium's
 * namespace rules, docs.cilium.io "Namespaces" and "Clusterwide Policies"):
 * in a CiliumNetworkPolicy a selector that does not name the namespace label
 * selects only pods of the policy's namespace; in a clusterwide one it selects
 * pods of any namespace, but only pods (Cilium adds "namespace label exists",
 * so `{}` does not select the host, nodes or the world). A selector that names
 * a reserved label (`reserved:host`) is taken as written.
 */
function peerSelector(w: WrittenSelector, scope: Scope): Selector {
  const s = w.selector;
  if (selectorNamesKey(s, NAMESPACE_KEY, [SOURCE_ANY, SOURCE_K8S]) || selectorNamesSource(s, SOURCE_RESERVED)) return s;
  const nsKey = `${SOURCE_K8S}:${NAMESPACE_KEY}`;
  if (scope.kind === CNP && scope.namespace !== undefined) return makeSelector({ ...w.matchLabels, [nsKey]: scope.namespace }, w.matchExpressions);
  return makeSelector(w.matchLabels, [...w.matchExpressions, { key: nsKey, operator: 'Exists' }]);
}

function parseSelector(c: Ctx, node: V, path: string): WrittenSelector | undefined {
  if (isNull(node)) return { matchLabels: {}, matchExpressions: [], selector: makeSelector() };
  const map = asMap(c, node, path, 'must be a mapping (a label selector: matchLabels, matchExpressions)');
  if (!map) return undefined;
  const before = c.problems.length;
  const f = fields(c, map, path, { known: ['matchLabels', 'matchExpressions'] });
  const matchLabels: Record<string, string> = {};
  const mlField = f.get('matchLabels');
  if (present(mlField)) {
    const m = asMap(c, mlField!.value, mlField!.path);
    for (const pair of m?.items ?? []) {
      const key = c.deref(pair.key);
      if (!isScalar(key) || typeof key.value !== 'string') {
        c.problem(key, mlField!.path, `label keys must be strings, not ${describe(key)}`);
        continue;
      }
      const p = child(mlField!.path, key.value);
      checkLabelKey(c, key, p, key.value);
      const value = c.deref(pair.value);
      if (isScalar(value) && typeof value.value === 'string') matchLabels[key.value] = value.value;
      else if (isNull(value)) matchLabels[key.value] = ''; // `reserved:host:` with nothing: the empty value reserved labels have
      else c.problem(value, p, `label values must be strings, not ${describe(value)}${isScalar(value) ? ` (quote it: "${String(value.value)}")` : ''}`);
    }
  }
  const matchExpressions: WrittenSelector['matchExpressions'] = [];
  const meField = f.get('matchExpressions');
  if (present(meField)) {
    asList(c, meField!.value, meField!.path)?.forEach((item, i) => {
      const e = parseExpression(c, item, at(meField!.path, i));
      if (e) matchExpressions.push(e);
    });
  }
  if (c.problems.length > before) return undefined;
  return { matchLabels, matchExpressions, selector: makeSelector(matchLabels, matchExpressions) };
}

function checkLabelKey(c: Ctx, node: V, path: string, written: string): void {
  const { source, key } = parseSelectorKey(written);
  if (key === '' || (written.includes(':') && source === '')) {
    c.problem(node, path, `${JSON.stringify(written)} is not a label key (want key or source:key, e.g. app or k8s:app)`);
  }
}

function parseExpression(c: Ctx, node: V, path: string): WrittenSelector['matchExpressions'][number] | undefined {
  const map = asMap(c, node, path, 'must be a mapping (key, operator, values)');
  if (!map) return undefined;
  const before = c.problems.length;
  const f = fields(c, map, path, { known: ['key', 'operator', 'values'] });
  const keyField = f.get('key');
  let key: string | undefined;
  if (!present(keyField)) c.problem(map, child(path, 'key'), 'is required');
  else {
    key = asString(c, keyField!.value, keyField!.path);
    if (key !== undefined) checkLabelKey(c, keyField!.value, keyField!.path, key);
  }
  const opField = f.get('operator');
  let operator: Operator | undefined;
  if (!present(opField)) c.problem(map, child(path, 'operator'), `is required (${OPERATORS.join(', ')})`);
  else {
    const op = asString(c, opField!.value, opField!.path);
    if (op !== undefined && (OPERATORS as readonly string[]).includes(op)) operator = op as Operator;
    else if (op !== undefined) c.problem(opField!.value, opField!.path, `${JSON.stringify(op)} is not an operator (${OPERATORS.join(', ')})`);
  }
  const values: string[] = [];
  const valuesField = f.get('values');
  if (present(valuesField)) {
    asList(c, valuesField!.value, valuesField!.path)?.forEach((v, i) => {
      const s = asString(c, v, at(valuesField!.path, i));
      if (s !== undefined) values.push(s);
    });
  }
  // Kubernetes label selector rules: In and NotIn need values, Exists and DoesNotExist take none.
  if (operator === 'In' || operator === 'NotIn') {
    if (values.length === 0 && c.problems.length === before) c.problem(valuesField?.value ?? map, child(path, 'values'), `operator ${operator} needs at least one value`);
  } else if (operator !== undefined && present(valuesField) && isSeq(valuesField!.value) && valuesField!.value.items.length > 0) {
    c.problem(valuesField!.value, valuesField!.path, `operator ${operator} takes no values`);
  }
  if (c.problems.length > before || key === undefined || operator === undefined) return undefined;
  return { key, operator, values };
}

// ---- rule items ----

const INGRESS_PEERS = ['fromEndpoints', 'fromEntities', 'fromCIDR', 'fromCIDRSet'] as const;
const EGRESS_PEERS = ['toEndpoints', 'toEntities', 'toCIDR', 'toCIDRSet'] as const;

const ITEM_UNSUPPORTED: Record<string, string> = {
  fromRequires: 'fromRequires is not supported (Cilium deprecated it in 1.17 and removed it in 1.19)',
  toRequires: 'toRequires is not supported (Cilium deprecated it in 1.17 and removed it in 1.19)',
  fromNodes: 'node selection by node labels (fromNodes) is not supported: use fromEntities: [remote-node] or [host]',
  toNodes: 'node selection by node labels (toNodes) is not supported: use toEntities: [remote-node] or [host]',
  fromGroups: 'cloud provider groups are not supported',
  toGroups: 'cloud provider groups are not supported',
  toServices: 'toServices is not supported: select the service\'s pods with toEndpoints',
  toFQDNs: 'DNS-based rules (toFQDNs) are not supported: membrane has no DNS proxy; use toCIDR',
  authentication: 'mutual authentication is not supported',
};

function parseItem(c: Ctx, node: V, path: string, section: Section, index: number, scope: Scope): RuleItem | undefined {
  const map = asMap(c, node, path, 'must be a mapping (one rule item)');
  if (!map) return undefined;
  const before = c.problems.length;
  const ingress = section === 'ingress' || section === 'ingressDeny';
  const peers: readonly string[] = ingress ? INGRESS_PEERS : EGRESS_PEERS;
  const other: readonly string[] = ingress ? EGRESS_PEERS : INGRESS_PEERS;
  const misplaced = Object.fromEntries(other.map((name, i) => [name, ingress
    ? `${name} belongs in egress rules: an ingress rule names its peers with ${peers[i]}`
    : `${name} belongs in ingress rules: an egress rule names its peers with ${peers[i]}`]));
  const f = fields(c, map, path, { known: [...peers, 'toPorts', 'icmps'], unsupported: ITEM_UNSUPPORTED, misplaced });

  // An absent field has no effect on the rule ("All members of this structure are optional. If omitted
  // or empty, the member will have no effect on the rule"); null reads as absent, as in Go. Say so,
  // since `fromEndpoints:` with nothing after it then allows every peer.
  for (const name of peers) {
    const field = f.get(name);
    if (field && isNull(field.value)) {
      c.warning(field.key, field.path, `${name} is null, which Cilium reads as absent: this rule applies to every peer. Write ${name}: [] to select none`);
    }
  }
  const given = peers.filter((name) => present(f.get(name)) !== undefined);
  if (given.length > 1) {
    // Cilium: "FromEndpoints, FromCIDR, FromCIDRSet and FromEntities are mutually exclusive. Only one of
    // these members may be present within an individual rule."
    c.problem(f.get(given[1]!)!.key, f.get(given[1]!)!.path, `${given.join(' and ')} cannot be combined in one rule (Cilium allows one peer field per rule): write one rule for each`);
  }

  let parsedPeers: Peers = { kind: 'all' };
  const name = given[0];
  if (name !== undefined) {
    const field = f.get(name)!;
    const list = asList(c, field.value, field.path);
    if (list && list.length === 0) parsedPeers = { kind: 'none', field: name };
    else if (list) {
      if (name.endsWith('Endpoints')) {
        const selectors: Selector[] = [];
        list.forEach((item, i) => {
          const w = parseSelector(c, item, at(field.path, i));
          if (w) selectors.push(peerSelector(w, scope));
        });
        parsedPeers = { kind: 'endpoints', field: name, selectors };
      } else if (name.endsWith('Entities')) {
        parsedPeers = { kind: 'entities', field: name, entities: parseEntities(c, list, field.path) };
      } else if (name.endsWith('CIDRSet')) {
        const cidrs: CidrSelector[] = [];
        list.forEach((item, i) => {
          const s = parseCidrSet(c, item, at(field.path, i));
          if (s) cidrs.push(s);
        });
        parsedPeers = { kind: 'cidr', field: name, cidrs };
      } else {
        const cidrs: CidrSelector[] = [];
        list.forEach((item, i) => {
          const p = parseCidr(c, item, at(field.path, i), true);
          if (p) cidrs.push({ cidr: p, except: [] });
        });
        parsedPeers = { kind: 'cidr', field: name, cidrs };
      }
    }
  }

  // Cilium joins toPorts and icmps into one L4 part; neither (or both empty) = every protocol and port.
  const toPorts = parsePorts(c, f.get('toPorts'), section);
  const icmps = parseIcmps(c, f.get('icmps'));
  const ports = toPorts === undefined && icmps === undefined ? undefined : [...(toPorts ?? []), ...(icmps ?? [])];
  if (c.problems.length > before) return undefined;
  return { section, index, path, peers: parsedPeers, ...(ports !== undefined ? { ports } : {}) };
}

function parseEntities(c: Ctx, list: V[], path: string): Entity[] {
  const out: Entity[] = [];
  list.forEach((item, i) => {
    const s = asString(c, item, at(path, i));
    if (s === undefined) return;
    if ((ENTITIES as readonly string[]).includes(s)) out.push(s as Entity);
    else if (s === 'world-ipv6') c.problem(item, at(path, i), 'world-ipv6: membrane\'s network is IPv4 only (use world or world-ipv4)');
    else c.problem(item, at(path, i), `${JSON.stringify(s)} is not an entity (${ENTITIES.join(', ')})`);
  });
  return out;
}

function parseCidr(c: Ctx, node: V, path: string, allowAddress: boolean): Prefix | undefined {
  const s = asString(c, node, path);
  if (s === undefined) return undefined;
  const r = parsePolicyCidr(s, allowAddress);
  if (r.error) c.problem(node, path, r.error);
  if (r.warning) c.warning(node, path, r.warning);
  return r.prefix;
}

function parseCidrSet(c: Ctx, node: V, path: string): CidrSelector | undefined {
  const map = asMap(c, node, path, 'must be a mapping (cidr, except)');
  if (!map) return undefined;
  const before = c.problems.length;
  const f = fields(c, map, path, {
    known: ['cidr', 'except'],
    unsupported: { cidrGroupRef: 'CIDR groups are not supported: write the prefixes in cidr', cidrGroupSelector: 'CIDR groups are not supported: write the prefixes in cidr' },
  });
  const cidrField = f.get('cidr');
  let cidr: Prefix | undefined;
  // Cilium's CIDRRule takes "only notation <IP address>/<prefix>".
  if (!present(cidrField)) c.problem(map, child(path, 'cidr'), 'is required (a.b.c.d/n)');
  else cidr = parseCidr(c, cidrField!.value, cidrField!.path, false);
  const except: Prefix[] = [];
  const exceptField = f.get('except');
  if (present(exceptField)) {
    asList(c, exceptField!.value, exceptField!.path)?.forEach((item, i) => {
      const e = parseCidr(c, item, at(exceptField!.path, i), false);
      if (!e) return;
      // Cilium refuses an except outside its cidr ("allow CIDR prefix ... does not contain exclude CIDR prefix").
      if (cidr && !prefixContains(cidr, e)) c.problem(item, at(exceptField!.path, i), `${e.text} is not inside ${cidr.text}: an except must be part of its cidr`);
      else except.push(e);
    });
  }
  if (c.problems.length > before || !cidr) return undefined;
  return { cidr, except };
}

const PROTOCOLS: readonly ProtocolName[] = ['TCP', 'UDP', 'SCTP', 'ICMP', 'ANY'];
const PROTOCOLS_REFUSED: Readonly<Record<string, string>> = {
  ICMPV6: 'ICMPv6: membrane\'s network is IPv4 only',
  ICMPv6: 'ICMPv6: membrane\'s network is IPv4 only',
  VRRP: 'VRRP is not supported by membrane\'s datapath',
  IGMP: 'IGMP is not supported by membrane\'s datapath',
};

const PORT_RULE_UNSUPPORTED: Record<string, string> = {
  rules: 'L7 rules (HTTP, Kafka, DNS) are not supported: membrane enforces L3/L4 only; remove rules to allow the whole port',
  serverNames: 'TLS SNI rules (serverNames) are not supported: membrane enforces L3/L4 only',
  listener: 'Envoy listener redirects are not supported: membrane has no L7 proxy',
  originatingTLS: 'TLS interception is not supported: membrane has no L7 proxy',
  terminatingTLS: 'TLS interception is not supported: membrane has no L7 proxy',
};

/** toPorts -> the flattened port list; undefined when absent, null or [] (Cilium: no L4 part = every port). */
function parsePorts(c: Ctx, field: Field | undefined, section: Section): PortProtocol[] | undefined {
  if (!present(field)) return undefined;
  const list = asList(c, field!.value, field!.path);
  if (!list || list.length === 0) return undefined;
  const out: PortProtocol[] = [];
  list.forEach((item, i) => {
    const path = at(field!.path, i);
    const map = asMap(c, item, path, 'must be a mapping (ports)');
    if (!map) return;
    const f = fields(c, map, path, { known: ['ports'], unsupported: PORT_RULE_UNSUPPORTED });
    const portsField = f.get('ports');
    const ports = present(portsField) ? asList(c, portsField!.value, portsField!.path) : [];
    if (ports && ports.length === 0) {
      c.problem(portsField?.value ?? map, child(path, 'ports'), `needs at least one port (leave toPorts out to ${section.endsWith('Deny') ? 'deny' : 'allow'} every port)`);
    }
    ports?.forEach((p, j) => {
      const pp = parsePort(c, p, at(child(path, 'ports'), j));
      if (pp) out.push(pp);
    });
  });
  return out;
}

function parsePort(c: Ctx, node: V, path: string): PortProtocol | undefined {
  const map = asMap(c, node, path, 'must be a mapping (port, endPort, protocol)');
  if (!map) return undefined;
  const before = c.problems.length;
  const f = fields(c, map, path, { known: ['port', 'endPort', 'protocol'] });

  let port = 0;
  const portField = f.get('port');
  const pv = present(portField);
  if (pv) {
    const p = portField!.path;
    if (isScalar(pv) && typeof pv.value === 'number') {
      if (!Number.isInteger(pv.value) || pv.value < 0 || pv.value > 65535) c.problem(pv, p, `${String(pv.value)} is not a port (0-65535)`);
      else port = pv.value;
    } else if (isScalar(pv) && typeof pv.value === 'string') {
      const s = pv.value;
      if (/^\d+$/.test(s)) {
        const n = Number(s);
        if (n > 65535) c.problem(pv, p, `${s} is not a port (0-65535)`);
        else port = n;
      } else if (/^[A-Za-z0-9-]*[A-Za-z][A-Za-z0-9-]*$/.test(s)) {
        c.problem(pv, p, `named ports (${JSON.stringify(s)}) are not supported: write the port number`);
      } else c.problem(pv, p, `${JSON.stringify(s)} is not a port (0-65535)`);
    } else c.problem(pv, p, `must be a port number (0-65535), not ${describe(pv)}`);
  }

  let protocol: ProtocolName = 'ANY';
  const protoField = f.get('protocol');
  const prv = present(protoField);
  if (prv) {
    const s = asString(c, prv, protoField!.path);
    if (s !== undefined) {
      if ((PROTOCOLS as readonly string[]).includes(s)) protocol = s as ProtocolName;
      else if (PROTOCOLS_REFUSED[s] !== undefined) c.problem(prv, protoField!.path, PROTOCOLS_REFUSED[s]!);
      else if ((PROTOCOLS as readonly string[]).includes(s.toUpperCase())) c.problem(prv, protoField!.path, `${JSON.stringify(s)}: protocols are upper case (${s.toUpperCase()}), as Cilium requires`);
      else c.problem(prv, protoField!.path, `${JSON.stringify(s)} is not a protocol (${PROTOCOLS.join(', ')})`);
    }
  }

  let endPort: number | undefined;
  const endField = f.get('endPort');
  const ev = present(endField);
  if (ev) {
    const p = endField!.path;
    if (!isScalar(ev) || typeof ev.value !== 'number' || !Number.isInteger(ev.value)) c.problem(ev, p, `must be a port number, not ${describe(ev)}`);
    else if (ev.value === 0) { /* 0 is Cilium's "not set" (omitempty) */ }
    else if (ev.value < 0 || ev.value > 65535) c.problem(ev, p, `${ev.value} is not a port (0-65535)`);
    else if (c.problems.length === before && port === 0) c.problem(ev, p, 'endPort needs a port of 1 or more (port 0 already means every port)');
    else if (c.problems.length === before && ev.value < port) c.problem(ev, p, `endPort ${ev.value} is less than port ${port}`);
    else if (ev.value > port) endPort = ev.value;
  }

  if (protocol === 'ICMP' && (port !== 0 || endPort !== undefined)) {
    c.problem(pv ?? map, child(path, 'port'), 'ICMP has no ports: leave port out (every ICMP type), or match types with icmps: [{fields: [{type: 8}]}]');
  }
  if (c.problems.length > before) return undefined;
  return { port, ...(endPort !== undefined ? { endPort } : {}), protocol };
}

/**
 * ICMPv4 type names Cilium accepts in icmps (docs.cilium.io "Layer 4
 * Policies: Limit ICMP/ICMPv6 types"), with their numbers (RFC 792 and the
 * IANA registry).
 */
const ICMP_TYPES: Readonly<Record<string, number>> = {
  EchoReply: 0, DestinationUnreachable: 3, Redirect: 5, Echo: 8, EchoRequest: 8, RouterAdvertisement: 9,
  RouterSelection: 10, TimeExceeded: 11, ParameterProblem: 12, Timestamp: 13, TimestampReply: 14, Photuris: 40,
  ExtendedEchoRequest: 42, ExtendedEchoReply: 43,
};

/**
 * icmps -> ICMP "ports": the datapath keys ICMP by its type in the port
 * field (bpf/lib/conntrack.h policy_port), as Cilium does. undefined when
 * absent, null or [].
 */
function parseIcmps(c: Ctx, field: Field | undefined): PortProtocol[] | undefined {
  if (!present(field)) return undefined;
  const list = asList(c, field!.value, field!.path);
  if (!list || list.length === 0) return undefined;
  const out: PortProtocol[] = [];
  list.forEach((item, i) => {
    const path = at(field!.path, i);
    const map = asMap(c, item, path, 'must be a mapping (fields)');
    if (!map) return;
    const f = fields(c, map, path, { known: ['fields'] });
    const fl = present(f.get('fields'));
    const entries = fl ? asList(c, fl, child(path, 'fields')) : [];
    if (entries && entries.length === 0) c.problem(fl ?? map, child(path, 'fields'), 'needs at least one ICMP type');
    entries?.forEach((e, j) => {
      const p = at(child(path, 'fields'), j);
      const m = asMap(c, e, p, 'must be a mapping (type, family)');
      if (!m) return;
      const ef = fields(c, m, p, { known: ['type', 'family'] });
      const fam = present(ef.get('family'));
      if (fam) {
        const s = asString(c, fam, child(p, 'family'));
        if (s === 'IPv6') c.problem(fam, child(p, 'family'), 'ICMPv6: membrane\'s network is IPv4 only');
        else if (s !== undefined && s !== 'IPv4') c.problem(fam, child(p, 'family'), `${JSON.stringify(s)} is not a family (IPv4)`);
      }
      const tv = present(ef.get('type'));
      const tp = child(p, 'type');
      if (!tv) { c.problem(m, tp, 'is required (an ICMP type: 0-255 or a name such as EchoRequest)'); return; }
      let type: number | undefined;
      if (isScalar(tv) && typeof tv.value === 'number' && Number.isInteger(tv.value) && tv.value >= 0 && tv.value <= 255) type = tv.value;
      else if (isScalar(tv) && typeof tv.value === 'string' && /^\d{1,3}$/.test(tv.value) && Number(tv.value) <= 255) type = Number(tv.value);
      else if (isScalar(tv) && typeof tv.value === 'string' && ICMP_TYPES[tv.value] !== undefined) type = ICMP_TYPES[tv.value];
      else c.problem(tv, tp, `${describe(tv)} is not an ICMPv4 type (0-255 or one of ${Object.keys(ICMP_TYPES).join(', ')})`);
      if (type !== undefined) out.push({ port: type, endPort: type, protocol: 'ICMP' }); // endPort: one type, even type 0
    });
  });
  return out;
}
