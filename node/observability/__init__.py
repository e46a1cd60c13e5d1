"""Operating the node: metrics (Prometheus), structured logs and health probes."""
