//! `cairn admin user|group|policy|svcacct|whoami ...`: the IAM commands, in `mc admin`'s syntax
//! (`ALIAS` first, as set with `cairn admin alias set`).

use anyhow::Context;

use super::alias::Aliases;
use super::cli::{call, runtime};

#[derive(clap::Subcommand, Debug)]
pub enum IamCli {
    /// IAM users: `user add ALIAS ACCESS SECRET`, `user disable ALIAS ACCESS`, ...
    #[command(subcommand)]
    User(UserCli),
    /// Groups of users: `group add ALIAS GROUP MEMBER...`, ...
    #[command(subcommand)]
    Group(GroupCli),
    /// Named policies: `policy create ALIAS NAME FILE.json`, `policy attach ALIAS POLICY --user U`.
    #[command(subcommand)]
    Policy(PolicyCli),
    /// Service accounts: `svcacct add ALIAS PARENT [--access-key K --secret-key S] [--policy F]`.
    #[command(subcommand)]
    Svcacct(SvcacctCli),
    /// Who the alias's credentials are: kind, parent, policies, groups.
    Whoami { alias: String },
    /// External identity providers: `idp ldap policy attach ALIAS POLICY... --user DN`.
    #[command(subcommand)]
    Idp(IdpCli),
}

#[derive(clap::Subcommand, Debug)]
pub enum IdpCli {
    /// AD/LDAP: policies mapped to directory users and groups, by DN.
    #[command(subcommand)]
    Ldap(LdapCli),
}

#[derive(clap::Subcommand, Debug)]
pub enum LdapCli {
    #[command(subcommand)]
    Policy(LdapPolicyCli),
}

#[derive(clap::Subcommand, Debug)]
pub enum LdapPolicyCli {
    /// Map policies to a directory user's DN or a group's DN.
    Attach(Mapping),
    Detach(Mapping),
    /// List the mappings, optionally of some user DNs, group DNs or policies only (JSON).
    Entities {
        alias: String,
        #[arg(long)]
        user: Vec<String>,
        #[arg(long)]
        group: Vec<String>,
        #[arg(long)]
        policy: Vec<String>,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum UserCli {
    /// Add a user (or change its secret key).
    Add {
        alias: String,
        access_key: String,
        secret_key: String,
    },
    #[command(visible_alias = "rm")]
    Remove {
        alias: String,
        access_key: String,
    },
    Enable {
        alias: String,
        access_key: String,
    },
    Disable {
        alias: String,
        access_key: String,
    },
    #[command(visible_alias = "ls")]
    List {
        alias: String,
    },
    Info {
        alias: String,
        access_key: String,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum GroupCli {
    /// Add members to a group, creating it if needed.
    Add {
        alias: String,
        group: String,
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Remove members; without members, remove the (empty) group.
    #[command(visible_alias = "rm")]
    Remove {
        alias: String,
        group: String,
        members: Vec<String>,
    },
    Enable {
        alias: String,
        group: String,
    },
    Disable {
        alias: String,
        group: String,
    },
    #[command(visible_alias = "ls")]
    List {
        alias: String,
    },
    Info {
        alias: String,
        group: String,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum PolicyCli {
    /// Create or replace a policy from a JSON file.
    Create {
        alias: String,
        name: String,
        file: std::path::PathBuf,
    },
    #[command(visible_alias = "rm", alias = "remove")]
    Delete {
        alias: String,
        name: String,
    },
    #[command(visible_alias = "ls")]
    List {
        alias: String,
    },
    Info {
        alias: String,
        name: String,
    },
    /// Attach policies to a user or a group.
    Attach(Mapping),
    Detach(Mapping),
}

/// Policies and the user or group they are attached to or detached from (a name, or for
/// `idp ldap` a DN).
#[derive(clap::Args, Debug)]
pub struct Mapping {
    alias: String,
    #[arg(required = true)]
    policies: Vec<String>,
    #[arg(long, conflicts_with = "group", required_unless_present = "group")]
    user: Option<String>,
    #[arg(long)]
    group: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
pub enum SvcacctCli {
    /// Add a service account of PARENT (a user, or root's access key); prints the new keys.
    /// `--access-key`/`--secret-key` choose them (generated otherwise).
    Add {
        alias: String,
        parent: String,
        /// Inline policy (JSON file) narrowing the parent's permissions.
        #[arg(long)]
        policy: Option<std::path::PathBuf>,
        /// Expiry, RFC 3339 (e.g. 2030-01-01T00:00:00Z).
        #[arg(long)]
        expiry: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    #[command(visible_alias = "ls")]
    List {
        alias: String,
        parent: Option<String>,
    },
    Info {
        alias: String,
        access_key: String,
    },
    /// Change a service account (`--secret-key` sets a new secret).
    Edit {
        alias: String,
        access_key: String,
        #[arg(long)]
        policy: Option<std::path::PathBuf>,
        /// Remove the inline policy (the account gets the parent's full permissions).
        #[arg(long, conflicts_with = "policy")]
        remove_policy: bool,
        #[arg(long)]
        expiry: Option<String>,
    },
    Enable {
        alias: String,
        access_key: String,
    },
    Disable {
        alias: String,
        access_key: String,
    },
    #[command(visible_alias = "rm")]
    Remove {
        alias: String,
        access_key: String,
    },
}

/// One admin call: method, operation, query and JSON body.
struct Call {
    method: &'static str,
    op: &'static str,
    query: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn get(op: &'static str, query: Vec<(&'static str, String)>) -> Call {
    Call {
        method: "GET",
        op,
        query,
        body: Vec::new(),
    }
}

fn post(op: &'static str, query: Vec<(&'static str, String)>, body: serde_json::Value) -> Call {
    Call {
        method: "POST",
        op,
        query,
        body: if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        },
    }
}

/// A POST whose only argument is one query parameter.
fn act(op: &'static str, param: &'static str, value: &str) -> Call {
    post(op, vec![(param, value.to_owned())], serde_json::Value::Null)
}

fn read_policy(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// An attach or detach call (`op` ends in `/attach` or `/detach`) and what it prints.
fn mapping<'a>(op: &'static str, m: &'a Mapping) -> (&'a str, Call, Option<String>) {
    let body = serde_json::json!({ "policies": m.policies, "user": m.user, "group": m.group });
    let done = if op.ends_with("/attach") {
        "Attached"
    } else {
        "Detached"
    };
    (
        &m.alias,
        post(op, vec![], body),
        Some(format!("{done} policies {:?} successfully.", m.policies)),
    )
}

/// Runs an IAM command. `access_key`/`secret_key` are the command line's `--access-key` and
/// `--secret-key`, which `svcacct add` and `svcacct edit` use for the account's own keys.
pub fn run(cmd: &IamCli, access_key: Option<&str>, secret_key: Option<&str>) -> anyhow::Result<()> {
    use serde_json::json;
    let (alias, call_, done): (&str, Call, Option<String>) = match cmd {
        IamCli::Whoami { alias } => (alias, get("whoami", vec![]), None),
        IamCli::Idp(IdpCli::Ldap(LdapCli::Policy(p))) => match p {
            LdapPolicyCli::Attach(m) => mapping("idp/ldap/policy/attach", m),
            LdapPolicyCli::Detach(m) => mapping("idp/ldap/policy/detach", m),
            LdapPolicyCli::Entities {
                alias,
                user,
                group,
                policy,
            } => {
                let query = (user.iter().map(|u| ("user", u.clone())))
                    .chain(group.iter().map(|g| ("group", g.clone())))
                    .chain(policy.iter().map(|p| ("policy", p.clone())))
                    .collect();
                (alias, get("idp/ldap/policy/entities", query), None)
            }
        },
        IamCli::User(u) => match u {
            UserCli::Add {
                alias,
                access_key,
                secret_key,
            } => (
                alias,
                post(
                    "iam/user/add",
                    vec![],
                    json!({ "access_key": access_key, "secret_key": secret_key }),
                ),
                Some(format!("Added user `{access_key}` successfully.")),
            ),
            UserCli::Remove { alias, access_key } => (
                alias,
                act("iam/user/remove", "access_key", access_key),
                Some(format!("Removed user `{access_key}` successfully.")),
            ),
            UserCli::Enable { alias, access_key } => (
                alias,
                act("iam/user/enable", "access_key", access_key),
                Some(format!("Enabled user `{access_key}` successfully.")),
            ),
            UserCli::Disable { alias, access_key } => (
                alias,
                act("iam/user/disable", "access_key", access_key),
                Some(format!("Disabled user `{access_key}` successfully.")),
            ),
            UserCli::List { alias } => (alias, get("iam/user/list", vec![]), None),
            UserCli::Info { alias, access_key } => (
                alias,
                get("iam/user/info", vec![("access_key", access_key.clone())]),
                None,
            ),
        },
        IamCli::Group(g) => match g {
            GroupCli::Add {
                alias,
                group,
                members,
            } => (
                alias,
                post(
                    "iam/group/add",
                    vec![],
                    json!({ "group": group, "members": members }),
                ),
                Some(format!(
                    "Added members {} to group {group} successfully.",
                    members.join(", ")
                )),
            ),
            GroupCli::Remove {
                alias,
                group,
                members,
            } => (
                alias,
                post(
                    "iam/group/remove",
                    vec![],
                    json!({ "group": group, "members": members }),
                ),
                Some(if members.is_empty() {
                    format!("Removed group {group} successfully.")
                } else {
                    format!(
                        "Removed members {} from group {group} successfully.",
                        members.join(", ")
                    )
                }),
            ),
            GroupCli::Enable { alias, group } => (
                alias,
                act("iam/group/enable", "group", group),
                Some(format!("Enabled group `{group}` successfully.")),
            ),
            GroupCli::Disable { alias, group } => (
                alias,
                act("iam/group/disable", "group", group),
                Some(format!("Disabled group `{group}` successfully.")),
            ),
            GroupCli::List { alias } => (alias, get("iam/group/list", vec![]), None),
            GroupCli::Info { alias, group } => (
                alias,
                get("iam/group/info", vec![("group", group.clone())]),
                None,
            ),
        },
        IamCli::Policy(p) => match p {
            PolicyCli::Create { alias, name, file } => {
                let doc = read_policy(file)?;
                let c = Call {
                    method: "POST",
                    op: "iam/policy/create",
                    query: vec![("name", name.clone())],
                    body: doc.into_bytes(),
                };
                (
                    alias,
                    c,
                    Some(format!("Created policy `{name}` successfully.")),
                )
            }
            PolicyCli::Delete { alias, name } => (
                alias,
                act("iam/policy/delete", "name", name),
                Some(format!("Removed policy `{name}` successfully.")),
            ),
            PolicyCli::List { alias } => (alias, get("iam/policy/list", vec![]), None),
            PolicyCli::Info { alias, name } => (
                alias,
                get("iam/policy/info", vec![("name", name.clone())]),
                None,
            ),
            PolicyCli::Attach(m) => mapping("iam/policy/attach", m),
            PolicyCli::Detach(m) => mapping("iam/policy/detach", m),
        },
        IamCli::Svcacct(s) => match s {
            SvcacctCli::Add {
                alias,
                parent,
                policy,
                expiry,
                name,
                description,
            } => {
                let policy = policy.as_deref().map(read_policy).transpose()?;
                let body = json!({
                    "parent": parent, "access_key": access_key, "secret_key": secret_key,
                    "policy": policy, "expiry": expiry, "name": name, "description": description,
                });
                (alias, post("iam/svcacct/add", vec![], body), None)
            }
            SvcacctCli::List { alias, parent } => (
                alias,
                get(
                    "iam/svcacct/list",
                    parent.iter().map(|p| ("parent", p.clone())).collect(),
                ),
                None,
            ),
            SvcacctCli::Info { alias, access_key } => (
                alias,
                get("iam/svcacct/info", vec![("access_key", access_key.clone())]),
                None,
            ),
            SvcacctCli::Edit {
                alias,
                access_key: key,
                policy,
                remove_policy,
                expiry,
            } => {
                let policy = policy.as_deref().map(read_policy).transpose()?;
                let body = json!({
                    "access_key": key, "secret_key": secret_key, "policy": policy,
                    "remove_policy": remove_policy, "expiry": expiry,
                });
                (
                    alias,
                    post("iam/svcacct/edit", vec![], body),
                    Some(format!("Edited service account `{key}` successfully.")),
                )
            }
            SvcacctCli::Enable { alias, access_key }
            | SvcacctCli::Disable { alias, access_key } => {
                let on = matches!(s, SvcacctCli::Enable { .. });
                let body =
                    json!({ "access_key": access_key, "status": if on { "on" } else { "off" } });
                (
                    alias,
                    post("iam/svcacct/edit", vec![], body),
                    Some(format!(
                        "{} service account `{access_key}` successfully.",
                        if on { "Enabled" } else { "Disabled" }
                    )),
                )
            }
            SvcacctCli::Remove { alias, access_key } => (
                alias,
                act("iam/svcacct/remove", "access_key", access_key),
                Some(format!(
                    "Removed service account `{access_key}` successfully."
                )),
            ),
        },
    };
    let target = Aliases::load()?.resolve(alias)?;
    let rt = runtime()?;
    let text = rt.block_on(call(
        &target,
        call_.method,
        call_.op,
        &call_.query,
        call_.body,
    ))?;
    match (done, cmd) {
        (Some(msg), _) => println!("{msg}"),
        (None, IamCli::Svcacct(SvcacctCli::Add { .. })) => {
            let v: serde_json::Value = serde_json::from_str(&text)?;
            println!(
                "Access Key: {}\nSecret Key: {}",
                v["access_key"].as_str().unwrap_or_default(),
                v["secret_key"].as_str().unwrap_or_default()
            );
        }
        (None, _) => match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(v) => println!("{}", serde_json::to_string_pretty(&v)?),
            Err(_) => println!("{text}"),
        },
    }
    Ok(())
}
