//! The audit log: one JSON line per admin call and per denied request (who, what, from where,
//! which policy decided), to a file (`CAIRN_AUDIT_FILE`) and/or an HTTP webhook
//! (`CAIRN_AUDIT_WEBHOOK_ENDPOINT`). Each sink has a bounded queue and a task of its own that
//! writes from it: a request only tries to queue its line, so a sink that is down or slow never
//! holds requests up; lines that find the queue full, or that the sink refused after its
//! retries, are dropped and counted (`cairn_audit_dropped_total` in the metrics). The webhook
//! goes out through the handed-in network ([`crate::link::Link`] over a `net::Dial`), so the
//! simulator could run it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::link::Link;

pub const FILE_ENV: &str = "CAIRN_AUDIT_FILE";
pub const WEBHOOK_ENV: &str = "CAIRN_AUDIT_WEBHOOK_ENDPOINT";
/// Sent as `Authorization: Bearer TOKEN` to the webhook.
pub const WEBHOOK_TOKEN_ENV: &str = "CAIRN_AUDIT_WEBHOOK_AUTH_TOKEN";
pub const QUEUE_ENV: &str = "CAIRN_AUDIT_QUEUE_SIZE";
/// Lines each sink's queue holds by default.
const DEFAULT_QUEUE: usize = 10_000;
/// Lines one webhook POST or one file write carries at most.
const BATCH: usize = 256;
/// A webhook batch is tried this many times before its lines are dropped.
const ATTEMPTS: u32 = 3;
/// The first pause after a failed attempt; it doubles.
const RETRY_AFTER: Duration = Duration::from_millis(500);
/// One webhook POST, connection included.
const POST_TIMEOUT: Duration = Duration::from_secs(5);
/// What the webhook may answer (the answer is not read).
const MAX_ANSWER: usize = 64 << 10;

/// One audited request. No secret: the access key but never its secret, no session token, no
/// request body, no query (presigned signatures live there).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct AuditRecord {
    pub version: u32,
    #[serde(flatten)]
    pub request: super::RequestFacts,
    /// `admin` (an admin API call, allowed or not) or `denied` (any other refused request).
    pub kind: String,
    /// `root`, `user`, `service-account`, `session`, `anonymous`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<String>,
    /// The IAM identity the credentials are, or act for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Which policy statement decided, or why the request was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{WEBHOOK_ENV}: expected http://HOST:PORT/PATH or https://..., not {0:?}")]
    Webhook(String),
    #[error("{QUEUE_ENV}: expected a number of lines from 1, not {0:?}")]
    Queue(String),
}

/// Where audit lines go (`CAIRN_AUDIT_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    pub file: Option<PathBuf>,
    pub webhook: Option<String>,
    pub token: Option<String>,
    pub queue: usize,
}

impl AuditSettings {
    /// The settings from `vars`; `None` when no sink is named (no audit log).
    pub fn from_env(vars: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>, AuditError> {
        let set = |k: &str| {
            vars(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let file = set(FILE_ENV).map(PathBuf::from);
        let webhook = set(WEBHOOK_ENV);
        if let Some(w) = &webhook {
            let ok = w.parse::<hyper::Uri>().ok().is_some_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
            });
            if !ok {
                return Err(AuditError::Webhook(w.clone()));
            }
        }
        let queue = match set(QUEUE_ENV) {
            None => DEFAULT_QUEUE,
            Some(q) => q
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(AuditError::Queue(q))?,
        };
        if file.is_none() && webhook.is_none() {
            return Ok(None);
        }
        Ok(Some(Self {
            file,
            webhook,
            token: set(WEBHOOK_TOKEN_ENV),
            queue,
        }))
    }
}

/// One sink's queue and counters.
struct Sink {
    name: &'static str,
    tx: mpsc::Sender<Bytes>,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    written: AtomicU64,
    dropped: AtomicU64,
}

/// The audit log's sinks.
pub struct Audit {
    sinks: Vec<Sink>,
}

/// What one sink did so far (the metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkCounts {
    pub sink: &'static str,
    pub written: u64,
    pub dropped: u64,
}

impl Audit {
    /// Starts a writer task per sink; `link` carries the webhook's POSTs.
    pub fn start(settings: &AuditSettings, link: Link) -> Arc<Audit> {
        let mut sinks = Vec::new();
        if let Some(path) = &settings.file {
            let (tx, rx) = mpsc::channel(settings.queue);
            let counts = Arc::new(Counts::default());
            tokio::spawn(write_file(path.clone(), rx, counts.clone()));
            sinks.push(Sink {
                name: "file",
                tx,
                counts,
            });
        }
        if let Some(url) = &settings.webhook {
            let (tx, rx) = mpsc::channel(settings.queue);
            let counts = Arc::new(Counts::default());
            let link = link.with_response_timeout(POST_TIMEOUT);
            let headers: Vec<(&'static str, String)> =
                std::iter::once(("content-type", "application/x-ndjson".to_owned()))
                    .chain(
                        settings
                            .token
                            .iter()
                            .map(|t| ("authorization", format!("Bearer {t}"))),
                    )
                    .collect();
            tokio::spawn(post_webhook(link, url.clone(), headers, rx, counts.clone()));
            sinks.push(Sink {
                name: "webhook",
                tx,
                counts,
            });
        }
        Arc::new(Audit { sinks })
    }

    /// Queues `r` for every sink, never waiting: a full queue drops the line (counted).
    pub fn log(&self, r: &AuditRecord) {
        let Ok(mut line) = serde_json::to_vec(r) else {
            return;
        };
        line.push(b'\n');
        let line = Bytes::from(line);
        for s in &self.sinks {
            if s.tx.try_send(line.clone()).is_err() {
                s.counts.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn counts(&self) -> Vec<SinkCounts> {
        self.sinks
            .iter()
            .map(|s| SinkCounts {
                sink: s.name,
                written: s.counts.written.load(Ordering::Relaxed),
                dropped: s.counts.dropped.load(Ordering::Relaxed),
            })
            .collect()
    }
}

/// Waits for the next line, then takes what else is queued, up to [`BATCH`] lines.
async fn next_batch(rx: &mut mpsc::Receiver<Bytes>) -> Option<Vec<Bytes>> {
    let first = rx.recv().await?;
    let mut batch = vec![first];
    while batch.len() < BATCH {
        match rx.try_recv() {
            Ok(l) => batch.push(l),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// Appends each batch to the file (opened again after an error: it may have been rotated away
/// or its disk filled up).
async fn write_file(path: PathBuf, mut rx: mpsc::Receiver<Bytes>, counts: Arc<Counts>) {
    use tokio::io::AsyncWriteExt;
    let mut file = None;
    while let Some(batch) = next_batch(&mut rx).await {
        let n = batch.len() as u64;
        let body: Vec<u8> = batch.concat();
        if file.is_none() {
            file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .await
                .map_err(|e| tracing::warn!(path = %path.display(), error = %e, "audit file cannot be opened"))
                .ok();
        }
        let written = match file.as_mut() {
            Some(f) => f.write_all(&body).await.and(f.flush().await),
            None => Err(std::io::ErrorKind::NotFound.into()),
        };
        match written {
            Ok(()) => {
                counts.written.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, lines = n, "audit lines not written: dropped");
                counts.dropped.fetch_add(n, Ordering::Relaxed);
                file = None;
            }
        }
    }
}

/// POSTs each batch (JSON lines) to the webhook, trying a few times before dropping it.
async fn post_webhook(
    link: Link,
    url: String,
    headers: Vec<(&'static str, String)>,
    mut rx: mpsc::Receiver<Bytes>,
    counts: Arc<Counts>,
) {
    while let Some(batch) = next_batch(&mut rx).await {
        let n = batch.len() as u64;
        let body = Bytes::from(batch.concat());
        let mut wait = RETRY_AFTER;
        let mut sent = false;
        for attempt in 1..=ATTEMPTS {
            match link.post(&url, &headers, body.clone(), MAX_ANSWER).await {
                Ok(_) => {
                    sent = true;
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, attempt, "audit webhook failed");
                    if attempt < ATTEMPTS {
                        tokio::time::sleep(wait).await;
                        wait *= 2;
                    }
                }
            }
        }
        if sent {
            counts.written.fetch_add(n, Ordering::Relaxed);
        } else {
            tracing::warn!(lines = n, "audit webhook unreachable: lines dropped");
            counts.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn settings_are_read_and_checked() {
        assert_eq!(AuditSettings::from_env(&vars(&[])).unwrap(), None);
        let s = AuditSettings::from_env(&vars(&[
            (WEBHOOK_ENV, "http://127.0.0.1:9/audit"),
            (WEBHOOK_TOKEN_ENV, "t0ken"),
            (QUEUE_ENV, "8"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(s.webhook.as_deref(), Some("http://127.0.0.1:9/audit"));
        assert_eq!(
            (s.queue, s.token.as_deref(), s.file),
            (8, Some("t0ken"), None)
        );
        for bad in ["ftp://h/x", "not a url", "http://"] {
            let v = move |k: &str| (k == WEBHOOK_ENV).then(|| bad.to_owned());
            assert!(AuditSettings::from_env(&v).is_err(), "{bad}");
        }
        assert!(AuditSettings::from_env(&vars(&[(FILE_ENV, "/tmp/a"), (QUEUE_ENV, "0")])).is_err());
    }

    fn record() -> AuditRecord {
        AuditRecord {
            version: 1,
            request: super::super::RequestFacts {
                path: "/b/k".into(),
                bucket: Some("b".into()),
                key: Some("k".into()),
                access_key: Some("AK".into()),
                ..super::super::RequestFacts::sample("GetObject", 403)
            },
            kind: "denied".into(),
            credentials: Some("user".into()),
            user: Some("alice".into()),
            decision: Some("denied: no statement allows it".into()),
        }
    }

    #[tokio::test]
    async fn a_file_gets_one_line_per_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let settings = AuditSettings {
            file: Some(path.clone()),
            webhook: None,
            token: None,
            queue: 16,
        };
        let link = Link::new(
            Arc::new(crate::net::TcpDial),
            &[],
            Arc::new(crate::clock::SystemClock),
        );
        let audit = Audit::start(&settings, link);
        audit.log(&record());
        audit.log(&record());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while audit.counts()[0].written < 2 {
            assert!(tokio::time::Instant::now() < deadline, "not written");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<AuditRecord> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines, vec![record(), record()]);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_waiting() {
        // A webhook that never answers: the writer holds one batch, the queue fills up.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/audit", listener.local_addr().unwrap());
        let settings = AuditSettings {
            file: None,
            webhook: Some(url),
            token: None,
            queue: 4,
        };
        let link = Link::new(
            Arc::new(crate::net::TcpDial),
            &[],
            Arc::new(crate::clock::SystemClock),
        );
        let audit = Audit::start(&settings, link);
        let started = std::time::Instant::now();
        for _ in 0..100 {
            audit.log(&record());
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        let c = audit.counts()[0];
        assert_eq!(c.sink, "webhook");
        assert!(c.dropped >= 95, "{c:?}");
        drop(listener);
    }
}
