// Fixed values of the agent's observability that other layers (the lab's
// status) need without loading the pipeline.

/** The agent's Prometheus port (Cilium's agent uses the same), bound to the node IP: http://NODE_IP:9962/metrics. */
export const METRICS_PORT = 9962;

/** A node's metrics URL, as `lab status -o json` lists it. */
export const metricsURL = (nodeIP: string): string => `http://${nodeIP}:${METRICS_PORT}/metrics`;
