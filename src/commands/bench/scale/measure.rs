//! Measuring the scale section's hives: round-trip samples, then the idle window.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;

use super::super::host::{proc_cpu_ticks, proc_rss_mb};
use super::provision::Hive;
use super::{Idle, PAUSE, Sample, WAIT};
use crate::store::now_us;

/// One round trip to inbox `i` of `hive`.
async fn sample(
    hive: &mut Hive,
    i: usize,
    seen: &mut HashMap<String, i64>,
) -> anyhow::Result<Sample> {
    let room = &hive.rooms[i % hive.rooms.len()];
    let sent = now_us();
    let ev = room
        .send(RoomMessageEventContent::text_plain(format!("scale {i}")))
        .await?
        .response
        .event_id
        .to_string();
    let (harness, replied, reply) = loop {
        let (id, had, at, reply) = tokio::time::timeout(WAIT, hive.turns.recv())
            .await
            .with_context(|| format!("no harness had {ev}"))?
            .context("the harnesses are gone")?;
        if id == ev {
            break (had, at, reply);
        }
    };
    let synced = loop {
        if let Some(t) = seen.remove(&reply) {
            break t;
        }
        let (id, t) = tokio::time::timeout(WAIT, hive.synced.recv())
            .await
            .with_context(|| format!("the operator's sync never had {reply}"))?
            .context("the operator's sync is gone")?;
        seen.insert(id, t);
    };
    let txn = hive
        .store
        .received_us(&ev)?
        .with_context(|| format!("the core has no receive time for {ev}"))?;
    Ok(Sample {
        sent,
        txn,
        harness,
        replied,
        synced,
    })
}

/// Samples round trips over `hives` in turn, then measures them all idle for `idle_secs`.
pub(super) async fn measure(
    hives: &mut [Hive],
    samples: usize,
    idle_secs: u64,
) -> anyhow::Result<Vec<(usize, Vec<Sample>, Idle)>> {
    let mut seen: Vec<HashMap<String, i64>> = hives.iter().map(|_| HashMap::new()).collect();
    let mut got: Vec<Vec<Sample>> = hives.iter().map(|_| Vec::new()).collect();
    // Warm-up: every size's first sends pay for connections on every side.
    for (k, h) in hives.iter_mut().enumerate() {
        for i in 0..3 {
            sample(h, i, &mut seen[k]).await?;
        }
    }
    eprintln!(
        "bench: scale, {samples} round trips per size, the sizes in turn, a syncing operator"
    );
    for round in 0..samples {
        for j in 0..hives.len() {
            let k = (round + j) % hives.len();
            let s = sample(&mut hives[k], round, &mut seen[k]).await?;
            got[k].push(s);
            tokio::time::sleep(PAUSE).await;
        }
    }
    eprintln!("bench: scale, idle for {idle_secs} s (every size at once)");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pids = |h: &Hive| -> anyhow::Result<[u32; 3]> {
        Ok([
            h.core.id().context("the core has no pid")?,
            h.synapse.pid().context("Synapse has no pid")?,
            h.idle.id().context("the idle harness has no pid")?,
        ])
    };
    let pids: Vec<[u32; 3]> = hives.iter().map(pids).collect::<anyhow::Result<_>>()?;
    let ticks = |p: &[u32; 3]| -> anyhow::Result<[u64; 3]> {
        Ok([
            proc_cpu_ticks(p[0])?,
            proc_cpu_ticks(p[1])?,
            proc_cpu_ticks(p[2])?,
        ])
    };
    let before: Vec<[u64; 3]> = pids.iter().map(ticks).collect::<anyhow::Result<_>>()?;
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let mut out = Vec::new();
    for (k, h) in hives.iter().enumerate() {
        let after = ticks(&pids[k])?;
        let idle = Idle {
            core_ticks: after[0] - before[k][0],
            synapse_ticks: after[1] - before[k][1],
            harness_ticks: after[2] - before[k][2],
            core_rss_mb: proc_rss_mb(pids[k][0])?,
            harness_rss_mb: proc_rss_mb(pids[k][2])?,
        };
        out.push((h.agents, std::mem::take(&mut got[k]), idle));
    }
    Ok(out)
}
