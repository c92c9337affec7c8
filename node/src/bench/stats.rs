//! Per-operation counters and latency histograms, and the final report (table or JSON).

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

/// The operations the benchmark issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Get,
    Put,
    Delete,
    Stat,
}

impl OpKind {
    pub const ALL: [Self; 4] = [Self::Get, Self::Put, Self::Delete, Self::Stat];

    pub fn name(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
            Self::Stat => "STAT",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// Whether the operation moves object data (counted in MiB/s).
    fn moves_data(self) -> bool {
        matches!(self, Self::Get | Self::Put)
    }
}

/// Linear buckets below this many microseconds; above, 64 buckets per power of two (under 1.6% error).
const LINEAR: u64 = 128;
const PER_OCTAVE: u64 = LINEAR / 2;
const BUCKETS: usize = (LINEAR + (64 - 7) * PER_OCTAVE) as usize;

/// A log-linear latency histogram in microseconds: fixed memory however long the run.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum: u128,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            count: 0,
            sum: 0,
            max: 0,
        }
    }
}

fn bucket_of(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let exp = u64::from(63 - v.leading_zeros()); // >= 7
    let shift = exp - 6;
    let mantissa = v >> shift; // in [64, 128)
    (LINEAR + (exp - 7) * PER_OCTAVE + (mantissa - PER_OCTAVE)) as usize
}

/// The lowest value of a bucket and its width.
fn bucket_range(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < LINEAR {
        return (i, 1);
    }
    let j = i - LINEAR;
    let shift = j / PER_OCTAVE + 1;
    ((PER_OCTAVE + j % PER_OCTAVE) << shift, 1 << shift)
}

impl Histogram {
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket_of(micros)] += 1;
        self.count += 1;
        self.sum += u128::from(micros);
        self.max = self.max.max(micros);
    }

    pub fn merge(&mut self, other: &Self) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The latency at quantile `q` (0..=1), in microseconds: the middle of its bucket, never above the max.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, width) = bucket_range(i);
                return (low + width / 2).min(self.max);
            }
        }
        self.max
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }
}

/// Counters for one operation type.
#[derive(Debug, Clone, Default)]
pub struct OpStats {
    pub errors: u64,
    pub bytes: u64,
    pub latency: Histogram,
}

/// Counters for all operation types, kept by one worker and merged at the end.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    ops: [OpStats; 4],
}

impl Stats {
    pub fn success(&mut self, op: OpKind, latency: Duration, bytes: u64) {
        let s = &mut self.ops[op.index()];
        s.latency.record(latency);
        s.bytes += bytes;
    }

    pub fn error(&mut self, op: OpKind) {
        self.ops[op.index()].errors += 1;
    }

    pub fn merge(&mut self, other: &Self) {
        for (a, b) in self.ops.iter_mut().zip(&other.ops) {
            a.errors += b.errors;
            a.bytes += b.bytes;
            a.latency.merge(&b.latency);
        }
    }

    pub fn successes(&self) -> u64 {
        self.ops.iter().map(|s| s.latency.count()).sum()
    }

    pub fn errors(&self) -> u64 {
        self.ops.iter().map(|s| s.errors).sum()
    }

    /// The report for a run that lasted `elapsed`.
    pub fn report(&self, elapsed: Duration, header: ReportHeader) -> Report {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let line = |op: String, s: &OpStats| {
            let ops = s.latency.count();
            let ms = |us: u64| us as f64 / 1000.0;
            OpReport {
                op,
                ops,
                errors: s.errors,
                bytes: s.bytes,
                mib_per_sec: s.bytes as f64 / secs / f64::from(1 << 20),
                objects_per_sec: ops as f64 / secs,
                latency_ms: LatencyReport {
                    mean: s.latency.mean() / 1000.0,
                    p50: ms(s.latency.quantile(0.50)),
                    p90: ms(s.latency.quantile(0.90)),
                    p99: ms(s.latency.quantile(0.99)),
                    max: ms(s.latency.max()),
                },
            }
        };
        let operations: Vec<OpReport> = OpKind::ALL
            .iter()
            .filter(|op| {
                let s = &self.ops[op.index()];
                s.latency.count() + s.errors > 0
            })
            .map(|&op| line(op.name().to_owned(), &self.ops[op.index()]))
            .collect();
        let mut total = OpStats::default();
        for op in OpKind::ALL {
            let s = &self.ops[op.index()];
            total.errors += s.errors;
            if op.moves_data() {
                total.bytes += s.bytes;
            }
            total.latency.merge(&s.latency);
        }
        Report {
            header,
            duration_secs: elapsed.as_secs_f64(),
            operations,
            total: line("TOTAL".to_owned(), &total),
        }
    }
}

/// What was run, echoed in the report.
#[derive(Debug, Clone, Serialize)]
pub struct ReportHeader {
    pub workload: String,
    pub endpoint: String,
    pub bucket: String,
    pub object_size: u64,
    pub concurrency: usize,
    pub objects: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyReport {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct OpReport {
    pub op: String,
    /// Successful operations.
    pub ops: u64,
    pub errors: u64,
    pub bytes: u64,
    pub mib_per_sec: f64,
    pub objects_per_sec: f64,
    pub latency_ms: LatencyReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub header: ReportHeader,
    pub duration_secs: f64,
    pub operations: Vec<OpReport>,
    pub total: OpReport,
}

impl Report {
    /// A human-readable table.
    pub fn to_table(&self) -> String {
        let h = &self.header;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "cairn bench: {} of {} objects, {} workers, {:.1}s against {}/{}",
            h.workload,
            super::units::format_size(h.object_size),
            h.concurrency,
            self.duration_secs,
            h.endpoint.trim_end_matches('/'),
            h.bucket
        );
        let _ = writeln!(
            out,
            "{:<7} {:>10} {:>8} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "op",
            "ops",
            "errors",
            "MiB/s",
            "obj/s",
            "mean ms",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms"
        );
        let rows = self
            .operations
            .iter()
            .chain((self.operations.len() > 1).then_some(&self.total));
        for r in rows {
            let l = &r.latency_ms;
            let _ = writeln!(
                out,
                "{:<7} {:>10} {:>8} {:>10.2} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                r.op,
                r.ops,
                r.errors,
                r.mib_per_sec,
                r.objects_per_sec,
                l.mean,
                l.p50,
                l.p90,
                l.p99,
                l.max
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_cover_u64() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(127), 127);
        assert_eq!(bucket_of(128), 128);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        for i in 0..BUCKETS - 1 {
            let (low, width) = bucket_range(i);
            assert_eq!(bucket_of(low), i);
            assert_eq!(bucket_of(low + width - 1), i);
            assert_eq!(bucket_range(i + 1).0, low + width, "bucket {i}");
            // Relative error stays under 1/64.
            assert!(width == 1 || width * 64 <= low);
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let close = |got: u64, want_ms: u64| {
            let want = want_ms * 1000;
            got.abs_diff(want) * 64 <= want
        };
        assert!(close(h.quantile(0.5), 50), "p50 {}", h.quantile(0.5));
        assert!(close(h.quantile(0.9), 90), "p90 {}", h.quantile(0.9));
        assert!(close(h.quantile(0.99), 99), "p99 {}", h.quantile(0.99));
        assert_eq!(h.max(), 100_000);
        assert!(h.quantile(1.0) <= 100_000);
        assert!((h.mean() - 50_500.0).abs() < 1.0);
        assert_eq!(Histogram::default().quantile(0.5), 0);
    }

    #[test]
    fn merges_and_reports() {
        let mut a = Stats::default();
        a.success(OpKind::Put, Duration::from_millis(2), 1 << 20);
        a.error(OpKind::Get);
        let mut b = Stats::default();
        b.success(OpKind::Get, Duration::from_millis(4), 1 << 20);
        b.success(OpKind::Stat, Duration::from_millis(1), 0);
        a.merge(&b);
        assert_eq!(a.successes(), 3);
        assert_eq!(a.errors(), 1);
        let header = ReportHeader {
            workload: "mixed".into(),
            endpoint: "http://127.0.0.1:9000".into(),
            bucket: "b".into(),
            object_size: 1 << 20,
            concurrency: 2,
            objects: 4,
        };
        let r = a.report(Duration::from_secs(2), header);
        let names: Vec<&str> = r.operations.iter().map(|o| o.op.as_str()).collect();
        assert_eq!(names, ["GET", "PUT", "STAT"]);
        assert_eq!(r.total.ops, 3);
        assert_eq!(r.total.errors, 1);
        assert!((r.total.mib_per_sec - 1.0).abs() < 1e-9);
        assert!((r.total.objects_per_sec - 1.5).abs() < 1e-9);
        let table = r.to_table();
        assert!(table.contains("TOTAL"), "{table}");
        let json = serde_json::to_value(&r).unwrap_or_default();
        assert_eq!(json["workload"], "mixed");
        assert_eq!(json["operations"][0]["op"], "GET");
        assert_eq!(json["total"]["ops"], 3);
    }
}
