//! Item 14d: heal's removal of a version lost beyond parity is the one removal no object lock
//! stops (`object::retention`), so it must never be silent: each is logged and counted in
//! `cairn admin info`.

use cairn_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heal_logs_and_counts_versions_lost_beyond_parity() {
    let srv = Server::start_with(ServerOptions::new(6).parity(2)).await;
    let c = srv.client();
    create_bucket(&c, "lost").await;
    put(&c, "lost", "o", &random_bytes(1_500_000, 7)).await;
    let info = srv.admin_info().await.expect("admin info");
    assert_eq!(info["lost_versions_removed"], 0, "{info}");

    // Three of six shards damaged for good, four needed: the version cannot come back.
    for i in 0..3 {
        let files = find_part_files(srv.drive(i));
        assert_eq!(files.len(), 1, "one shard on drive {i}: {files:?}");
        flip_bytes_in_middle(&files[0], 16);
    }
    srv.heal().await;

    let info = srv.admin_info().await.expect("admin info");
    assert_eq!(info["lost_versions_removed"], 1, "{info}");
    let logs = format!("{}{}", srv.stdout(), srv.stderr());
    assert!(
        logs.contains("lost version removed") && logs.contains("version_id"),
        "the removal is logged with the version it removed"
    );
    let gone = c.head_object().bucket("lost").key("o").send().await;
    assert_eq!(err_status(&gone.unwrap_err()), Some(404));
}
