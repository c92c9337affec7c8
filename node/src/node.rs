//! The handle every API reaches a node's parts through: the object layer, the control plane's
//! catalog, credentials and IAM, SSE keys and the link to peer sites. It sits below the S3, STS,
//! admin and replication modules, which take it; `server` builds it from handed-in parts
//! (`server::node`) and wires the listeners and background tasks.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use crate::auth::authorize::Authorizer;
use crate::auth::CredentialStore;
use crate::catalog::Catalog;
use crate::object::ObjectLayer;
use crate::topology::Topology;

/// Everything a running node holds.
pub struct Node {
    pub objects: Arc<ObjectLayer>,
    pub catalog: Arc<Catalog>,
    pub credentials: Arc<dyn CredentialStore>,
    /// IAM: who may do what (`None` only for a store without root credentials: root-only).
    pub iam: Option<Arc<Authorizer>>,
    pub topology: Topology,
    /// Background full heals running now (shown by the admin API, so operators and tests can
    /// tell a finished heal from one still under way).
    pub healing: AtomicUsize,
    /// Server-side encryption keys (the admin API creates registry keys through it).
    pub sse: Arc<crate::sse::object::Keyring>,
    /// Requests to peer sites (site replication).
    pub link: crate::link::Link,
    /// The site's internode secret (root-only admin call `internode/secret`).
    pub site_secret: zeroize::Zeroizing<String>,
    /// External identity providers (LDAP, OpenID Connect), for the STS flows.
    pub idp: crate::idp::Providers,
    /// This node's finished requests, for `cairn admin trace`.
    pub trace: crate::observe::trace::TraceHub,
    /// Requests to the other nodes of this site over their S3 port (the trace's fan-in): a link
    /// of its own, so the peer sites' contacts list only peer sites.
    pub nodes_link: crate::link::Link,
    /// The audit log, when `CAIRN_AUDIT_*` names a sink: set once by the server at start-up
    /// (the simulator runs without).
    pub audit: std::sync::OnceLock<Arc<crate::observe::audit::Audit>>,
}
