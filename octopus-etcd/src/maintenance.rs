//! etcd's Maintenance service: the cluster's header (id and revision).

use std::time::Duration;

use etcd_client::Client;
use octopus_discovery_core::{Header, Result};

use crate::call::within;
use crate::convert::header as convert_header;

/// The cluster id and current revision. Maintenance status needs no permission
/// on any key, so it works for users whose role covers only their namespace.
pub(crate) async fn header(client: &Client, limit: Duration) -> Result<Header> {
    let resp = within(limit, "status", client.maintenance_client().status()).await?;
    Ok(convert_header(resp.header()))
}
