//! The scale section of `hive bench`: the operator's round trip, idle CPU and memory in hives of
//! 1, 100 and 500 agents (`--scale`), all running at once.
//!
//! One hive per size, each its own Synapse and core (the `external` runtime), started together.
//! Each has `N` agents whose harness is the bench (answering like a real turn: `next`, `reply`,
//! `ack`) and one more agent, `idle`, whose harness is a real `hive-agent` process, idle. Each
//! hive's operator is a matrix-sdk client with a sync loop, joined to every inbox, as a real
//! operator's client is.
//!
//! A sample: the operator sends to one inbox (`t0`) → the core's transaction endpoint has it
//! (`txn`, the store's receive time) → the harness has it (`harness`) → the harness's `reply`
//! is answered `sent` (the core's `PUT …/send` answered) → the operator's sync has the reply
//! (`synced`). So the round trip splits into four parts:
//!
//! | part | whose |
//! |---|---|
//! | `send → txn` | the homeserver |
//! | `txn → harness` | the core |
//! | `harness → sent` | the core and the homeserver (the reply's `PUT`) |
//! | `sent → synced` | the homeserver and the client (the operator's `/sync`) |
//!
//! Samples go round the sizes in turn, one in flight in the whole bench, the first size of each
//! round rotating, so machine drift lands on every size alike. Each part is reported per size and
//! as a ratio to the smallest size, from the same run. Then, everything idle, one window of
//! `--scale-idle-secs` over all hives at once: CPU clock ticks of each core, each Synapse and
//! each idle `hive-agent`, as % of one core; the cores' RSS and its slope per agent.

mod measure;
mod provision;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;

use self::measure::measure;
use self::provision::{Hive, provision};
use super::pct;
use crate::cli::BenchArgs;

/// Clock ticks per second in /proc (`USER_HZ`, 100 on every Linux the hive runs on).
const TICKS_PER_SEC: f64 = 100.0;
/// Pause after each sample: the core's typing and receipts of the turn settle first.
const PAUSE: Duration = Duration::from_millis(100);
/// How long any one step of a sample may take.
const WAIT: Duration = Duration::from_secs(60);
/// Operator joins in flight at once.
const JOINS_IN_FLIGHT: usize = 8;
/// The agent whose harness is a real, idle `hive-agent`.
const IDLE: &str = "idle";
/// The idle window's floor: shorter ones measure clock-tick noise.
const MIN_IDLE_SECS: u64 = 30;

/// One part of the round trip at one size, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Part {
    pub p50_ms: f64,
    pub p95_ms: f64,
    /// p50 over the smallest size's p50 (1.0 for the smallest size itself).
    pub ratio_p50: f64,
}

/// The figures of one hive size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SizeReport {
    pub agents: usize,
    pub samples: usize,
    /// Operator send → the operator's sync has the reply.
    pub round_trip: Part,
    /// Send → the core's transaction endpoint (the homeserver).
    pub send_to_txn: Part,
    /// → the harness has it (the core).
    pub txn_to_harness: Part,
    /// The harness's reply → `sent` (the core and the homeserver's `PUT`).
    pub reply_to_sent: Part,
    /// → the operator's sync has the reply (the homeserver and the client).
    pub sent_to_synced: Part,
    pub core_rss_mb: f64,
    /// Idle CPU, % of one core, over the idle window.
    pub core_idle_pct: f64,
    pub synapse_idle_pct: f64,
    pub harness_idle_pct: f64,
    pub harness_rss_mb: f64,
    /// The whole hive idle: core + Synapse + `agents + 1` harnesses like the idle one.
    pub hive_idle_pct: f64,
}

/// The section's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleReport {
    pub sizes: Vec<SizeReport>,
    pub idle_secs: u64,
    /// (core RSS at the largest size − at the smallest) / (agents between them), in KB.
    pub core_kb_per_agent: f64,
}

/// The timestamps of one sample, µs of the wall clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub sent: i64,
    pub txn: i64,
    pub harness: i64,
    pub replied: i64,
    pub synced: i64,
}

/// What the idle window measured of one size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Idle {
    pub core_ticks: u64,
    pub synapse_ticks: u64,
    pub harness_ticks: u64,
    pub core_rss_mb: f64,
    pub harness_rss_mb: f64,
}

/// `ticks` over `secs` as % of one core.
pub fn pct_of_core(ticks: u64, secs: f64) -> f64 {
    ticks as f64 / TICKS_PER_SEC / secs * 100.0
}

/// The slope of the cores' RSS over the sizes, KB per agent: from the smallest size to the
/// largest (NaN with a single size).
pub fn kb_per_agent(sizes: &[(usize, f64)]) -> f64 {
    let lo = sizes.iter().min_by_key(|s| s.0);
    let hi = sizes.iter().max_by_key(|s| s.0);
    match (lo, hi) {
        (Some(lo), Some(hi)) if hi.0 > lo.0 => (hi.1 - lo.1) * 1024.0 / (hi.0 - lo.0) as f64,
        _ => f64::NAN,
    }
}

/// `a` → `b` in ms.
fn ms(a: i64, b: i64) -> f64 {
    (b - a) as f64 / 1000.0
}

/// The report of each size's samples and idle window, parts against the smallest size.
pub fn summarize(sizes: Vec<(usize, Vec<Sample>, Idle)>, idle_secs: u64) -> ScaleReport {
    let series = |s: &[Sample], f: &dyn Fn(&Sample) -> f64| {
        let mut v: Vec<f64> = s.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    type Of = fn(&Sample) -> f64;
    let parts: [Of; 5] = [
        |s| ms(s.sent, s.synced),
        |s| ms(s.sent, s.txn),
        |s| ms(s.txn, s.harness),
        |s| ms(s.harness, s.replied),
        |s| ms(s.replied, s.synced),
    ];
    let base_of = sizes.iter().min_by_key(|s| s.0).map(|s| {
        parts
            .iter()
            .map(|f| pct(&series(&s.1, f), 50))
            .collect::<Vec<_>>()
    });
    let secs = idle_secs as f64;
    let mut out = Vec::new();
    for (agents, samples, idle) in &sizes {
        let part = |i: usize| {
            let v = series(samples, &parts[i]);
            let base = base_of.as_ref().map_or(f64::NAN, |b| b[i]);
            Part {
                p50_ms: pct(&v, 50),
                p95_ms: pct(&v, 95),
                ratio_p50: pct(&v, 50) / base,
            }
        };
        let harness_idle_pct = pct_of_core(idle.harness_ticks, secs);
        let core_idle_pct = pct_of_core(idle.core_ticks, secs);
        let synapse_idle_pct = pct_of_core(idle.synapse_ticks, secs);
        out.push(SizeReport {
            agents: *agents,
            samples: samples.len(),
            round_trip: part(0),
            send_to_txn: part(1),
            txn_to_harness: part(2),
            reply_to_sent: part(3),
            sent_to_synced: part(4),
            core_rss_mb: idle.core_rss_mb,
            core_idle_pct,
            synapse_idle_pct,
            harness_idle_pct,
            harness_rss_mb: idle.harness_rss_mb,
            hive_idle_pct: core_idle_pct
                + synapse_idle_pct
                + harness_idle_pct * (*agents + 1) as f64,
        });
    }
    let rss: Vec<(usize, f64)> = sizes.iter().map(|s| (s.0, s.2.core_rss_mb)).collect();
    ScaleReport {
        sizes: out,
        idle_secs,
        core_kb_per_agent: kb_per_agent(&rss),
    }
}

/// Runs the section in `dir` (one hive per size under it), Synapse from `venv`.
pub(super) async fn run(dir: &Path, venv: &Path, args: &BenchArgs) -> anyhow::Result<ScaleReport> {
    let mut sizes = args.scale.clone();
    sizes.sort_unstable();
    sizes.dedup();
    if sizes.contains(&0) {
        bail!("--scale sizes must be at least 1 agent");
    }
    let idle_secs = args.scale_idle_secs.max(MIN_IDLE_SECS);
    eprintln!("bench: scale, hives of {sizes:?} agents starting at once");
    let mut set = tokio::task::JoinSet::new();
    for (k, &n) in sizes.iter().enumerate() {
        let (dir, venv) = (dir.join(n.to_string()), venv.to_owned());
        set.spawn(async move { (k, provision(dir, venv, n).await) });
    }
    let mut hives: Vec<Option<Hive>> = (0..sizes.len()).map(|_| None).collect();
    let mut failed = None;
    while let Some(r) = set.join_next().await {
        match r? {
            (k, Ok(h)) => hives[k] = Some(h),
            (_, Err(e)) => failed = Some(e),
        }
    }
    let mut hives: Vec<Hive> = hives.into_iter().flatten().collect();
    let result = match failed {
        Some(e) => Err(e),
        None => measure(&mut hives, args.scale_samples, idle_secs).await,
    };
    for h in hives {
        h.stop().await;
    }
    result
        .map(|s| summarize(s, idle_secs))
        .with_context(|| format!("see {}/*/c0re.log", dir.display()))
}

/// Prints the section.
pub(super) fn print(r: &ScaleReport) {
    println!();
    println!(
        "scale: the operator's round trip with a syncing operator (ms, ratio to the smallest size)"
    );
    println!(
        "  agents  samples   round trip      send→txn        txn→harness     reply→sent      sent→synced"
    );
    for s in &r.sizes {
        let p = |p: &Part| format!("{:>6.2} ×{:<6.3}", p.p50_ms, p.ratio_p50);
        println!(
            "  {:>6}  {:>7}   {}  {}  {}  {}  {}",
            s.agents,
            s.samples,
            p(&s.round_trip),
            p(&s.send_to_txn),
            p(&s.txn_to_harness),
            p(&s.reply_to_sent),
            p(&s.sent_to_synced)
        );
    }
    println!(
        "  (p50; p95 of the round trip: {})",
        r.sizes
            .iter()
            .map(|s| format!("{} agents {:.2}", s.agents, s.round_trip.p95_ms))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!();
    println!("scale: idle over {} s (% of one core), memory", r.idle_secs);
    println!("  agents    core  Synapse  harness  whole hive   core RSS  harness RSS");
    for s in &r.sizes {
        println!(
            "  {:>6}  {:>6.3}  {:>7.3}  {:>7.3}  {:>10.3}  {:>6.1} MB  {:>8.1} MB",
            s.agents,
            s.core_idle_pct,
            s.synapse_idle_pct,
            s.harness_idle_pct,
            s.hive_idle_pct,
            s.core_rss_mb,
            s.harness_rss_mb
        );
    }
    println!("  hive-c0re RSS per agent: {:.1} KB", r.core_kb_per_agent);
    println!("  (whole hive = core + Synapse + (agents + 1) × the idle harness)");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_ticks_are_a_share_of_one_core() {
        struct Case {
            name: &'static str,
            ticks: u64,
            secs: f64,
            want: f64,
        }
        let cases = [
            Case {
                name: "none",
                ticks: 0,
                secs: 30.0,
                want: 0.0,
            },
            Case {
                name: "one tick in 30 s",
                ticks: 1,
                secs: 30.0,
                want: 1.0 / 30.0,
            },
            Case {
                name: "a full core",
                ticks: 3000,
                secs: 30.0,
                want: 100.0,
            },
        ];
        for c in cases {
            let got = pct_of_core(c.ticks, c.secs);
            assert!(
                (got - c.want).abs() < 1e-9,
                "{}: {got} != {}",
                c.name,
                c.want
            );
        }
    }

    #[test]
    fn the_memory_slope_runs_from_the_smallest_size_to_the_largest() {
        struct Case {
            name: &'static str,
            sizes: Vec<(usize, f64)>,
            want: Option<f64>,
        }
        let cases = [
            Case {
                name: "one and 500",
                sizes: vec![(500, 60.0), (1, 20.0)],
                want: Some(40.0 * 1024.0 / 499.0),
            },
            Case {
                name: "middle size ignored",
                sizes: vec![(1, 20.0), (100, 99.0), (101, 21.0)],
                want: Some(1024.0 / 100.0),
            },
            Case {
                name: "a single size",
                sizes: vec![(100, 30.0)],
                want: None,
            },
            Case {
                name: "none",
                sizes: vec![],
                want: None,
            },
        ];
        for c in cases {
            let got = kb_per_agent(&c.sizes);
            match c.want {
                Some(w) => assert!((got - w).abs() < 1e-9, "{}: {got} != {w}", c.name),
                None => assert!(got.is_nan(), "{}: {got}", c.name),
            }
        }
    }

    #[test]
    fn each_part_is_against_the_smallest_size() {
        let s = |base: i64, k: i64| Sample {
            sent: base,
            txn: base + 10_000 * k,
            harness: base + 11_000 * k,
            replied: base + 20_000 * k,
            synced: base + 40_000 * k,
        };
        let idle = Idle {
            core_ticks: 3,
            synapse_ticks: 30,
            harness_ticks: 0,
            core_rss_mb: 20.0,
            harness_rss_mb: 6.0,
        };
        let big = Idle {
            core_rss_mb: 30.0,
            ..idle
        };
        let r = summarize(
            vec![
                (100, vec![s(0, 2), s(1_000_000, 2)], big),
                (1, vec![s(5, 1), s(7, 1)], idle),
            ],
            30,
        );
        let (large, one) = (&r.sizes[0], &r.sizes[1]);
        assert_eq!(one.round_trip.p50_ms, 40.0);
        assert_eq!(one.round_trip.ratio_p50, 1.0);
        assert_eq!(large.round_trip.ratio_p50, 2.0);
        assert_eq!(large.send_to_txn.p50_ms, 20.0);
        assert_eq!(large.txn_to_harness.p50_ms, 2.0);
        assert_eq!(large.reply_to_sent.p50_ms, 18.0);
        assert_eq!(large.sent_to_synced.ratio_p50, 2.0);
        assert!(
            (large.hive_idle_pct - 0.1 - 1.0).abs() < 1e-9,
            "{}",
            large.hive_idle_pct
        );
        assert!((r.core_kb_per_agent - 10.0 * 1024.0 / 99.0).abs() < 1e-9);
    }
}
