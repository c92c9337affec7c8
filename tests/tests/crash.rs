//! Crash consistency: `kill -9` the server in the middle of a stream of PUTs (new keys
//! and overwrites); after a restart every acknowledged write is intact and nothing that
//! was never written (or only half written) is visible.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use cairn_tests::*;
use rand::{Rng, SeedableRng};

const B: &str = "crash";

#[derive(Default)]
struct Log {
    /// key -> md5 of its last acknowledged content.
    acked: BTreeMap<String, String>,
    /// The single PUT in flight when the server died: (key, md5).
    in_flight: Option<(String, String)>,
    acks: usize,
}

/// PUT objects one after another until a request fails; records every acknowledgement.
async fn writer(c: Client, log: Arc<Mutex<Log>>, seed: u64, prefix: String) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for i in 0.. {
        let overwrite = {
            let l = log.lock().unwrap();
            if !l.acked.is_empty() && rng.gen_bool(0.25) {
                let n = rng.gen_range(0..l.acked.len());
                l.acked.keys().nth(n).cloned()
            } else {
                None
            }
        };
        let key = overwrite.unwrap_or_else(|| format!("{prefix}{i:05}"));
        // Mostly small (inlined), some with shard files, a few multi-MiB.
        let len = match rng.gen_range(0..10) {
            0..=4 => rng.gen_range(0..64 * KIB),
            5..=7 => rng.gen_range(128 * KIB..700 * KIB),
            _ => rng.gen_range(MIB..4 * MIB),
        };
        let data = random_bytes(len, rng.gen());
        let md5 = md5_hex(&data);
        log.lock().unwrap().in_flight = Some((key.clone(), md5.clone()));
        let r = c
            .put_object()
            .bucket(B)
            .key(&key)
            .body(ByteStream::from(data))
            .send()
            .await;
        match r {
            Ok(out) => {
                assert_eq!(
                    out.e_tag(),
                    Some(format!("\"{md5}\"").as_str()),
                    "ETag of acknowledged {key}"
                );
                let mut l = log.lock().unwrap();
                l.acked.insert(key, md5);
                l.in_flight = None;
                l.acks += 1;
            }
            // The server was killed: this PUT stays "in flight" (outcome unknown).
            Err(_) => return,
        }
    }
}

async fn check_after_crash(c: &Client, log: &Log, round: usize) {
    let listed = list_all_keys(c, B).await;
    for key in &listed {
        let allowed_in_flight = log
            .in_flight
            .as_ref()
            .filter(|(k, _)| k == key)
            .map(|(_, m)| m.as_str());
        let acked = log.acked.get(key).map(String::as_str);
        assert!(
            acked.is_some() || allowed_in_flight.is_some(),
            "round {round}: listed key {key} was never acknowledged nor in flight"
        );
        let got = md5_hex(&get(c, B, key).await);
        assert!(
            Some(got.as_str()) == acked || Some(got.as_str()) == allowed_in_flight,
            "round {round}: {key} has content md5 {got}, expected the acknowledged {acked:?} or the in-flight {allowed_in_flight:?}"
        );
    }
    for (key, md5) in &log.acked {
        assert!(
            listed.contains(key),
            "round {round}: acknowledged {key} missing from the listing"
        );
        let got = md5_hex(&get(c, B, key).await);
        let in_flight = log
            .in_flight
            .as_ref()
            .filter(|(k, _)| k == key)
            .map(|(_, m)| m.as_str());
        assert!(
            &got == md5 || Some(got.as_str()) == in_flight,
            "round {round}: acknowledged {key} reads back md5 {got}, expected {md5}"
        );
    }
    // A never-acknowledged new key that is not listed is not readable either.
    if let Some((key, _)) = &log.in_flight {
        if !listed.contains(key) {
            assert_s3_err(
                c.get_object().bucket(B).key(key).send().await,
                404,
                Some("NoSuchKey"),
                &format!("round {round}: unlisted in-flight key {key}"),
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_puts() {
    let mut srv = Server::start_with(ServerOptions::new(4)).await;
    create_bucket(&srv.client(), B).await;
    let log = Arc::new(Mutex::new(Log::default()));

    for round in 0..3 {
        let target = log.lock().unwrap().acks + 15 + 10 * round;
        let task = tokio::spawn(writer(
            srv.client_no_retry(),
            log.clone(),
            42 + round as u64,
            format!("r{round}-"),
        ));
        let reached = poll_until(Duration::from_secs(120), || {
            let log = log.clone();
            async move { log.lock().unwrap().acks >= target }
        })
        .await;
        assert!(
            reached,
            "round {round}: the writer did not reach {target} acknowledged PUTs in 120 s"
        );
        srv.kill9();
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("writer did not stop after the kill")
            .expect("writer panicked");

        srv.restart().await;
        let snapshot = {
            let l = log.lock().unwrap();
            Log {
                acked: l.acked.clone(),
                in_flight: l.in_flight.clone(),
                acks: l.acks,
            }
        };
        check_after_crash(&srv.client(), &snapshot, round).await;

        // Settle the in-flight key to its actual state so the next round's model is exact.
        let in_flight = log.lock().unwrap().in_flight.take();
        if let Some((key, md5)) = in_flight {
            let state = match srv.client().get_object().bucket(B).key(&key).send().await {
                Ok(r) => Some(md5_hex(&r.body.collect().await.unwrap().into_bytes())),
                Err(_) => None,
            };
            eprintln!(
                "round {round}: in-flight PUT of {key} at the kill -> {}",
                match &state {
                    Some(m) if *m == md5 => "stored (new content)",
                    Some(_) => "not stored (previous content kept)",
                    None => "not stored",
                }
            );
            let mut l = log.lock().unwrap();
            match state {
                Some(m) if m == md5 => {
                    l.acked.insert(key, m);
                }
                _ => {}
            }
        }
    }
    // The server still works normally afterwards.
    put(&srv.client(), B, "final", b"ok").await;
    assert_eq!(get(&srv.client(), B, "final").await, b"ok");
}
