//! DescribeCluster: the cluster id and the agents this client should use (the same list
//! Metadata gives it, departed agents included, see [`crate::cluster`]); the first live
//! one is the controller.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::sb;
use crate::cluster::ClusterView;
use crate::Shared;

pub fn handle(
    shared: &Shared,
    client_id: Option<&str>,
    listener: &str,
    _req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let view = ClusterView::of(shared);
    let agents = view.for_client(client_id);
    let controller = agents.first().map_or(shared.config.node_id, |a| a.node_id);
    let brokers = shared.departures.brokers(
        &view,
        &agents,
        client_id,
        shared.config.departed_agent_grace,
    );
    DescribeClusterResponse::default()
        .with_cluster_id(sb(shared.cluster_id.clone()))
        .with_controller_id(BrokerId(controller))
        .with_brokers(
            brokers
                .iter()
                .map(|a| {
                    let (host, port) = a.endpoint(listener);
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(a.node_id))
                        .with_host(sb(host))
                        .with_port(port)
                        .with_rack((!a.az.is_empty()).then(|| sb(a.az.clone())))
                })
                .collect(),
        )
        .with_cluster_authorized_operations(i32::MIN)
}
