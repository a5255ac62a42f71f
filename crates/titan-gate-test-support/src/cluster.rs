//! A cluster of real nats-server nodes on loopback, for tests of node loss.

use crate::{HealthCheck, NatsServer, NatsServerError, free_port};

/// Starts `count` clustered nodes with JetStream, named `node-0`, `node-1`, …, one at a
/// time. Each start waits only until JetStream is enabled, because a lone node reports
/// full health only once its peers are up; callers wait on each node's `/healthz` after.
pub fn start_cluster(count: usize, cluster_name: &str) -> Result<Vec<NatsServer>, NatsServerError> {
    let cluster_ports: Vec<u16> = (0..count).map(|_| free_port()).collect();
    let routes = cluster_ports.iter().map(|port| format!("nats://127.0.0.1:{port}")).collect::<Vec<_>>().join(",");
    let mut nodes = Vec::with_capacity(count);
    for (index, cluster_port) in cluster_ports.iter().enumerate() {
        let node = NatsServer::builder()
            .health_check(HealthCheck::JetStreamEnabled)
            .args(["--server_name", &format!("node-{index}")])
            .args(["--cluster_name", cluster_name])
            .args(["--cluster", &format!("nats://127.0.0.1:{cluster_port}")])
            .args(["--routes", &routes])
            .start()?;
        nodes.push(node);
    }
    Ok(nodes)
}
