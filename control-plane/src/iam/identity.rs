//! The site's identities (the internal IDP): users, groups, named policies and their attachments,
//! and service accounts, held in the replicated site state and changed only by [`IamCommand`]s.
//!
//! Secret keys arrive sealed: the proposing node encrypts them (AES-256-GCM under a key derived
//! from the root credentials every node of the site has, with a nonce from its handed-in RNG), so
//! `apply` stays a pure function and neither the Raft log, the snapshots nor the state mirrored on
//! the drives hold a secret in clear.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::canned;
use super::policy::Policy;

/// Shortest access key accepted (MinIO's limit).
pub const MIN_ACCESS_KEY: usize = 3;
/// Longest access key accepted.
pub const MAX_ACCESS_KEY: usize = 128;

/// A secret key encrypted by the proposer. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    pub nonce: Vec<u8>,
    /// Ciphertext followed by the GCM tag.
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedSecret(..)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub secret: SealedSecret,
    pub enabled: bool,
    /// Names of the policies attached to the user.
    #[serde(default)]
    pub policies: BTreeSet<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Access keys of the member users.
    pub members: BTreeSet<String>,
    pub enabled: bool,
    #[serde(default)]
    pub policies: BTreeSet<String>,
}

/// Whose permissions a service account or a session inherits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Parent {
    /// The site's root credentials (the proposer recognises root's access key).
    Root,
    /// A user, by access key.
    User(String),
    /// A directory (AD/LDAP) user, by normalized DN. Its policies are those mapped to the DN and
    /// to the group DNs in [`Asserted::groups`] (see [`LdapMappings`]), looked up per request,
    /// so a detached policy stops working at once.
    Ldap(String),
    /// An OpenID Connect subject: the provider's configuration name and the token's `sub`. Its
    /// policies are the names in [`Asserted::policies`], which the provider's token named.
    OpenId { provider: String, subject: String },
    /// The holder of a client certificate (STS `AssumeRoleWithCertificate`), by the subject's
    /// common name; its policy is the one the name names ([`Asserted::policies`]).
    Certificate(String),
}

/// What an external identity provider asserted about an identity when it logged in: LDAP group
/// DNs, or the policy names of an OpenID Connect token. Empty for internal identities.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asserted {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// The name an LDAP user logged in with: the directory check of its service accounts runs
    /// the user search with it again, so a user the filter no longer finds (disabled) stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

impl Asserted {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.policies.is_empty() && self.username.is_none()
    }
}

/// Policies mapped to directory DNs (`cairn admin idp ldap policy attach`): the internal IDP's
/// attachments, for identities the directory owns. Keys are normalized DNs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LdapMappings {
    #[serde(default)]
    pub users: BTreeMap<String, BTreeSet<String>>,
    #[serde(default)]
    pub groups: BTreeMap<String, BTreeSet<String>>,
}

impl LdapMappings {
    /// The policies of a user DN and its group DNs, each with the group that grants it.
    pub fn policies_of<'a>(
        &'a self,
        dn: &'a str,
        groups: &'a [String],
    ) -> impl Iterator<Item = (&'a str, Option<&'a str>)> + 'a {
        let own = self
            .users
            .get(dn)
            .into_iter()
            .flatten()
            .map(|p| (p.as_str(), None));
        let grouped = groups.iter().flat_map(move |g| {
            self.groups
                .get(g)
                .into_iter()
                .flatten()
                .map(move |p| (p.as_str(), Some(g.as_str())))
        });
        own.chain(grouped)
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty()
    }

    fn has(&self, target: &PolicyTarget) -> bool {
        match target {
            PolicyTarget::LdapUser(dn) => self.users.contains_key(dn),
            PolicyTarget::LdapGroup(dn) => self.groups.contains_key(dn),
            _ => false,
        }
    }

    fn uses(&self, policy: &str) -> bool {
        self.users
            .values()
            .chain(self.groups.values())
            .any(|s| s.contains(policy))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccount {
    pub parent: Parent,
    pub secret: SealedSecret,
    /// Inline identity policy that narrows the parent's permissions.
    pub policy: Option<String>,
    /// Nanoseconds since the epoch after which the credentials stop working.
    pub expires_ns: Option<i64>,
    pub enabled: bool,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// For the account of an external identity: what its provider asserted at creation.
    #[serde(default, skip_serializing_if = "Asserted::is_empty")]
    pub asserted: Asserted,
}

/// Who a policy is attached to or detached from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PolicyTarget {
    User(String),
    Group(String),
    /// A directory user's DN (normalized by the proposer).
    LdapUser(String),
    /// A directory group's DN (normalized by the proposer).
    LdapGroup(String),
}

/// Changes to the identities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IamCommand {
    /// Adds a user, or replaces an existing user's secret (as `mc admin user add` does).
    AddUser {
        access_key: String,
        secret: SealedSecret,
    },
    /// Removes the user, its service accounts and its group memberships.
    RemoveUser {
        access_key: String,
    },
    SetUserEnabled {
        access_key: String,
        enabled: bool,
    },
    /// Adds members to a group, creating it (enabled) if needed.
    AddGroupMembers {
        group: String,
        members: Vec<String>,
    },
    /// Removes members; with no members, removes the group itself (which must be empty).
    RemoveGroupMembers {
        group: String,
        members: Vec<String>,
    },
    SetGroupEnabled {
        group: String,
        enabled: bool,
    },
    /// Creates or replaces a named policy (validated as an identity policy).
    PutPolicy {
        name: String,
        document: String,
    },
    DeletePolicy {
        name: String,
    },
    AttachPolicy {
        policies: Vec<String>,
        target: PolicyTarget,
    },
    DetachPolicy {
        policies: Vec<String>,
        target: PolicyTarget,
    },
    AddServiceAccount {
        access_key: String,
        account: Box<ServiceAccount>,
    },
    /// Changes the given fields of a service account. Removing the policy is a field of its own:
    /// commands travel as JSON, where an `Option<Option<_>>`'s `Some(None)` reads back as `None`.
    UpdateServiceAccount {
        access_key: String,
        secret: Option<SealedSecret>,
        /// A new inline policy.
        policy: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        remove_policy: bool,
        expires_ns: Option<i64>,
        enabled: Option<bool>,
    },
    RemoveServiceAccount {
        access_key: String,
    },
}

impl IamCommand {
    /// True when the command would add, change or remove the identity with this access key (the
    /// proposer refuses such commands for root's access key: root is not an IAM user).
    pub fn names(&self, access_key: &str) -> bool {
        match self {
            Self::AddUser { access_key: k, .. }
            | Self::RemoveUser { access_key: k }
            | Self::SetUserEnabled { access_key: k, .. }
            | Self::AddServiceAccount { access_key: k, .. }
            | Self::UpdateServiceAccount { access_key: k, .. }
            | Self::RemoveServiceAccount { access_key: k } => k == access_key,
            Self::AddGroupMembers { members, .. } | Self::RemoveGroupMembers { members, .. } => {
                members.iter().any(|m| m == access_key)
            }
            Self::AttachPolicy { target, .. } | Self::DetachPolicy { target, .. } => {
                *target == PolicyTarget::User(access_key.to_owned())
            }
            _ => false,
        }
    }
}

/// Why an IAM command was refused; the admin API maps these to its error codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum IamError {
    #[error("invalid access key {0:?}: 3 to 128 characters of letters, digits and -_.@=+,")]
    InvalidAccessKey(String),
    #[error("invalid name {0:?}")]
    InvalidName(String),
    #[error("the specified user does not exist: {0}")]
    NoSuchUser(String),
    #[error("the specified group does not exist: {0}")]
    NoSuchGroup(String),
    #[error("the canned policy or policy does not exist: {0}")]
    NoSuchPolicy(String),
    #[error("the specified service account does not exist: {0}")]
    NoSuchServiceAccount(String),
    #[error("access key {0} is already in use")]
    AccessKeyInUse(String),
    #[error("{0} is a built-in policy: it cannot be changed or deleted")]
    CannedPolicy(String),
    #[error("policy {0} is attached to a user or group")]
    PolicyInUse(String),
    #[error("group {0} still has members")]
    GroupNotEmpty(String),
    #[error("MalformedPolicy: {0}")]
    MalformedPolicy(String),
    #[error("invalid distinguished name {0:?}")]
    InvalidDn(String),
}

/// Everything IAM keeps in the site state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IamState {
    /// Users by access key.
    #[serde(default)]
    pub users: BTreeMap<String, User>,
    #[serde(default)]
    pub groups: BTreeMap<String, Group>,
    /// Named policy documents (the canned ones are built in and not stored).
    #[serde(default)]
    pub policies: BTreeMap<String, String>,
    /// Service accounts by access key.
    #[serde(default)]
    pub service_accounts: BTreeMap<String, ServiceAccount>,
    /// Policies mapped to directory users and groups (left out while empty, so a site without
    /// a directory writes the state it always wrote).
    #[serde(default, skip_serializing_if = "LdapMappings::is_empty")]
    pub ldap: LdapMappings,
}

fn check_access_key(k: &str) -> Result<(), IamError> {
    let ok = (MIN_ACCESS_KEY..=MAX_ACCESS_KEY).contains(&k.len())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@=+,".contains(c));
    if ok {
        Ok(())
    } else {
        Err(IamError::InvalidAccessKey(k.to_owned()))
    }
}

fn check_name(n: &str) -> Result<(), IamError> {
    let ok = !n.is_empty()
        && n.len() <= 128
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@=+,".contains(c));
    if ok {
        Ok(())
    } else {
        Err(IamError::InvalidName(n.to_owned()))
    }
}

/// Longest DN a mapping takes (AD allows 255-character RDN values; a DN of many is rare).
pub const MAX_DN: usize = 1024;

/// A DN as a mapping key: the proposer normalizes it; the state only bounds it.
fn check_dn(dn: &str) -> Result<String, IamError> {
    if dn.is_empty() || dn.len() > MAX_DN || !dn.contains('=') || dn.chars().any(char::is_control) {
        return Err(IamError::InvalidDn(dn.to_owned()));
    }
    Ok(dn.to_owned())
}

/// Validates an identity policy document (named, inline or session).
pub fn check_policy(document: &str) -> Result<Policy, IamError> {
    Policy::parse_identity(document).map_err(|e| IamError::MalformedPolicy(e.to_string()))
}

impl IamState {
    /// The document of a named policy: a canned one or a stored one.
    pub fn policy_document(&self, name: &str) -> Option<&str> {
        canned::CANNED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, text)| *text)
            .or_else(|| self.policies.get(name).map(String::as_str))
    }

    /// Groups the user is a member of (enabled or not).
    pub fn groups_of<'a>(&'a self, user: &'a str) -> impl Iterator<Item = (&'a str, &'a Group)> {
        self.groups
            .iter()
            .filter(move |(_, g)| g.members.contains(user))
            .map(|(n, g)| (n.as_str(), g))
    }

    fn key_in_use(&self, k: &str) -> bool {
        self.users.contains_key(k) || self.service_accounts.contains_key(k)
    }

    fn policy_in_use(&self, name: &str) -> bool {
        self.users.values().any(|u| u.policies.contains(name))
            || self.groups.values().any(|g| g.policies.contains(name))
            || self.ldap.uses(name)
    }

    /// Applies one command; a refused command leaves the state untouched.
    pub fn apply(&mut self, cmd: &IamCommand) -> Result<(), IamError> {
        match cmd {
            IamCommand::AddUser { access_key, secret } => {
                check_access_key(access_key)?;
                if self.service_accounts.contains_key(access_key) {
                    return Err(IamError::AccessKeyInUse(access_key.clone()));
                }
                match self.users.get_mut(access_key) {
                    Some(u) => u.secret = secret.clone(),
                    None => {
                        self.users.insert(
                            access_key.clone(),
                            User {
                                secret: secret.clone(),
                                enabled: true,
                                policies: BTreeSet::new(),
                            },
                        );
                    }
                }
                Ok(())
            }
            IamCommand::RemoveUser { access_key } => {
                self.users
                    .remove(access_key)
                    .ok_or_else(|| IamError::NoSuchUser(access_key.clone()))?;
                for g in self.groups.values_mut() {
                    g.members.remove(access_key);
                }
                self.service_accounts
                    .retain(|_, s| s.parent != Parent::User(access_key.clone()));
                Ok(())
            }
            IamCommand::SetUserEnabled {
                access_key,
                enabled,
            } => {
                let u = self
                    .users
                    .get_mut(access_key)
                    .ok_or_else(|| IamError::NoSuchUser(access_key.clone()))?;
                u.enabled = *enabled;
                Ok(())
            }
            IamCommand::AddGroupMembers { group, members } => {
                check_name(group)?;
                if let Some(m) = members.iter().find(|m| !self.users.contains_key(*m)) {
                    return Err(IamError::NoSuchUser(m.clone()));
                }
                let g = self.groups.entry(group.clone()).or_insert_with(|| Group {
                    enabled: true,
                    ..Group::default()
                });
                g.members.extend(members.iter().cloned());
                Ok(())
            }
            IamCommand::RemoveGroupMembers { group, members } => {
                let g = self
                    .groups
                    .get_mut(group)
                    .ok_or_else(|| IamError::NoSuchGroup(group.clone()))?;
                if members.is_empty() {
                    if !g.members.is_empty() {
                        return Err(IamError::GroupNotEmpty(group.clone()));
                    }
                    self.groups.remove(group);
                    return Ok(());
                }
                if let Some(m) = members.iter().find(|m| !g.members.contains(*m)) {
                    return Err(IamError::NoSuchUser(m.clone()));
                }
                for m in members {
                    g.members.remove(m);
                }
                Ok(())
            }
            IamCommand::SetGroupEnabled { group, enabled } => {
                let g = self
                    .groups
                    .get_mut(group)
                    .ok_or_else(|| IamError::NoSuchGroup(group.clone()))?;
                g.enabled = *enabled;
                Ok(())
            }
            IamCommand::PutPolicy { name, document } => {
                check_name(name)?;
                if canned::get(name).is_some() {
                    return Err(IamError::CannedPolicy(name.clone()));
                }
                check_policy(document)?;
                self.policies.insert(name.clone(), document.clone());
                Ok(())
            }
            IamCommand::DeletePolicy { name } => {
                if canned::get(name).is_some() {
                    return Err(IamError::CannedPolicy(name.clone()));
                }
                if !self.policies.contains_key(name) {
                    return Err(IamError::NoSuchPolicy(name.clone()));
                }
                if self.policy_in_use(name) {
                    return Err(IamError::PolicyInUse(name.clone()));
                }
                self.policies.remove(name);
                Ok(())
            }
            IamCommand::AttachPolicy { policies, target } => {
                if let Some(p) = policies.iter().find(|p| self.policy_document(p).is_none()) {
                    return Err(IamError::NoSuchPolicy(p.clone()));
                }
                if policies.is_empty() {
                    // Checks the target, and creates no empty DN mapping.
                    return match target {
                        PolicyTarget::LdapUser(dn) | PolicyTarget::LdapGroup(dn) => {
                            check_dn(dn).map(drop)
                        }
                        _ => self.attached_mut(target).map(drop),
                    };
                }
                self.attached_mut(target)?.extend(policies.iter().cloned());
                Ok(())
            }
            IamCommand::DetachPolicy { policies, target } => {
                let attached = match target {
                    PolicyTarget::LdapUser(dn) | PolicyTarget::LdapGroup(dn)
                        if !self.ldap.has(target) =>
                    {
                        return Err(IamError::NoSuchPolicy(
                            policies.first().cloned().unwrap_or_else(|| dn.clone()),
                        ));
                    }
                    _ => self.attached_mut(target)?,
                };
                if let Some(p) = policies.iter().find(|p| !attached.contains(*p)) {
                    return Err(IamError::NoSuchPolicy(p.clone()));
                }
                for p in policies {
                    attached.remove(p);
                }
                // A DN without policies is no mapping: `entities` lists only live ones.
                self.ldap.users.retain(|_, s| !s.is_empty());
                self.ldap.groups.retain(|_, s| !s.is_empty());
                Ok(())
            }
            IamCommand::AddServiceAccount {
                access_key,
                account,
            } => {
                check_access_key(access_key)?;
                if self.key_in_use(access_key) {
                    return Err(IamError::AccessKeyInUse(access_key.clone()));
                }
                if let Parent::User(p) = &account.parent {
                    if !self.users.contains_key(p) {
                        return Err(IamError::NoSuchUser(p.clone()));
                    }
                }
                if let Some(doc) = &account.policy {
                    check_policy(doc)?;
                }
                self.service_accounts
                    .insert(access_key.clone(), ServiceAccount::clone(account));
                Ok(())
            }
            IamCommand::UpdateServiceAccount {
                access_key,
                secret,
                policy,
                remove_policy,
                expires_ns,
                enabled,
            } => {
                if let Some(doc) = policy {
                    check_policy(doc)?;
                }
                let s = self
                    .service_accounts
                    .get_mut(access_key)
                    .ok_or_else(|| IamError::NoSuchServiceAccount(access_key.clone()))?;
                if let Some(secret) = secret {
                    s.secret = secret.clone();
                }
                if *remove_policy {
                    s.policy = None;
                }
                if let Some(policy) = policy {
                    s.policy = Some(policy.clone());
                }
                if let Some(expires) = expires_ns {
                    s.expires_ns = Some(*expires);
                }
                if let Some(enabled) = enabled {
                    s.enabled = *enabled;
                }
                Ok(())
            }
            IamCommand::RemoveServiceAccount { access_key } => self
                .service_accounts
                .remove(access_key)
                .map(|_| ())
                .ok_or_else(|| IamError::NoSuchServiceAccount(access_key.clone())),
        }
    }

    fn attached_mut(&mut self, target: &PolicyTarget) -> Result<&mut BTreeSet<String>, IamError> {
        match target {
            PolicyTarget::User(u) => self
                .users
                .get_mut(u)
                .map(|u| &mut u.policies)
                .ok_or_else(|| IamError::NoSuchUser(u.clone())),
            PolicyTarget::Group(g) => self
                .groups
                .get_mut(g)
                .map(|g| &mut g.policies)
                .ok_or_else(|| IamError::NoSuchGroup(g.clone())),
            PolicyTarget::LdapUser(dn) => Ok(self.ldap.users.entry(check_dn(dn)?).or_default()),
            PolicyTarget::LdapGroup(dn) => Ok(self.ldap.groups.entry(check_dn(dn)?).or_default()),
        }
    }
}

#[cfg(test)]
mod tests;
