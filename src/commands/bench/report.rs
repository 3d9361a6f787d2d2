//! What `hive bench` reports, and how it prints it.

use serde::Serialize;

use super::{console, crash, federation, flood, model, scale, signals, startup};

#[derive(Debug, Serialize)]
pub struct Report {
    pub messages: usize,
    pub agents: usize,
    /// The client's own send request (PUT …/send → 200), for context.
    pub send_p50_ms: f64,
    /// Send → transaction received while no harness is connected (the homeserver alone).
    pub quiet_floor_p50_ms: f64,
    pub quiet_floor_p95_ms: f64,
    pub quiet_floor_p99_ms: f64,
    /// Hive path minus the quiet floor: everything the hive costs, its own homeserver traffic
    /// (typing, receipts) included.
    pub added_to_quiet_p50_ms: f64,
    pub added_to_quiet_p99_ms: f64,
    /// Send → transaction received while the hive works (same messages as the hive path).
    pub floor_p50_ms: f64,
    pub floor_p95_ms: f64,
    pub floor_p99_ms: f64,
    pub hive_p50_ms: f64,
    pub hive_p95_ms: f64,
    pub hive_p99_ms: f64,
    pub added_p50_ms: f64,
    pub added_p99_ms: f64,
    pub ratio_p50: f64,
    pub burst: usize,
    pub homeserver_msgs_per_s: f64,
    pub hive_msgs_per_s: f64,
    pub throughput_ratio: f64,
    pub delivered: usize,
    pub duplicates: usize,
    pub core_rss_mb: f64,
    pub harness_rss_mb: f64,
    pub core_idle_cpu_ticks: u64,
    pub harness_idle_cpu_ticks: u64,
    /// Approval rounds measured.
    pub approvals: usize,
    /// ✅ sent → the core's transaction endpoint has the reaction (the homeserver alone).
    pub reaction_floor_p50_ms: f64,
    pub reaction_floor_p95_ms: f64,
    /// ✅ sent → the approval is `applying` (the rebuild starts).
    pub approve_to_apply_p50_ms: f64,
    pub approve_to_apply_p95_ms: f64,
    pub approve_added_p50_ms: f64,
    /// The operator's round trip while one agent floods, next to idle (absent with
    /// `--flood-messages 0`).
    pub flood: Option<flood::FloodReport>,
    /// The floor with the status message and presence off and on (absent with
    /// `--console-messages 0`).
    pub console: Option<console::ConsoleReport>,
    /// The round trip with each of the hive's own signals alone on, all off and all on
    /// (absent with `--signal-messages 0`).
    pub signals: Option<signals::SignalsReport>,
    /// A harness killed → the manager has the `container_crash`, next to an operator's message
    /// to the manager (absent with `--crashes 0`).
    pub crash: Option<crash::CrashReport>,
    /// The cross-hive hop next to the raw federation hop, on two more hives (absent with
    /// `--no-federation`).
    pub federation: Option<federation::FederationReport>,
    /// A hive's start fresh, warm and after a kill -9, next to a 1-agent hive's (absent with
    /// `--startup-agents 0`).
    pub startup: Option<startup::StartupReport>,
    /// The round trip with a syncing operator, idle CPU and memory at each `--scale` size
    /// (absent with `--scale-samples 0`).
    pub scale: Option<scale::ScaleReport>,
    /// The model path direct and through the hive, and the prompt cache (absent with
    /// `--model-calls 0`).
    pub model: Option<model::ModelReport>,
}

pub(super) fn pct(sorted: &[f64], p: usize) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) * p).div_ceil(100).min(sorted.len() - 1)]
}

pub(super) fn print_report(r: &Report) {
    println!(
        "hyperhive bench — {} messages over {} agents, burst of {}",
        r.messages, r.agents, r.burst
    );
    println!();
    println!("latency (ms)                         p50      p95      p99");
    println!(
        "  homeserver floor, hive idle     {:>7.2}  {:>7.2}  {:>7.2}",
        r.quiet_floor_p50_ms, r.quiet_floor_p95_ms, r.quiet_floor_p99_ms
    );
    println!(
        "  homeserver floor (send → txn)   {:>7.2}  {:>7.2}  {:>7.2}",
        r.floor_p50_ms, r.floor_p95_ms, r.floor_p99_ms
    );
    println!(
        "  hive path (send → harness)      {:>7.2}  {:>7.2}  {:>7.2}",
        r.hive_p50_ms, r.hive_p95_ms, r.hive_p99_ms
    );
    println!(
        "  added by the hive               {:>7.2}           {:>7.2}",
        r.added_p50_ms, r.added_p99_ms
    );
    println!(
        "  added vs the idle floor         {:>7.2}           {:>7.2}",
        r.added_to_quiet_p50_ms, r.added_to_quiet_p99_ms
    );
    println!("  ratio hive / floor at p50       {:>7.3}", r.ratio_p50);
    println!(
        "  (the client's send request alone: p50 {:.2})",
        r.send_p50_ms
    );
    println!();
    println!("throughput (burst)");
    println!(
        "  homeserver → appservice         {:>8.1} msg/s",
        r.homeserver_msgs_per_s
    );
    println!(
        "  through hive-c0re to harnesses  {:>8.1} msg/s  ({:.1}% of the homeserver's rate)",
        r.hive_msgs_per_s,
        r.throughput_ratio * 100.0
    );
    println!(
        "  delivered {} of {}, duplicates {}",
        r.delivered, r.burst, r.duplicates
    );
    println!();
    println!(
        "approvals ({} rounds, ms)                p50      p95",
        r.approvals
    );
    println!(
        "  homeserver: ✅ sent → txn          {:>7.2}  {:>7.2}",
        r.reaction_floor_p50_ms, r.reaction_floor_p95_ms
    );
    println!(
        "  hive: ✅ sent → apply started      {:>7.2}  {:>7.2}",
        r.approve_to_apply_p50_ms, r.approve_to_apply_p95_ms
    );
    println!(
        "  added by the hive at p50          {:>7.2}",
        r.approve_added_p50_ms
    );
    if let Some(f) = &r.flood {
        flood::print(f);
    }
    if let Some(c) = &r.console {
        console::print(c);
    }
    if let Some(s) = &r.signals {
        signals::print(s);
    }
    if let Some(c) = &r.crash {
        crash::print(c);
    }
    if let Some(f) = &r.federation {
        federation::print(f);
    }
    if let Some(s) = &r.scale {
        scale::print(s);
    }
    if let Some(s) = &r.startup {
        startup::print(s);
    }
    if let Some(m) = &r.model {
        model::print(m);
    }
    println!();
    println!("resources");
    println!(
        "  hive-c0re RSS                   {:>8.1} MB",
        r.core_rss_mb
    );
    println!(
        "  idle harness RSS                {:>8.1} MB",
        r.harness_rss_mb
    );
    println!(
        "  idle CPU over 5 s (clock ticks) core {}, harness {}",
        r.core_idle_cpu_ticks, r.harness_idle_cpu_ticks
    );
}
