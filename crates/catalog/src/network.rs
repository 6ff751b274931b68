//! Raft networking placeholder for single-node groups.
//!
//! A one-member group never sends an RPC, so [`UnreachableNetwork`] answers every call with
//! `Unreachable`. A real transport implements [`RaftNetworkFactory`] for [`TypeConfig`] and is
//! passed to [`crate::RaftCatalog::open_with_network`]; nothing in storage or the state machine
//! depends on the network.

use openraft::BasicNode;
use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use crate::types::{NodeId, TypeConfig};

/// A network factory whose clients cannot reach any peer.
#[derive(Clone, Copy, Debug, Default)]
pub struct UnreachableNetwork;

/// The client [`UnreachableNetwork`] hands out for one peer.
#[derive(Clone, Debug)]
pub struct UnreachableClient {
    target: NodeId,
}

/// Why every RPC of an [`UnreachableClient`] fails.
#[derive(Debug, thiserror::Error)]
#[error("no raft network is configured: node {target} cannot be reached")]
struct NoNetwork {
    target: NodeId,
}

impl UnreachableClient {
    fn unreachable<E: std::error::Error>(&self) -> RPCError<NodeId, BasicNode, E> {
        RPCError::Unreachable(Unreachable::new(&NoNetwork {
            target: self.target,
        }))
    }
}

impl RaftNetworkFactory<TypeConfig> for UnreachableNetwork {
    type Network = UnreachableClient;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Self::Network {
        UnreachableClient { target }
    }
}

impl RaftNetwork<TypeConfig> for UnreachableClient {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(self.unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(self.unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(self.unreachable())
    }
}
