// Security labels of a pod (reference 7.2): its labels with the k8s source,
// plus the namespace label, so pods with equal labels in different
// namespaces get different identities.
export function securityLabels(labels: Record<string, string>, podNamespace = 'default'): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels)) out[k.includes(':') ? k : `k8s:${k}`] = v;
  out['k8s:io.kubernetes.pod.namespace'] = podNamespace;
  return out;
}
