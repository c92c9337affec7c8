//! The admin API's JSON bodies (`node/src/admin/`): the first byte picks the body, the rest is
//! the JSON. The IAM bodies (`iam/user/add`, `iam/group/*`, `iam/policy/attach|detach`,
//! `iam/svcacct/add|edit`) are deserialized into the handlers' own types; what they turn into,
//! an `IamCommand`, is then fuzzed directly through `IamState::apply`, the validation every admin
//! IAM call ends in (it runs in the Raft state machine, where a panic stops the site). A policy
//! document (`iam/policy/create`, inline service-account policies) goes through `check_policy`,
//! and `site/configure`'s body through `SiteState::apply` as the handler proposes it.
//!
//! Checked besides "no panic": a refused command leaves the state untouched (the state machine's
//! contract), and the state still serializes and reads back equal (Raft snapshots).
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

use cairn_control_plane::iam::identity::{check_policy, IamCommand, SealedSecret};
use cairn_control_plane::site::{PeerConfig, SiteCommand};
use cairn_control_plane::{Command, SiteState};
use cairn_node::admin::iam::{AddServiceAccount, AddUser, Attach, EditServiceAccount, Members};
use cairn_node::admin::site::Configure;

fn secret() -> SealedSecret {
    SealedSecret {
        nonce: vec![0; 12],
        ciphertext: vec![1; 24],
    }
}

/// A site with a user, a group, a named policy and a service account, so commands that refer
/// to existing identities get past their lookups.
fn base() -> &'static SiteState {
    static S: OnceLock<SiteState> = OnceLock::new();
    S.get_or_init(|| {
        let mut s = SiteState::default();
        let cmds = [
            r#"{"CreateBucket":{"name":"bucket","created_ns":0,"object_lock":false}}"#,
            r#"{"Iam":{"AddUser":{"access_key":"alice","secret":{"nonce":[0],"ciphertext":[1]}}}}"#,
            r#"{"Iam":{"AddGroupMembers":{"group":"devs","members":["alice"]}}}"#,
            r#"{"Iam":{"PutPolicy":{"name":"p1","document":"{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"s3:*\",\"Resource\":\"arn:aws:s3:::*\"}]}"}}}"#,
            r#"{"Iam":{"AttachPolicy":{"policies":["p1"],"target":{"User":"alice"}}}}"#,
            r#"{"Iam":{"AddServiceAccount":{"access_key":"svc1","account":{"parent":{"User":"alice"},"secret":{"nonce":[0],"ciphertext":[1]},"policy":null,"expires_ns":null,"enabled":true}}}}"#,
        ];
        for c in cmds {
            let cmd: Command = serde_json::from_str(c).expect("seed command");
            s.apply(&cmd).expect("seed command applies");
        }
        s
    })
}

fn apply_checked(cmd: &Command) {
    let mut s = base().clone();
    let before = s.clone();
    match s.apply(cmd) {
        Ok(()) => {}
        Err(e) => {
            s.applied = before.applied;
            assert_eq!(s, before, "refused command {cmd:?} ({e}) changed the state");
        }
    }
    let back = SiteState::from_bytes(&s.to_bytes()).expect("state reads back");
    assert_eq!(back, s, "state changed through a serialization round trip");
    for (name, doc) in &s.iam.policies {
        assert!(
            check_policy(doc).is_ok(),
            "stored policy {name} no longer parses"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, json)) = data.split_first() else {
        return;
    };
    match which % 8 {
        0 => drop(serde_json::from_slice::<AddUser>(json)),
        1 => drop(serde_json::from_slice::<Members>(json)),
        2 => drop(serde_json::from_slice::<Attach>(json)),
        3 => drop(serde_json::from_slice::<AddServiceAccount>(json)),
        4 => drop(serde_json::from_slice::<EditServiceAccount>(json)),
        5 => {
            let Ok(c) = serde_json::from_slice::<Configure>(json) else {
                return;
            };
            let peers: BTreeMap<String, PeerConfig> = c
                .peers
                .into_iter()
                .map(|p| {
                    let cfg = PeerConfig {
                        endpoints: p
                            .endpoints
                            .iter()
                            .map(|e| e.trim_end_matches('/').to_string())
                            .collect(),
                        access_key: p.access_key,
                        secret: secret(),
                        skip_version_deletes: p.skip_version_deletes,
                    };
                    (p.name, cfg)
                })
                .collect();
            apply_checked(&Command::Site(SiteCommand::Configure {
                local: c.local,
                peers,
            }));
        }
        6 => {
            let Ok(cmd) = serde_json::from_slice::<IamCommand>(json) else {
                return;
            };
            apply_checked(&Command::Iam(cmd));
        }
        _ => {
            let Ok(doc) = std::str::from_utf8(json) else {
                return;
            };
            if let Ok(p) = check_policy(doc) {
                let again = serde_json::to_string(&p).expect("serializes");
                assert!(
                    check_policy(&again).is_ok(),
                    "policy stops parsing after a round trip"
                );
            }
        }
    }
});
