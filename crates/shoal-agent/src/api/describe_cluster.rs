//! DescribeCluster: the cluster id and this agent as its only broker and controller.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::sb;
use crate::Shared;

pub fn handle(shared: &Shared, _req: DescribeClusterRequest) -> DescribeClusterResponse {
    let (host, port) = shared.config.advertised_host_port();
    DescribeClusterResponse::default()
        .with_cluster_id(sb(shared.cluster_id.clone()))
        .with_controller_id(BrokerId(shared.config.node_id))
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(shared.config.node_id))
            .with_host(sb(host))
            .with_port(port)])
        .with_cluster_authorized_operations(i32::MIN)
}
