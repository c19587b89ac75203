//! Networking on the engine: starting the device's endpoint.

use std::sync::Arc;

use crate::engine::Engine;
use crate::net::{NetError, NetOptions, Network};

impl Engine {
    /// Starts networking: binds an iroh endpoint with this device's node key and accepts
    /// sessions from members of the workspace. The device must have joined (or created) the
    /// workspace first. Must be called within a tokio runtime.
    pub async fn enable_network(&self, options: NetOptions) -> Result<Network, NetError> {
        if self.credential()?.is_none() {
            return Err(NetError::NotJoined);
        }
        Network::device(self.node_key()?, Arc::new(self.clone()), options).await
    }
}
