//! Conflicts between sites resolved the same way on every site: each replicated change carries
//! a hybrid logical clock stamp, and a peer's change applies to an entity (a user, a group's
//! member, a policy, an attachment, a bucket, one config of a bucket, ...) only if it is later
//! than the change this site holds for that entity; a stale one is ignored and counted
//! (`Sites::stale`). Arrival order no longer decides: two sites that changed one policy at once
//! end with the same document whichever change reached which site first.
//!
//! The clock lives in the replicated state (`Sites::hlc`), so applying stays a pure function of
//! the state and the command: the proposer hands in its wall time (`Command::At`), a local
//! change is stamped with the latest of that time, the site clock plus one and the entity's own
//! stamp plus one (a change orders after the one it replaces however far the proposer's clock
//! runs behind the site that made that one), and every stamp received moves the site clock
//! forward. Ties go to the site name. Changes are stamped while the site has peers; a stamp is
//! kept per entity, a removed entity's too (so a stale change cannot bring it back): the map
//! grows with the names ever changed, not with the changes.

use serde::{Deserialize, Serialize};

use crate::command::Command;
use crate::iam::identity::{IamCommand, PolicyTarget};

/// How far ahead of the proposer's wall clock a peer's stamp may move the site clock. A peer
/// whose clock is set years ahead must not drag every later change of this site into its
/// future; its changes still order by their stamps.
pub const MAX_AHEAD_NS: i64 = 15 * 60 * 1_000_000_000;

/// When a change was made (hybrid logical clock, nanoseconds since the Unix epoch) and by
/// which site: ordered by time, then site name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Stamp {
    pub at_ns: i64,
    pub site: String,
}

/// `cmd` split per entity it changes: the entity's key and the part of `cmd` that changes it.
/// Commands naming several members or policies change each as an entity of its own, so a stale
/// part is dropped while the rest applies, and adding and removing members converges like
/// any other register.
pub fn entities(cmd: &Command) -> Vec<(String, Command)> {
    let one = |key: String| vec![(key, cmd.clone())];
    match cmd {
        Command::CreateBucket { name, .. } | Command::DeleteBucket { name } => {
            one(format!("bucket/{name}"))
        }
        Command::SetVersioning { name, .. } => one(format!("bucket/{name}/versioning")),
        Command::SetObjectLock { name, .. } => one(format!("bucket/{name}/object-lock")),
        Command::SetBucketEncryption { name, .. } => one(format!("bucket/{name}/encryption")),
        Command::SetBucketTagging { name, .. } => one(format!("bucket/{name}/tagging")),
        Command::SetBucketLifecycle { name, .. } => one(format!("bucket/{name}/lifecycle")),
        Command::SetBucketCors { name, .. } => one(format!("bucket/{name}/cors")),
        Command::SetBucketPolicy { bucket, .. } => one(format!("bucket/{bucket}/policy")),
        Command::Iam(c) => iam_entities(c)
            .into_iter()
            .map(|(k, c)| (k, Command::Iam(c)))
            .collect(),
        Command::Kms(_) | Command::Restore { .. } | Command::Site(_) | Command::At { .. } => {
            Vec::new()
        }
    }
}

fn target_key(t: &PolicyTarget) -> String {
    match t {
        PolicyTarget::User(k) => format!("user:{k}"),
        PolicyTarget::Group(g) => format!("group:{g}"),
        PolicyTarget::LdapUser(dn) => format!("ldap-user:{dn}"),
        PolicyTarget::LdapGroup(dn) => format!("ldap-group:{dn}"),
    }
}

fn iam_entities(c: &IamCommand) -> Vec<(String, IamCommand)> {
    let one = |key: String| vec![(key, c.clone())];
    match c {
        IamCommand::AddUser { access_key, .. } | IamCommand::RemoveUser { access_key } => {
            one(format!("user/{access_key}"))
        }
        IamCommand::SetUserEnabled { access_key, .. } => one(format!("user/{access_key}/enabled")),
        IamCommand::AddGroupMembers { group, members }
        | IamCommand::RemoveGroupMembers { group, members } => {
            if members.is_empty() {
                return one(format!("group/{group}"));
            }
            members
                .iter()
                .map(|m| {
                    let part = match c {
                        IamCommand::AddGroupMembers { .. } => IamCommand::AddGroupMembers {
                            group: group.clone(),
                            members: vec![m.clone()],
                        },
                        _ => IamCommand::RemoveGroupMembers {
                            group: group.clone(),
                            members: vec![m.clone()],
                        },
                    };
                    (format!("group/{group}/member/{m}"), part)
                })
                .collect()
        }
        IamCommand::SetGroupEnabled { group, .. } => one(format!("group/{group}/enabled")),
        IamCommand::PutPolicy { name, .. } | IamCommand::DeletePolicy { name } => {
            one(format!("policy/{name}"))
        }
        IamCommand::AttachPolicy { policies, target }
        | IamCommand::DetachPolicy { policies, target } => policies
            .iter()
            .map(|p| {
                let part = match c {
                    IamCommand::AttachPolicy { .. } => IamCommand::AttachPolicy {
                        policies: vec![p.clone()],
                        target: target.clone(),
                    },
                    _ => IamCommand::DetachPolicy {
                        policies: vec![p.clone()],
                        target: target.clone(),
                    },
                };
                (format!("attachment/{}/{p}", target_key(target)), part)
            })
            .collect(),
        IamCommand::AddServiceAccount { access_key, .. }
        | IamCommand::UpdateServiceAccount { access_key, .. }
        | IamCommand::RemoveServiceAccount { access_key } => {
            one(format!("service-account/{access_key}"))
        }
    }
}

/// `cmd` as proposed at wall time `now_ns`, when applying it needs the time: a change peers
/// receive (its stamp), or a peer's change (how far its stamp may move the site clock).
pub fn timed(cmd: Command, now_ns: i64) -> Command {
    let needs = crate::site::replicable(&cmd)
        || matches!(
            cmd,
            Command::Site(crate::site::SiteCommand::FromPeer { .. })
        );
    if needs {
        Command::At {
            now_ns,
            command: Box::new(cmd),
        }
    } else {
        cmd
    }
}
