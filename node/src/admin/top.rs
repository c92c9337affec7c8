//! What `cairn admin top api` shows: the trace records of a window folded into one row per
//! API (count, errors, latency percentiles, bytes). Rows hold counters and a fixed-size latency
//! histogram, never the records, and there are at most [`MAX_APIS`] of them, so memory stays
//! bounded however busy the site and however long the window.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::bench::stats::Histogram;
use crate::observe::trace::TraceRecord;

/// Distinct API names kept apart; records of any further name are counted under [`OTHER`].
const MAX_APIS: usize = 256;
/// The row of the APIs past [`MAX_APIS`].
const OTHER: &str = "(other)";

#[derive(Debug, Default)]
struct Row {
    count: u64,
    errors: u64,
    bytes_in: u64,
    bytes_out: u64,
    latency: Histogram,
    max_ms: f64,
}

/// One API over the window, as printed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ApiStats {
    pub api: String,
    pub count: u64,
    /// Answers with status 400 or more.
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// How the rows are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Order {
    /// Most frequent first.
    Count,
    /// Slowest first (by p99, then max).
    Latency,
}

/// The records of a window, folded per API.
#[derive(Debug, Default)]
pub struct Top {
    rows: BTreeMap<String, Row>,
    /// Records the server said this reader lost (it read too slowly).
    pub dropped: u64,
}

impl Top {
    pub fn add(&mut self, r: &TraceRecord) {
        let name = if self.rows.len() < MAX_APIS || self.rows.contains_key(&r.request.api) {
            r.request.api.as_str()
        } else {
            OTHER
        };
        let row = self.rows.entry(name.to_owned()).or_default();
        row.count += 1;
        row.errors += u64::from(r.request.status >= 400);
        row.bytes_in = row.bytes_in.saturating_add(r.bytes_in);
        row.bytes_out = row.bytes_out.saturating_add(r.bytes_out);
        let ms = if r.duration_ms.is_finite() {
            r.duration_ms.max(0.0)
        } else {
            0.0
        };
        row.latency
            .record(Duration::try_from_secs_f64(ms / 1e3).unwrap_or(Duration::MAX));
        row.max_ms = row.max_ms.max(ms);
    }

    /// Every API's row in `order`, ties by name.
    pub fn rows(&self, order: Order) -> Vec<ApiStats> {
        let ms = |us: u64| us as f64 / 1e3;
        let mut rows: Vec<ApiStats> = self
            .rows
            .iter()
            .map(|(api, r)| ApiStats {
                api: api.clone(),
                count: r.count,
                errors: r.errors,
                p50_ms: ms(r.latency.quantile(0.5)).min(r.max_ms),
                p99_ms: ms(r.latency.quantile(0.99)).min(r.max_ms),
                max_ms: r.max_ms,
                bytes_in: r.bytes_in,
                bytes_out: r.bytes_out,
            })
            .collect();
        match order {
            Order::Count => rows.sort_by_key(|r| std::cmp::Reverse(r.count)),
            Order::Latency => rows.sort_by(|a, b| {
                b.p99_ms
                    .total_cmp(&a.p99_ms)
                    .then(b.max_ms.total_cmp(&a.max_ms))
            }),
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(api: &str, status: u16, ms: f64, bytes_out: u64) -> TraceRecord {
        TraceRecord {
            request: crate::observe::RequestFacts::sample(api, status),
            duration_ms: ms,
            bytes_in: 1,
            bytes_out,
            headers: Vec::new(),
            response_headers: Vec::new(),
        }
    }

    #[test]
    fn rows_count_errors_latency_and_bytes_per_api() {
        let mut top = Top::default();
        for ms in 1..=100 {
            top.add(&record("GetObject", 200, f64::from(ms), 10));
        }
        top.add(&record("GetObject", 404, 0.5, 0));
        top.add(&record("PutObject", 200, 500.0, 0));
        let rows = top.rows(Order::Count);
        assert_eq!(rows.len(), 2);
        let get = &rows[0];
        assert_eq!(
            (get.api.as_str(), get.count, get.errors),
            ("GetObject", 101, 1)
        );
        assert_eq!((get.bytes_in, get.bytes_out), (101, 1000));
        assert!((get.p50_ms - 50.0).abs() < 1.0, "{get:?}");
        assert!((get.p99_ms - 99.0).abs() < 2.0, "{get:?}");
        assert_eq!(get.max_ms, 100.0);
        let slowest = top.rows(Order::Latency);
        assert_eq!(slowest[0].api, "PutObject");
        assert_eq!(slowest[0].p50_ms, 500.0);
    }

    #[test]
    fn apis_past_the_bound_share_one_row() {
        let mut top = Top::default();
        for i in 0..MAX_APIS + 10 {
            top.add(&record(&format!("Api{i}"), 200, 1.0, 0));
        }
        top.add(&record("Api0", 500, f64::NAN, 0));
        let rows = top.rows(Order::Count);
        assert_eq!(rows.len(), MAX_APIS + 1);
        assert_eq!(rows[0].count, 10);
        assert_eq!(rows[0].api, OTHER);
        let api0 = rows.iter().find(|r| r.api == "Api0").unwrap();
        assert_eq!((api0.count, api0.errors), (2, 1));
    }
}
