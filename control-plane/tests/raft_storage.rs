//! The RocksDB Raft stores against openraft's storage conformance suite, plus durability and
//! snapshot checks specific to the site state.

use std::collections::BTreeMap;
use std::io::Cursor;

use cairn_control_plane::raft::{
    open_stores, CommandResponse, LogStore, StateMachineStore, StorageError, TypeConfig,
};
use cairn_control_plane::{Command, CommandError, SiteState};
use openraft::storage::RaftStateMachine;
use openraft::testing::{blank_ent, log_id, StoreBuilder, Suite};
use openraft::{
    BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, Membership, RaftSnapshotBuilder,
    StoredMembership,
};
use tempfile::TempDir;

/// Opens both stores in a fresh temporary directory, removed when the guard drops.
struct TempStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempStoreBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir()
            .map_err(|e| StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
        let (log_store, state_machine) = open_stores(dir.path())
            .map_err(|e| e.into_storage(ErrorSubject::Store, ErrorVerb::Write))?;
        Ok((dir, log_store, state_machine))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(TempStoreBuilder) {
        panic!("openraft storage suite failed: {e}");
    }
}

fn command_ent(index: u64, cmd: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Normal(cmd),
    }
}

fn membership_ent(index: u64) -> Entry<TypeConfig> {
    let nodes = BTreeMap::from([(1, BasicNode::new("127.0.0.1:9001"))]);
    Entry {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Membership(Membership::new(vec![[1].into()], nodes)),
    }
}

fn create(name: &str) -> Command {
    Command::CreateBucket {
        name: name.into(),
        created_ns: 42,
        object_lock: name.starts_with("locked"),
    }
}

/// Index 0: membership; 1..=5: commands (one rejected); 6: blank.
fn history() -> Vec<Entry<TypeConfig>> {
    vec![
        membership_ent(0),
        command_ent(1, create("a")),
        command_ent(2, create("locked-b")),
        command_ent(3, create("a")),
        command_ent(4, Command::DeleteBucket { name: "c".into() }),
        command_ent(5, create("c")),
        blank_ent::<TypeConfig>(1, 1, 6),
    ]
}

#[tokio::test]
async fn state_machine_applies_commands_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (before, last_applied, membership) = {
        let (_log, mut sm) = open_stores(dir.path()).unwrap();
        let reader = sm.reader();
        let responses = sm.apply(history()).await.unwrap();
        assert_eq!(
            responses,
            vec![
                CommandResponse::ok(),
                CommandResponse::ok(),
                CommandResponse::ok(),
                CommandResponse(Err(CommandError::BucketExists("a".into()))),
                CommandResponse(Err(CommandError::NoSuchBucket("c".into()))),
                CommandResponse::ok(),
                CommandResponse::ok(),
            ]
        );
        let state = sm.state();
        assert_eq!(
            state.buckets.keys().collect::<Vec<_>>(),
            vec!["a", "c", "locked-b"]
        );
        // Rejected commands and blank entries still advance the applied index.
        assert_eq!(state.applied, 6);
        assert_eq!(reader.state(), state);
        let (last_applied, membership) = sm.applied_state().await.unwrap();
        assert_eq!(last_applied, Some(log_id(1, 1, 6)));
        assert_eq!(membership.log_id(), &Some(log_id(1, 1, 0)));
        (state, last_applied, membership)
    };

    let (_log, mut sm) = open_stores(dir.path()).unwrap();
    assert_eq!(sm.state(), before);
    assert_eq!(sm.reader().state(), before);
    assert_eq!(sm.last_applied(), last_applied);
    assert_eq!(
        sm.applied_state().await.unwrap(),
        (last_applied, membership)
    );

    // Applying continues from where it stopped.
    let responses = sm
        .apply([command_ent(7, Command::DeleteBucket { name: "a".into() })])
        .await
        .unwrap();
    assert_eq!(responses, vec![CommandResponse::ok()]);
    assert_eq!(sm.state().applied, 7);
    assert!(sm.state().bucket("a").is_none());
}

#[tokio::test]
async fn snapshot_installs_on_a_fresh_store() {
    let leader_dir = tempfile::tempdir().unwrap();
    let (_log, mut leader) = open_stores(leader_dir.path()).unwrap();
    leader.apply(history()).await.unwrap();
    let state_at_6 = leader.state();
    let snapshot = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 1, 6)));
    // Entries applied after the builder was taken do not leak into its snapshot.
    let builder_before = leader.get_snapshot_builder().await;
    leader
        .apply([command_ent(7, create("late"))])
        .await
        .unwrap();
    let mut builder_before = builder_before;
    let frozen = builder_before.build_snapshot().await.unwrap();
    let frozen_state: SiteState = serde_json::from_slice(frozen.snapshot.get_ref()).unwrap();
    assert!(frozen_state.bucket("late").is_none());

    let follower_dir = tempfile::tempdir().unwrap();
    let expected = {
        let (_log, mut follower) = open_stores(follower_dir.path()).unwrap();
        let reader = follower.reader();
        assert!(follower.get_current_snapshot().await.unwrap().is_none());
        let mut data = follower.begin_receiving_snapshot().await.unwrap();
        *data = Cursor::new(snapshot.snapshot.get_ref().clone());
        follower
            .install_snapshot(&snapshot.meta, data)
            .await
            .unwrap();

        let installed = follower.state();
        assert_eq!(installed, state_at_6);
        assert_eq!(installed.applied, 6);
        assert_eq!(reader.state(), installed);
        assert_eq!(
            follower.applied_state().await.unwrap(),
            (
                snapshot.meta.last_log_id,
                snapshot.meta.last_membership.clone()
            )
        );
        let current = follower.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, snapshot.meta);
        installed
    };

    // The installed snapshot and state survive a restart.
    let (_log, mut follower) = open_stores(follower_dir.path()).unwrap();
    assert_eq!(follower.state(), expected);
    let current = follower.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, snapshot.meta);
    assert_eq!(current.snapshot.get_ref(), snapshot.snapshot.get_ref());
}

#[tokio::test]
async fn older_snapshot_never_replaces_a_newer_one() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = open_stores(dir.path()).unwrap();
    sm.apply(history()).await.unwrap();
    let mut old_builder = sm.get_snapshot_builder().await;
    sm.apply([command_ent(7, create("new"))]).await.unwrap();
    let newer = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let older = old_builder.build_snapshot().await.unwrap();
    assert!(older.meta.last_log_id < newer.meta.last_log_id);
    let current = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, newer.meta);
}

#[tokio::test]
async fn reader_waits_for_an_applied_index() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = open_stores(dir.path()).unwrap();
    let reader = sm.reader();
    let waiter = tokio::spawn(async move { reader.wait_applied(5).await });
    sm.apply(history().into_iter().take(3)).await.unwrap();
    assert!(!waiter.is_finished());
    sm.apply(history().into_iter().skip(3)).await.unwrap();
    let state = waiter.await.unwrap().unwrap();
    assert!(state.applied >= 5);

    let reader = sm.reader();
    drop(sm);
    assert!(reader.wait_applied(100).await.is_err());
}

#[tokio::test]
async fn empty_membership_is_default() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = open_stores(dir.path()).unwrap();
    assert_eq!(
        sm.applied_state().await.unwrap(),
        (None, StoredMembership::default())
    );
}
