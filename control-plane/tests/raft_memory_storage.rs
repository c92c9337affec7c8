//! The in-memory Raft stores against openraft's storage conformance suite, their crash model, and
//! agreement with the RocksDB stores.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Cursor;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use cairn_control_plane::raft::{
    open_memory_stores, open_stores, CommandResponse, MemLogStore, MemStateMachine, MemoryRaftDisk,
    StorageError, TypeConfig,
};
use cairn_control_plane::{Command, CommandError, SiteState};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{blank_ent, log_id, StoreBuilder, Suite};
use openraft::{
    BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, Membership, RaftLogReader,
    RaftSnapshotBuilder, StoredMembership, Vote,
};

/// Opens both stores on a fresh disk; the disk is the guard.
struct MemStoreBuilder;

impl StoreBuilder<TypeConfig, MemLogStore, MemStateMachine, MemoryRaftDisk> for MemStoreBuilder {
    async fn build(&self) -> Result<(MemoryRaftDisk, MemLogStore, MemStateMachine), StorageError> {
        let disk = MemoryRaftDisk::new();
        let (log_store, state_machine) = open_memory_stores(&disk)
            .map_err(|e| e.into_storage(ErrorSubject::Store, ErrorVerb::Write))?;
        Ok((disk, log_store, state_machine))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(MemStoreBuilder) {
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

/// Index 0: membership; 1..=5: commands (two rejected); 6: blank.
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

async fn indexes(log: &mut MemLogStore) -> Vec<u64> {
    log.try_get_log_entries(0..)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect()
}

#[tokio::test]
async fn acknowledged_log_writes_survive_a_crash() {
    let disk = MemoryRaftDisk::new();
    {
        let (mut log, _sm) = open_memory_stores(&disk).unwrap();
        log.blocking_append((0..=10).map(|i| blank_ent::<TypeConfig>(1, 1, i)))
            .await
            .unwrap();
        log.save_vote(&Vote::new(1, 1)).await.unwrap();
        log.save_committed(Some(log_id(1, 1, 8))).await.unwrap();
        log.purge(log_id(1, 1, 3)).await.unwrap();
        log.truncate(log_id(1, 1, 9)).await.unwrap();
    }
    disk.crash();
    let (mut log, _sm) = open_memory_stores(&disk).unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(1, 1)));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 1, 8)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 3)));
    assert_eq!(state.last_log_id, Some(log_id(1, 1, 8)));
    assert_eq!(indexes(&mut log).await, (4..=8).collect::<Vec<_>>());
}

#[tokio::test]
async fn append_interrupted_before_its_callback_is_lost() {
    let disk = MemoryRaftDisk::new();
    let (mut log, _sm) = open_memory_stores(&disk).unwrap();
    log.blocking_append([blank_ent::<TypeConfig>(1, 1, 0)])
        .await
        .unwrap();
    {
        let mut append = pin!(log.blocking_append([blank_ent::<TypeConfig>(1, 1, 1)]));
        let mut cx = Context::from_waker(Waker::noop());
        // The entries are written but the "fsync" has not completed.
        assert!(append.as_mut().poll(&mut cx).is_pending());
        disk.crash();
        match append.as_mut().poll(&mut cx) {
            Poll::Ready(result) => assert!(result.is_err(), "a crashed append must not succeed"),
            Poll::Pending => panic!("the append should have finished"),
        }
    }
    // The process that crashed cannot use its store any more.
    assert!(log.read_vote().await.is_err());
    let (mut log, _sm) = open_memory_stores(&disk).unwrap();
    assert_eq!(indexes(&mut log).await, vec![0]);
}

#[tokio::test]
async fn skip_sync_loses_acknowledged_appends_and_votes() {
    let disk = MemoryRaftDisk::new();
    let (mut log, _sm) = open_memory_stores(&disk).unwrap();
    log.blocking_append([blank_ent::<TypeConfig>(1, 1, 0)])
        .await
        .unwrap();
    log.save_vote(&Vote::new(1, 1)).await.unwrap();
    disk.skip_sync(true);
    log.blocking_append([blank_ent::<TypeConfig>(2, 1, 1)])
        .await
        .unwrap();
    log.save_vote(&Vote::new(2, 1)).await.unwrap();
    log.save_committed(Some(log_id(1, 1, 0))).await.unwrap();
    // The running process sees its writes...
    assert_eq!(indexes(&mut log).await, vec![0, 1]);
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(2, 1)));
    disk.crash();
    disk.skip_sync(false);
    // ...but after the crash only what was really synced is left.
    let (mut log, _sm) = open_memory_stores(&disk).unwrap();
    assert_eq!(indexes(&mut log).await, vec![0]);
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(1, 1)));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 1, 0)));
}

#[tokio::test]
async fn state_machine_survives_a_crash() {
    let disk = MemoryRaftDisk::new();
    let (before, applied) = {
        let (_log, mut sm) = open_memory_stores(&disk).unwrap();
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
        assert_eq!(sm.state().applied, 6);
        assert_eq!(reader.state(), sm.state());
        (sm.state(), sm.applied_state().await.unwrap())
    };
    disk.crash();
    let (_log, mut sm) = open_memory_stores(&disk).unwrap();
    assert_eq!(sm.state(), before);
    assert_eq!(sm.reader().state(), before);
    assert_eq!(sm.last_applied(), Some(log_id(1, 1, 6)));
    assert_eq!(sm.applied_state().await.unwrap(), applied);
    sm.apply([command_ent(7, Command::DeleteBucket { name: "a".into() })])
        .await
        .unwrap();
    assert_eq!(sm.state().applied, 7);
    assert!(sm.state().bucket("a").is_none());
}

#[tokio::test]
async fn snapshot_installs_on_a_fresh_disk_and_survives_a_crash() {
    let leader_disk = MemoryRaftDisk::new();
    let (_log, mut leader) = open_memory_stores(&leader_disk).unwrap();
    leader.apply(history()).await.unwrap();
    let state_at_6 = leader.state();
    let mut frozen_builder = leader.get_snapshot_builder().await;
    leader
        .apply([command_ent(7, create("late"))])
        .await
        .unwrap();
    let snapshot = frozen_builder.build_snapshot().await.unwrap();
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 1, 6)));
    let frozen: SiteState = serde_json::from_slice(snapshot.snapshot.get_ref()).unwrap();
    assert!(frozen.bucket("late").is_none());

    let follower_disk = MemoryRaftDisk::new();
    {
        let (_log, mut follower) = open_memory_stores(&follower_disk).unwrap();
        let reader = follower.reader();
        assert!(follower.get_current_snapshot().await.unwrap().is_none());
        let mut data = follower.begin_receiving_snapshot().await.unwrap();
        *data = Cursor::new(snapshot.snapshot.get_ref().clone());
        follower
            .install_snapshot(&snapshot.meta, data)
            .await
            .unwrap();
        assert_eq!(follower.state(), state_at_6);
        assert_eq!(reader.state(), state_at_6);
    }
    follower_disk.crash();
    let (_log, mut follower) = open_memory_stores(&follower_disk).unwrap();
    assert_eq!(follower.state(), state_at_6);
    assert_eq!(
        follower.applied_state().await.unwrap(),
        (
            snapshot.meta.last_log_id,
            snapshot.meta.last_membership.clone()
        )
    );
    let current = follower.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, snapshot.meta);
    assert_eq!(current.snapshot.get_ref(), snapshot.snapshot.get_ref());
}

#[tokio::test]
async fn older_snapshot_never_replaces_a_newer_one() {
    let disk = MemoryRaftDisk::new();
    let (_log, mut sm) = open_memory_stores(&disk).unwrap();
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
    let disk = MemoryRaftDisk::new();
    let (_log, mut sm) = open_memory_stores(&disk).unwrap();
    let reader = sm.reader();
    let waiter = tokio::spawn(async move { reader.wait_applied(5).await });
    sm.apply(history().into_iter().take(3)).await.unwrap();
    assert!(!waiter.is_finished());
    sm.apply(history().into_iter().skip(3)).await.unwrap();
    assert!(waiter.await.unwrap().unwrap().applied >= 5);

    let reader = sm.reader();
    drop(sm);
    assert!(reader.wait_applied(100).await.is_err());
}

#[tokio::test]
async fn empty_membership_is_default() {
    let (_log, mut sm) = open_memory_stores(&MemoryRaftDisk::new()).unwrap();
    assert_eq!(
        sm.applied_state().await.unwrap(),
        (None, StoredMembership::default())
    );
}

/// Both stores run the same apply and snapshot code: same answers, same state, same bytes.
#[tokio::test]
async fn agrees_with_the_rocksdb_stores() {
    let dir = tempfile::tempdir().unwrap();
    let (_rlog, mut rocks) = open_stores(dir.path()).unwrap();
    let (_mlog, mut mem) = open_memory_stores(&MemoryRaftDisk::new()).unwrap();
    assert_eq!(
        rocks.apply(history()).await.unwrap(),
        mem.apply(history()).await.unwrap()
    );
    assert_eq!(rocks.state(), mem.state());
    assert_eq!(
        rocks.applied_state().await.unwrap(),
        mem.applied_state().await.unwrap()
    );
    let a = rocks
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let b = mem
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(a.meta, b.meta);
    assert_eq!(a.snapshot.get_ref(), b.snapshot.get_ref());
}
