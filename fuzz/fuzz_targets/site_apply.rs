//! The site-replication apply payload: the JSON body a peer POSTs to `site/apply`
//! (`node/src/replication/outbox.rs` `ApplyRequest`), decoded as `admin::site::apply` decodes it, each
//! entry then applied as the `SiteCommand::FromPeer` that handler proposes, on a paired site's
//! state (`control-plane/src/site.rs`, `state.rs`): the Raft state machine, where a panic would
//! stop every node of the site on each replay of the entry.
//!
//! Checked besides "no panic": a refused command changes nothing but the origin's received
//! sequence, the received sequence never goes back, and the state still serializes and reads
//! back equal (Raft snapshots and the copy mirrored on the drives).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

use cairn_control_plane::site::SiteCommand;
use cairn_control_plane::{Command, SiteState};
use cairn_node::replication::outbox::ApplyRequest;

/// A site paired with `east` and `west`, holding a bucket, a user and a group.
fn base() -> &'static SiteState {
    static S: OnceLock<SiteState> = OnceLock::new();
    S.get_or_init(|| {
        let mut s = SiteState::default();
        let cmds = [
            r#"{"CreateBucket":{"name":"bucket","created_ns":0,"object_lock":false}}"#,
            r#"{"CreateBucket":{"name":"locked","created_ns":0,"object_lock":true}}"#,
            r#"{"Iam":{"AddUser":{"access_key":"alice","secret":{"nonce":[0],"ciphertext":[1]}}}}"#,
            r#"{"Iam":{"AddGroupMembers":{"group":"devs","members":["alice"]}}}"#,
            r#"{"Site":{"Configure":{"local":"here","peers":{"east":{"endpoint":"http://east:9000","access_key":"replicator-east","secret":{"nonce":[0],"ciphertext":[1]}},"west":{"endpoint":"http://west:9000","access_key":"replicator-west","secret":{"nonce":[0],"ciphertext":[1]}}}}}}"#,
        ];
        for c in cmds {
            let cmd: Command = serde_json::from_str(c).expect("seed command");
            s.apply(&cmd).expect("seed command applies");
        }
        s
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(r) = serde_json::from_slice::<ApplyRequest>(data) else {
        return;
    };
    let mut s = base().clone();
    for e in r.entries {
        let before = s.clone();
        let cmd = Command::Site(SiteCommand::FromPeer {
            origin: r.origin.clone(),
            seq: e.seq,
            command: Box::new(e.command),
            stamp_ns: e.stamp_ns,
        });
        let last = before.sites.received.get(&r.origin).copied().unwrap_or(0);
        let result = s.apply(&cmd);
        let now = s.sites.received.get(&r.origin).copied().unwrap_or(0);
        assert!(now >= last, "received sequence of {:?} went back", r.origin);
        if let Err(e) = result {
            let mut unchanged = s.clone();
            unchanged.applied = before.applied;
            unchanged.sites.received = before.sites.received.clone();
            assert_eq!(unchanged, before, "refused {cmd:?} ({e}) changed the state");
        }
    }
    let back = SiteState::from_bytes(&s.to_bytes()).expect("state reads back");
    assert_eq!(back, s, "state changed through a serialization round trip");
});
