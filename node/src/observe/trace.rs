//! The live request trace (`cairn admin trace`, like `mc admin trace`): every node publishes
//! one [`TraceRecord`] per finished request into its [`TraceHub`], a bounded broadcast channel.
//! With nobody subscribed nothing is built at all; a subscriber that reads too slowly loses the
//! oldest lines (told how many) and never holds a request up. The admin API streams a node's
//! records and fans in the other nodes' (`admin::trace`).

use std::sync::Arc;

use hyper::HeaderMap;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// The IAM action a caller needs to trace (MinIO's name).
pub const ACTION: &str = "admin:ServerTrace";
/// Records a subscriber may fall behind by before it loses the oldest.
const CAPACITY: usize = 4096;
/// What a secret header's value is replaced with.
pub const REDACTED: &str = "*REDACTED*";

/// One finished request, as the trace shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TraceRecord {
    #[serde(flatten)]
    pub request: super::RequestFacts,
    /// From the request's arrival to the end of its answer's body.
    pub duration_ms: f64,
    /// The request body's declared length.
    pub bytes_in: u64,
    /// Answer body bytes sent.
    pub bytes_out: u64,
    /// Request headers, secrets masked ([`masked_headers`]); sent to `--verbose` readers only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// Answer headers; `--verbose` only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_headers: Vec<(String, String)>,
}

/// A node's finished requests, for whoever traces now.
pub struct TraceHub {
    tx: broadcast::Sender<Arc<TraceRecord>>,
    /// Records readers lost because they read too slowly (the metrics).
    lost: std::sync::atomic::AtomicU64,
}

impl Default for TraceHub {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(CAPACITY).0,
            lost: Default::default(),
        }
    }
}

impl TraceHub {
    /// Whether anyone traces now (else records are not even built).
    pub fn active(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    pub fn publish(&self, r: TraceRecord) {
        // No receiver: nobody traces any more; the record is simply dropped.
        let _ = self.tx.send(Arc::new(r));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<TraceRecord>> {
        self.tx.subscribe()
    }

    /// A reader lost `n` records.
    pub fn lost(&self, n: u64) {
        self.lost.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn lost_total(&self) -> u64 {
        self.lost.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Which records a trace shows (`cairn admin trace` flags, query parameters of the admin call).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceFilter {
    /// API names (case-insensitive); empty: all.
    pub apis: Vec<String>,
    /// Only answers with status 400 or more.
    pub errors: bool,
    /// Buckets; empty: all.
    pub buckets: Vec<String>,
    /// Nodes (`HOST:PORT` of their S3 API); empty: all.
    pub nodes: Vec<String>,
    /// Headers too.
    pub verbose: bool,
}

impl TraceFilter {
    /// The filter a trace call's query asks for (`api`, `bucket`, `node` repeated; `errors`
    /// and `verbose` as `true`).
    pub fn from_query(pairs: &[(String, String)]) -> Self {
        let all = |name: &str| -> Vec<String> {
            pairs
                .iter()
                .filter(|(k, v)| k == name && !v.is_empty())
                .map(|(_, v)| v.clone())
                .collect()
        };
        let yes = |name: &str| pairs.iter().any(|(k, v)| k == name && v == "true");
        Self {
            apis: all("api"),
            errors: yes("errors"),
            buckets: all("bucket"),
            nodes: all("node"),
            verbose: yes("verbose"),
        }
    }

    /// The query that asks for this filter.
    pub fn to_query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        q.extend(self.apis.iter().map(|a| ("api", a.clone())));
        q.extend(self.buckets.iter().map(|b| ("bucket", b.clone())));
        q.extend(self.nodes.iter().map(|n| ("node", n.clone())));
        if self.errors {
            q.push(("errors", "true".into()));
        }
        if self.verbose {
            q.push(("verbose", "true".into()));
        }
        q
    }

    pub fn wants_node(&self, node: &str) -> bool {
        self.nodes.is_empty() || self.nodes.iter().any(|n| n == node)
    }

    pub fn matches(&self, r: &TraceRecord) -> bool {
        let r = &r.request;
        (self.apis.is_empty() || self.apis.iter().any(|a| a.eq_ignore_ascii_case(&r.api)))
            && (!self.errors || r.status >= 400)
            && (self.buckets.is_empty()
                || r.bucket.as_ref().is_some_and(|b| self.buckets.contains(b)))
            && self.wants_node(&r.node)
    }

    /// `r` as one JSON line for this reader: headers only when verbose.
    pub fn line(&self, r: &TraceRecord) -> Vec<u8> {
        let mut line = if self.verbose || (r.headers.is_empty() && r.response_headers.is_empty()) {
            serde_json::to_vec(r)
        } else {
            serde_json::to_vec(&TraceRecord {
                headers: Vec::new(),
                response_headers: Vec::new(),
                ..r.clone()
            })
        }
        .unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// The line that tells a reader that `node`'s records reach its stream from now on.
pub fn tracing_line(node: &str) -> Vec<u8> {
    let mut line = serde_json::to_vec(&serde_json::json!({ "node": node, "tracing": true }))
        .unwrap_or_default();
    line.push(b'\n');
    line
}

/// One line of a trace stream, as a reader takes it.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum TraceLine {
    Record(Box<TraceRecord>),
    /// [`tracing_line`].
    Tracing {
        node: String,
        tracing: bool,
    },
    /// [`dropped_line`]: the reader lost `dropped` records of `node`.
    Dropped {
        node: String,
        dropped: u64,
    },
}

/// The line that tells a reader it lost `n` records of `node` (it read too slowly).
pub fn dropped_line(node: &str, n: u64) -> Vec<u8> {
    let mut line =
        serde_json::to_vec(&serde_json::json!({ "node": node, "dropped": n })).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Headers whose whole value is a secret.
fn secret_header(name: &str) -> bool {
    matches!(
        name,
        "x-amz-security-token"
            | "x-amz-server-side-encryption-customer-key"
            | "x-amz-copy-source-server-side-encryption-customer-key"
            | "cookie"
            | "proxy-authorization"
    ) || ((name.contains("secret") || name.contains("token") || name.contains("password"))
        && !name.ends_with("-md5"))
}

/// An `Authorization` value with its proof masked: a SigV4 `Signature=`, a SigV2 signature
/// after the access key, a bearer token; the rest (scheme, credential scope, signed headers)
/// stays, it is what tells one client from another.
fn masked_authorization(v: &str) -> String {
    if let Some(at) = v.find("Signature=") {
        let start = at + "Signature=".len();
        let end = v[start..].find(',').map_or(v.len(), |e| start + e);
        return format!("{}{REDACTED}{}", &v[..start], &v[end..]);
    }
    match v.split_once(' ') {
        Some(("AWS", rest)) => match rest.split_once(':') {
            Some((key, _)) => format!("AWS {key}:{REDACTED}"),
            None => format!("AWS {REDACTED}"),
        },
        Some((scheme, _)) => format!("{scheme} {REDACTED}"),
        None => REDACTED.to_owned(),
    }
}

/// `headers` with every secret masked: request signatures, session tokens, SSE-C keys.
pub fn masked_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            let name = k.as_str();
            let v = String::from_utf8_lossy(v.as_bytes());
            let shown = if name == "authorization" {
                masked_authorization(&v)
            } else if secret_header(name) {
                REDACTED.to_owned()
            } else {
                v.into_owned()
            };
            (name.to_owned(), shown)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(api: &str, status: u16, bucket: Option<&str>, node: &str) -> TraceRecord {
        TraceRecord {
            request: crate::observe::RequestFacts {
                node: node.into(),
                bucket: bucket.map(Into::into),
                ..crate::observe::RequestFacts::sample(api, status)
            },
            duration_ms: 1.0,
            bytes_in: 0,
            bytes_out: 0,
            headers: vec![("host".into(), "h".into())],
            response_headers: Vec::new(),
        }
    }

    #[test]
    fn filters_select_by_api_status_bucket_and_node() {
        let q = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            TraceFilter::from_query(&pairs)
        };
        let all = q(&[]);
        assert!(all.matches(&record("GetObject", 200, None, "a:1")));
        let f = q(&[
            ("api", "getobject"),
            ("api", "PutObject"),
            ("errors", "true"),
        ]);
        assert!(f.matches(&record("GetObject", 404, None, "a:1")));
        assert!(!f.matches(&record("GetObject", 200, None, "a:1")));
        assert!(!f.matches(&record("ListBuckets", 500, None, "a:1")));
        let f = q(&[("bucket", "b1"), ("node", "a:1")]);
        assert!(f.matches(&record("GetObject", 200, Some("b1"), "a:1")));
        assert!(!f.matches(&record("GetObject", 200, Some("b2"), "a:1")));
        assert!(!f.matches(&record("GetObject", 200, None, "a:1")));
        assert!(!f.matches(&record("GetObject", 200, Some("b1"), "b:1")));
        assert!(f.wants_node("a:1") && !f.wants_node("b:1"));
        // The query round-trips.
        let f = q(&[
            ("api", "A"),
            ("bucket", "b"),
            ("node", "n"),
            ("errors", "true"),
            ("verbose", "true"),
        ]);
        let back: Vec<(String, String)> = f
            .to_query()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(TraceFilter::from_query(&back), f);
    }

    #[test]
    fn headers_reach_verbose_readers_only() {
        let r = record("GetObject", 200, None, "a:1");
        let plain = String::from_utf8(q_line(false, &r)).unwrap();
        assert!(!plain.contains("headers"), "{plain}");
        let verbose = String::from_utf8(q_line(true, &r)).unwrap();
        assert!(
            verbose.contains("\"headers\":[[\"host\",\"h\"]]"),
            "{verbose}"
        );
        assert!(verbose.ends_with('\n'));
    }

    fn q_line(verbose: bool, r: &TraceRecord) -> Vec<u8> {
        TraceFilter {
            verbose,
            ..Default::default()
        }
        .line(r)
    }

    #[test]
    fn secrets_are_masked() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIA/20260101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=0123abcd"
                .parse()
                .unwrap(),
        );
        h.insert("x-amz-security-token", "sessiontoken".parse().unwrap());
        h.insert(
            "x-amz-server-side-encryption-customer-key",
            "c2VjcmV0a2V5".parse().unwrap(),
        );
        h.insert(
            "x-amz-server-side-encryption-customer-key-md5",
            "bWQ1".parse().unwrap(),
        );
        h.insert("x-amz-date", "20260101T000000Z".parse().unwrap());
        let m = masked_headers(&h);
        let text = format!("{m:?}");
        for secret in ["0123abcd", "sessiontoken", "c2VjcmV0a2V5"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        for kept in [
            "Credential=AKIA/20260101",
            "SignedHeaders=host;x-amz-date",
            "bWQ1",
            "20260101T000000Z",
        ] {
            assert!(text.contains(kept), "{kept} not in {text}");
        }
        assert_eq!(
            masked_authorization("AWS AKIA:c2ln"),
            format!("AWS AKIA:{REDACTED}")
        );
        assert_eq!(
            masked_authorization("Bearer a.b.c"),
            format!("Bearer {REDACTED}")
        );
        assert_eq!(masked_authorization("opaque"), REDACTED);
    }

    #[test]
    fn readers_tell_records_from_notes() {
        let parse = |line: &[u8]| serde_json::from_slice::<TraceLine>(line).unwrap();
        let r = record("GetObject", 200, Some("b"), "a:1");
        assert!(
            matches!(parse(&q_line(false, &r)), TraceLine::Record(got) if *got == TraceRecord { headers: Vec::new(), ..r })
        );
        assert!(matches!(
            parse(&tracing_line("a:1")),
            TraceLine::Tracing { node, tracing: true } if node == "a:1"
        ));
        assert!(matches!(
            parse(&dropped_line("a:1", 7)),
            TraceLine::Dropped { node, dropped: 7 } if node == "a:1"
        ));
    }
}
