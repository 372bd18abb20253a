// Endpoint and node selectors: Kubernetes label selectors (matchLabels and
// matchExpressions with In, NotIn, Exists, DoesNotExist) over Cilium's
// source-prefixed labels.
//
// Cilium's rules, which this follows (docs.cilium.io "Terminology: Label
// Source"; "Endpoint Selector"):
// - a selector key may name a source (`k8s:app`, `reserved:host`) and then
//   matches only labels of that source; a key without a source (`app`) is
//   `any:app` and matches a label of that key from any source;
// - NotIn and DoesNotExist also match when the label is absent (Kubernetes
//   label-selector semantics);
// - an empty selector matches every label set.
import { SOURCE_ANY, indexLabels, type IndexedLabels, type Labels } from './labels.ts';

export type Operator = 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
export const OPERATORS: readonly Operator[] = ['In', 'NotIn', 'Exists', 'DoesNotExist'];

export interface Requirement {
  /** The label source this requirement looks at; `any` = every source. */
  readonly source: string;
  /** The label key without its source. */
  readonly key: string;
  readonly operator: Operator;
  /** In / NotIn: at least one value; Exists / DoesNotExist: none. */
  readonly values: readonly string[];
}

/** A compiled selector: all requirements must hold (an empty list selects everything). */
export interface Selector {
  readonly requirements: readonly Requirement[];
}

/** A selector key as written (`app`, `k8s:app`, `reserved:host`) -> source and key; no source means `any`. */
export function parseSelectorKey(written: string): { source: string; key: string } {
  const colon = written.indexOf(':');
  return colon < 0 ? { source: SOURCE_ANY, key: written } : { source: written.slice(0, colon), key: written.slice(colon + 1) };
}

/** Builds a selector from matchLabels and matchExpressions (keys as written). */
export function makeSelector(
  matchLabels: Readonly<Record<string, string>> = {},
  matchExpressions: readonly { key: string; operator: Operator; values?: readonly string[] }[] = [],
): Selector {
  const requirements: Requirement[] = [];
  for (const [k, v] of Object.entries(matchLabels)) requirements.push({ ...parseSelectorKey(k), operator: 'In', values: [v] });
  for (const e of matchExpressions) requirements.push({ ...parseSelectorKey(e.key), operator: e.operator, values: [...(e.values ?? [])] });
  return { requirements };
}

/** Every value the label set has for a requirement's key, within its source. */
function valuesOf(labels: IndexedLabels, source: string, key: string): string[] {
  const pairs = labels.get(key);
  if (!pairs) return [];
  return source === SOURCE_ANY ? pairs.map(([, v]) => v) : pairs.filter(([s]) => s === source).map(([, v]) => v);
}

export function requirementMatches(r: Requirement, labels: IndexedLabels): boolean {
  const have = valuesOf(labels, r.source, r.key);
  switch (r.operator) {
    case 'In': return have.some((v) => r.values.includes(v));
    case 'NotIn': return !have.some((v) => r.values.includes(v));
    case 'Exists': return have.length > 0;
    case 'DoesNotExist': return have.length === 0;
  }
}

/** Does the selector select this label set? Pass IndexedLabels when matching one set against many selectors. */
export function selectorMatches(selector: Selector, labels: Labels | IndexedLabels): boolean {
  const idx = labels instanceof Map ? labels as IndexedLabels : indexLabels(labels as Labels);
  return selector.requirements.every((r) => requirementMatches(r, idx));
}

/** Does the selector say anything about this key (in any source, or exactly this one)? */
export function selectorNamesKey(selector: Selector, key: string, sources: readonly string[]): boolean {
  return selector.requirements.some((r) => r.key === key && sources.includes(r.source));
}

/** Does the selector name any key of this source (e.g. `reserved`)? */
export function selectorNamesSource(selector: Selector, source: string): boolean {
  return selector.requirements.some((r) => r.source === source);
}

/** `k8s:app=web, any:tier in (a, b), any:debug doesnotexist`; `{}` for the empty selector. */
export function formatSelector(selector: Selector): string {
  if (selector.requirements.length === 0) return '{}';
  return selector.requirements.map((r) => {
    const k = `${r.source}:${r.key}`;
    switch (r.operator) {
      case 'In': return r.values.length === 1 ? `${k}=${r.values[0]}` : `${k} in (${r.values.join(', ')})`;
      case 'NotIn': return `${k} notin (${r.values.join(', ')})`;
      case 'Exists': return `${k} exists`;
      case 'DoesNotExist': return `${k} doesnotexist`;
    }
  }).join(', ');
}
