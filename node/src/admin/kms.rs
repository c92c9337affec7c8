//! Admin API `kms/key/...`: the control plane's KMS key registry (create, list, status, disable,
//! enable, delete). Disabling a key makes every object under it unreadable until it is enabled
//! again; deleting wipes its material, so they stay unreadable for good.

use hyper::{Method, Uri};
use s3s::{s3_error, Body, S3Response, S3Result};
use serde::Serialize;

use cairn_control_plane::kms::{KeyState, KmsCommand, KmsKey};
use cairn_control_plane::Command;

use super::{json, query_param};
use crate::node::Node;

#[derive(Serialize)]
struct KeyStatus {
    key: String,
    state: &'static str,
    created_ns: i64,
}

fn status(name: &str, k: &KmsKey) -> KeyStatus {
    KeyStatus {
        key: name.to_string(),
        state: match k.state {
            KeyState::Enabled => "enabled",
            KeyState::Disabled => "disabled",
            KeyState::Deleted => "deleted",
        },
        created_ns: k.created_ns,
    }
}

pub async fn handle(
    node: &Node,
    method: &Method,
    op: &str,
    uri: &Uri,
) -> S3Result<S3Response<Body>> {
    let catalog = &node.catalog;
    if (method, op) == (&Method::GET, "list") {
        let state = catalog.state();
        let keys: Vec<KeyStatus> = state.kms.keys.iter().map(|(n, k)| status(n, k)).collect();
        return json(&keys);
    }
    let name = query_param(uri, "key")
        .filter(|k| !k.is_empty())
        .ok_or_else(|| s3_error!(InvalidArgument, "query parameter key is required"))?;
    let set = |state| KmsCommand::SetState {
        name: name.clone(),
        state,
    };
    let cmd = match (method, op) {
        (&Method::GET, "status") => None,
        (&Method::POST, "create") => {
            let registry =
                node.sse.registry.as_ref().ok_or_else(|| {
                    crate::s3::sse::error(crate::sse::registry::master_key_missing())
                })?;
            let wrapped = registry
                .wrap_new_key(&name)
                .map_err(crate::s3::sse::error)?;
            Some(KmsCommand::Create {
                name: name.clone(),
                created_ns: node.objects.clock.now_ns(),
                wrapped,
            })
        }
        (&Method::POST, "disable") => Some(set(KeyState::Disabled)),
        (&Method::POST, "enable") => Some(set(KeyState::Enabled)),
        (&Method::POST, "delete") => Some(set(KeyState::Deleted)),
        _ => return Err(s3_error!(NotImplemented, "unknown KMS operation {op}")),
    };
    if let Some(cmd) = cmd {
        catalog.propose(Command::Kms(cmd)).await?;
    }
    let state = catalog.state();
    let key = state
        .kms
        .keys
        .get(&name)
        .ok_or_else(|| s3_error!(InvalidRequest, "KMS key {name} does not exist"))?;
    json(&status(&name, key))
}
