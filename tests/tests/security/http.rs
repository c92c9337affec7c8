//! Issue 16, item 2: the HTTP listener under hostile clients. An anonymous browser-form upload
//! (POST Object) must not make the server buffer its file before anyone is authenticated;
//! clients that trickle their requests a byte at a time must not hold the request slots that
//! signed clients need; and one client address must not hold every connection.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use cairn_tests::*;

const MIB: u64 = 1 << 20;
const BOUNDARY: &str = "cairn-form-boundary-7d2f";

/// A `/proc/PID/status` figure in KiB (`VmRSS`, `VmHWM`).
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The form fields a browser sends before the file, then the file part's header.
fn form_prefix(key: &str) -> String {
    format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\n{key}\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
}

fn form_suffix() -> String {
    format!("\r\n--{BOUNDARY}--\r\n")
}

/// Reads one HTTP/1.1 response (head and a `Content-Length` body) from `s`; tolerates the
/// server closing (or resetting) the connection once the response is out.
fn read_response(s: &mut std::net::TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => panic!(
                "connection ended before a response head: {:?}",
                String::from_utf8_lossy(&buf)
            ),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad response head {head:?}"));
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            if k.eq_ignore_ascii_case("content-length") {
                v.trim().parse().ok()
            } else {
                None
            }
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    (
        status,
        String::from_utf8_lossy(&buf[head_end..]).to_string(),
    )
}

/// Sends an anonymous POST Object form whose file is `file_len` bytes, generated while it is
/// written (the test never holds it), declared with `Content-Length` or sent chunked; returns
/// the server's answer, which may come before the body is through.
fn post_form(port: u16, bucket: &str, key: &str, file_len: u64, chunked: bool) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    let (prefix, suffix) = (form_prefix(key), form_suffix());
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!(
            "Content-Length: {}",
            prefix.len() as u64 + file_len + suffix.len() as u64
        )
    };
    let head = format!(
        "POST /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n{framing}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let frame = |w: &mut std::net::TcpStream, data: &[u8]| -> std::io::Result<()> {
            if chunked {
                w.write_all(format!("{:x}\r\n", data.len()).as_bytes())?;
                w.write_all(data)?;
                w.write_all(b"\r\n")
            } else {
                w.write_all(data)
            }
        };
        let block = vec![0x5au8; 256 * 1024];
        let mut left = file_len;
        let mut send = || -> std::io::Result<()> {
            frame(&mut w, prefix.as_bytes())?;
            while left > 0 {
                let n = left.min(block.len() as u64) as usize;
                frame(&mut w, &block[..n])?;
                left -= n as u64;
            }
            frame(&mut w, suffix.as_bytes())?;
            if chunked {
                w.write_all(b"0\r\n\r\n")?;
            }
            Ok(())
        };
        // The server may refuse (and close) before the body is through: a write error is fine.
        let _ = send();
    });
    let answer = read_response(&mut s);
    let _ = s.shutdown(std::net::Shutdown::Both);
    writer.join().unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn anonymous_huge_form_post_is_refused_without_buffering() {
    let srv = Server::start(1).await;
    create_bucket(&srv.client(), "forms").await;
    let pid = srv.pid().unwrap();
    let idle = proc_kib(pid, "VmRSS");
    // Reset the peak so VmHWM tells the peak during the attack.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(idle));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                peak.fetch_max(proc_kib(pid, "VmRSS"), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let port = srv.port();
    let answers = tokio::task::spawn_blocking(move || {
        [false, true].map(|chunked| {
            (
                chunked,
                post_form(port, "forms", "big.bin", 512 * MIB, chunked),
            )
        })
    })
    .await
    .unwrap();
    stop.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::SeqCst).max(proc_kib(pid, "VmHWM"));
    let grew_mib = peak.saturating_sub(idle) / 1024;
    assert!(
        grew_mib < 64,
        "an anonymous 512 MiB form upload grew the server from {} MiB to {} MiB",
        idle / 1024,
        peak / 1024
    );
    for (chunked, (status, body)) in answers {
        assert_eq!(
            (status, body.contains("<Code>EntityTooLarge</Code>")),
            (400, true),
            "512 MiB form (chunked: {chunked}): expected 400 EntityTooLarge, got {status} {body}"
        );
    }
    // The server still serves and stores nothing for the refused forms.
    let c = srv.client();
    let r = c.head_object().bucket("forms").key("big.bin").send().await;
    assert_eq!(err_status(&r.unwrap_err()), Some(404));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_uploads_within_the_cap_still_work() {
    let srv = Server::start(1).await;
    let c = srv.client();
    create_bucket(&c, "drop").await;
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:PutObject","Resource":["arn:aws:s3:::drop","arn:aws:s3:::drop/*"]}]}"#;
    ok(
        c.put_bucket_policy()
            .bucket("drop")
            .policy(policy)
            .send()
            .await,
        "put bucket policy",
    );
    let port = srv.port();
    for (chunked, len) in [(false, 3 * MIB), (true, 5 * MIB + 7)] {
        let key = format!("form-{chunked}");
        let k = key.clone();
        let (status, body) =
            tokio::task::spawn_blocking(move || post_form(port, "drop", &k, len, chunked))
                .await
                .unwrap();
        assert!(
            (200..300).contains(&status),
            "form upload of {len} bytes (chunked: {chunked}): {status} {body}"
        );
        let got = get(&c, "drop", &key).await;
        assert_eq!(got.len() as u64, len);
        assert!(got.iter().all(|&b| b == 0x5a));
    }
}

/// One attacker: an anonymous form POST whose head goes out one byte at a time, then the form
/// fields at once (s3s refuses a form whose first boundary comes in pieces), then the file one
/// byte at a time, until `stop` or `until`. Counts itself in `trickling` once file bytes flow.
async fn trickle(port: u16, stop: Arc<AtomicBool>, trickling: Arc<AtomicUsize>, until: Instant) {
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return;
    };
    let prefix = form_prefix("slow.bin");
    let head = format!(
        "POST /forms HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {}\r\n\r\n",
        prefix.len() + (1 << 20) + form_suffix().len()
    );
    let mut interval = tokio::time::interval(Duration::from_millis(2));
    for b in head.into_bytes() {
        interval.tick().await;
        if stop.load(Ordering::SeqCst) || Instant::now() > until || s.write_all(&[b]).await.is_err()
        {
            return;
        }
    }
    if s.write_all(prefix.as_bytes()).await.is_err() {
        return;
    }
    // Slower once the file flows: the attack needs no more than a byte now and then.
    let mut interval = tokio::time::interval(Duration::from_millis(50));
    for i in 0.. {
        interval.tick().await;
        if stop.load(Ordering::SeqCst) || Instant::now() > until || s.write_all(b"x").await.is_err()
        {
            return;
        }
        if i == 3 {
            trickling.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_clients_do_not_starve_signed_requests() {
    const MAX_REQUESTS: usize = 8;
    let srv = Server::start_with(
        ServerOptions::new(1).env("CAIRN_MAX_REQUESTS", &MAX_REQUESTS.to_string()),
    )
    .await;
    let c = srv.client();
    create_bucket(&c, "forms").await;
    put(&c, "forms", "k", b"still served").await;

    let stop = Arc::new(AtomicBool::new(false));
    let (trickling, ended) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let until = Instant::now() + Duration::from_secs(30);
    let attackers: Vec<_> = (0..2 * MAX_REQUESTS)
        .map(|_| {
            let (stop, trickling, ended) = (stop.clone(), trickling.clone(), ended.clone());
            let port = srv.port();
            tokio::spawn(async move {
                trickle(port, stop, trickling, until).await;
                ended.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    // Every attacker is either trickling its file or was turned away.
    let deadline = Instant::now() + Duration::from_secs(15);
    while trickling.load(Ordering::SeqCst) + ended.load(Ordering::SeqCst) < 2 * MAX_REQUESTS
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let still = trickling.load(Ordering::SeqCst);
    assert!(
        still >= MAX_REQUESTS,
        "only {still} attackers got their file going"
    );
    let started = Instant::now();
    let got = tokio::time::timeout(
        Duration::from_secs(1),
        c.get_object().bucket("forms").key("k").send(),
    )
    .await;
    let elapsed = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    for a in attackers {
        a.await.unwrap();
    }
    let out = match got {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!(
            "signed GET failed under {still} trickling clients after {elapsed:?}: {:?} {:?}",
            err_status(&e),
            err_code(&e)
        ),
        Err(_) => panic!("signed GET did not finish within 1 s under {still} trickling clients"),
    };
    let body = out.body.collect().await.unwrap().into_bytes();
    assert_eq!(&body[..], b"still served");
}

/// Opens a connection from `from` and asks for the liveness probe; `Some` (the open connection)
/// when the server answered, `None` when it closed the connection without an answer.
async fn served(from: Ipv4Addr, port: u16) -> Option<tokio::net::TcpStream> {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(IpAddr::V4(from), 0)).unwrap();
    let mut s = sock
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .ok()?;
    let req = format!("GET /cairn/health/live HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = [0u8; 256];
    match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => {
            assert!(
                buf.starts_with(b"HTTP/1.1 200"),
                "unexpected answer {:?}",
                String::from_utf8_lossy(&buf[..n])
            );
            Some(s)
        }
        Ok(_) => None,
        Err(_) => panic!("connection from {from} neither served nor closed within 5 s"),
    }
}

/// Opens connections from `from` until `n` are served (a connection of the harness's readiness
/// probe may still be closing), within a deadline.
async fn hold(from: Ipv4Addr, port: u16, n: usize) -> Vec<tokio::net::TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut held = Vec::new();
    while held.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} connections from {from} served",
            held.len()
        );
        if let Some(s) = served(from, port).await {
            held.push(s);
        }
    }
    held
}

/// Asserts the server closes a connection from `from` at once, without serving it.
async fn refused(from: Ipv4Addr, port: u16, what: &str) {
    let started = Instant::now();
    let got = served(from, port).await;
    assert!(
        got.is_none(),
        "{what}: the connection from {from} was served"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{what}: refusal took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped_per_address_and_in_all() {
    let srv = Server::start_with(
        ServerOptions::new(1)
            .env("CAIRN_MAX_CONNECTIONS_PER_ADDRESS", "4")
            .env("CAIRN_MAX_CONNECTIONS", "6"),
    )
    .await;
    let port = srv.port();
    let (a, b, c) = (
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(127, 0, 0, 2),
        Ipv4Addr::new(127, 0, 0, 3),
    );
    let mut from_a = hold(a, port, 4).await;
    refused(a, port, "fifth connection of one address").await;
    let from_b = hold(b, port, 2).await;
    refused(c, port, "seventh connection in all").await;
    // A closed connection frees its place.
    drop(from_a.pop());
    let again = hold(a, port, 1).await;
    assert_eq!(from_a.len() + from_b.len() + again.len(), 6);
}

/// Every answer names its request, in the header and in an error document, as AWS does: the
/// id a client reports is the one the server logged. Ids differ between requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_carry_their_request_id() {
    let srv = Server::start(1).await;
    let http = srv.http();
    let mut seen = std::collections::BTreeSet::new();
    for path in ["/no-such-bucket/key", "/no-such-bucket/other"] {
        let r = http
            .get(format!("{}{path}", srv.endpoint()))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let header = r
            .headers()
            .get("x-amz-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .expect("x-amz-request-id header");
        let body = r.text().await.unwrap();
        assert_eq!(status, 404, "{body}");
        assert!(
            body.contains(&format!("<RequestId>{header}</RequestId>")),
            "error document names request {header}: {body}"
        );
        assert!(seen.insert(header), "request ids repeat");
    }
    let ok = http
        .get(format!("{}/cairn/health/live", srv.endpoint()))
        .send()
        .await
        .unwrap();
    assert!(ok.headers().contains_key("x-amz-request-id"));
}

/// A signed upload whose body comes a few bytes now and then, each gap shorter than the idle
/// timeout: without a minimum rate it would hold its request slot for as long as it likes.
/// Below `CAIRN_MIN_BODY_RATE` (over the time the server waited for it) it gets 400
/// RequestTimeout, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dripping_upload_is_cut_off_at_the_minimum_rate() {
    let srv = Server::start_with(
        ServerOptions::new(1)
            .env("CAIRN_IDLE_TIMEOUT", "2s")
            .env("CAIRN_MIN_BODY_RATE", "1KiB"),
    )
    .await;
    let c = srv.client();
    create_bucket(&c, "drip").await;
    let url = format!("{}/drip/slow", srv.endpoint());
    let signed = sigv4::Signer::new(srv.access_key(), srv.secret_key()).sign(
        "PUT",
        &url,
        &[],
        sigv4::UNSIGNED_PAYLOAD,
    );
    let mut head = format!(
        "PUT /drip/slow HTTP/1.1\r\nContent-Length: {}\r\n",
        64 * 1024
    );
    for (k, v) in &signed.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", srv.port()))
        .await
        .unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (mut rd, mut wr) = s.into_split();
    // 16 bytes every 500 ms: never idle for 2 s, but 32 bytes/s.
    let dripper = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            if wr.write_all(&[b'd'; 16]).await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        while !String::from_utf8_lossy(&answer).contains("</Error>") {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    dripper.abort();
    assert!(
        read.is_ok(),
        "the dripping upload was still held after 30 s"
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert_eq!(
        xml_error_code(&text).as_deref(),
        Some("RequestTimeout"),
        "{text}"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "cut off before the idle timeout: {took:?}"
    );
    assert!(c
        .head_object()
        .bucket("drip")
        .key("slow")
        .send()
        .await
        .is_err());
}
