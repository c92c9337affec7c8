//! What operators watch requests through besides logs and metrics: the live request trace
//! ([`trace`]: `cairn admin trace`) and the audit log ([`audit`]: admin calls and denied
//! requests, to a file and/or a webhook). The front router (`server`) fills both once a request
//! is answered, from the notes its handler took (`telemetry::RequestNotes`); neither may hold a
//! request up: the trace is a bounded broadcast that drops for slow readers, the audit log a
//! bounded queue per sink that drops (and counts) when its sink cannot keep up.

pub mod audit;
pub mod trace;

use serde::{Deserialize, Serialize};

/// What the trace and the audit log both say of a request (flattened into each, so their JSON
/// lines keep these fields at the top level).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RequestFacts {
    /// When the request came in (RFC 3339, UTC).
    pub time: String,
    /// The node that served it (`HOST:PORT` of its S3 API).
    pub node: String,
    /// The API it was counted under: the S3 operation, `Admin`, `STS`, `Metrics`, `Health`.
    pub api: String,
    pub method: String,
    /// The path without the query (presigned URLs carry their signature in the query).
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
    /// The client's address.
    pub remote: String,
    pub request_id: String,
}

#[cfg(test)]
impl RequestFacts {
    /// A request's facts for unit tests: a GET of `/` answered `status`, counted under `api`.
    pub fn sample(api: &str, status: u16) -> Self {
        Self {
            time: "t".into(),
            node: "127.0.0.1:1".into(),
            api: api.into(),
            method: "GET".into(),
            path: "/".into(),
            bucket: None,
            key: None,
            status,
            access_key: None,
            remote: "127.0.0.1:2".into(),
            request_id: "1".into(),
        }
    }
}

/// A time as the trace and the audit log print it: RFC 3339 in UTC, milliseconds.
pub fn rfc3339(ns: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let t = t
        .replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_print_in_utc_to_the_millisecond() {
        assert_eq!(
            super::rfc3339(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
