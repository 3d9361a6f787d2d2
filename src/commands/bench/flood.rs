//! The flood phase of `hive bench`: the operator's round trip to one agent while another agent
//! sends messages as fast as the core lets it, next to the same round trip with nobody flooding,
//! both measured in the same run, to the same agent, by the same method as the hive path.
//!
//! The flooder is one more agent whose harness (this bench) connects, says `hello` and then
//! calls `send_message` to the operator back to back, never waiting: a runaway agent's loop. The
//! core holds it to `[limits] messages_per_minute` (the bench's hive.toml sets the default, 120,
//! explicitly); every answer is counted as accepted (`sent`), refused with `rate_limited`, or
//! refused otherwise. It runs on a thread of its own with its own runtime, as a separate
//! harness process would, so that its loop does not queue behind the operator's tasks.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use super::{Deliveries, pct, round_trip};
use crate::harness::client::SocketClient;
use crate::harness::protocol::{ErrorCode, Request, Response};
use crate::store::Store;

/// The flooding agent's name.
pub const FLOODER: &str = "flood";

/// `[limits] messages_per_minute` in the bench's hive.toml: the core's default, written out so
/// that the figures say what the flooder was held to.
pub const MESSAGES_PER_MINUTE: u32 = 120;

/// The flooder's answers from the core, by kind.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Sends {
    /// `sent`: the core posted the message.
    pub accepted: u64,
    /// Refused with `rate_limited`.
    pub rate_limited: u64,
    /// Refused for any other reason (the first such refusal is kept, to be shown).
    pub refused_other: u64,
    pub first_other: Option<String>,
}

impl Sends {
    /// Counts one answer to `send_message`.
    pub fn count(&mut self, answer: &Response) {
        match answer {
            Response::Sent { .. } => self.accepted += 1,
            Response::Error {
                code: ErrorCode::RateLimited,
                ..
            } => self.rate_limited += 1,
            other => {
                self.refused_other += 1;
                if self.first_other.is_none() {
                    self.first_other = Some(format!("{other:?}"));
                }
            }
        }
    }

    pub fn total(&self) -> u64 {
        self.accepted + self.rate_limited + self.refused_other
    }
}

/// The flood phase's figures (`flood` in `--json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FloodReport {
    /// Round trips measured in each series (idle, then under flood).
    pub messages: usize,
    /// The agent the operator's messages went to.
    pub agent: String,
    /// The flooder's limit, messages per minute (burst of as many).
    pub messages_per_minute: u32,
    /// Operator send → the harness has the message, nobody flooding.
    pub idle_p50_ms: f64,
    pub idle_p95_ms: f64,
    pub idle_p99_ms: f64,
    /// The same while the flooder floods.
    pub flood_p50_ms: f64,
    pub flood_p95_ms: f64,
    pub flood_p99_ms: f64,
    /// Under flood / idle, per percentile.
    pub ratio_p50: f64,
    pub ratio_p95: f64,
    pub ratio_p99: f64,
    /// Send → the core's transaction endpoint has it (the homeserver's part), at p50.
    pub idle_floor_p50_ms: f64,
    pub flood_floor_p50_ms: f64,
    /// How long the flooder flooded (its first answer → told to stop), seconds.
    pub flood_secs: f64,
    pub flooder: Sends,
}

/// One series of round trips: (send → core, send → harness), in ms, sorted.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Series {
    pub floor: Vec<f64>,
    pub hive: Vec<f64>,
}

impl Series {
    fn push(&mut self, floor: f64, hive: f64) {
        self.floor.push(floor);
        self.hive.push(hive);
    }

    fn sort(&mut self) {
        self.floor.sort_by(f64::total_cmp);
        self.hive.sort_by(f64::total_cmp);
    }
}

/// The figures from both series (sorted) and the flooder's count.
pub fn summarize(
    agent: &str,
    idle: &Series,
    flood: &Series,
    flooder: Sends,
    flood_secs: f64,
) -> FloodReport {
    let ratio = |p| pct(&flood.hive, p) / pct(&idle.hive, p);
    FloodReport {
        messages: idle.hive.len().min(flood.hive.len()),
        agent: agent.to_owned(),
        messages_per_minute: MESSAGES_PER_MINUTE,
        idle_p50_ms: pct(&idle.hive, 50),
        idle_p95_ms: pct(&idle.hive, 95),
        idle_p99_ms: pct(&idle.hive, 99),
        flood_p50_ms: pct(&flood.hive, 50),
        flood_p95_ms: pct(&flood.hive, 95),
        flood_p99_ms: pct(&flood.hive, 99),
        ratio_p50: ratio(50),
        ratio_p95: ratio(95),
        ratio_p99: ratio(99),
        idle_floor_p50_ms: pct(&idle.floor, 50),
        flood_floor_p50_ms: pct(&flood.floor, 50),
        flood_secs,
        flooder,
    }
}

/// Everything the phase needs from the bench's run.
pub struct Phase<'a> {
    pub data: &'a Path,
    pub store: &'a Store,
    /// The operator's view of the measured agent's room.
    pub room: &'a matrix_sdk::Room,
    pub agent: &'a str,
    pub messages: usize,
    pub rx: &'a mut tokio::sync::mpsc::UnboundedReceiver<String>,
    pub deliveries: &'a Deliveries,
}

impl Phase<'_> {
    async fn series(&mut self, label: &str) -> anyhow::Result<Series> {
        let mut s = Series::default();
        for i in 0..self.messages {
            let t = round_trip(
                self.room,
                format!("{label} {i}"),
                self.store,
                self.rx,
                self.deliveries,
            )
            .await?;
            s.push(t.floor_ms, t.hive_ms);
        }
        s.sort();
        Ok(s)
    }

    /// Idle series, then the flooder starts, the series again under flood, the flooder stops.
    pub async fn run(mut self) -> anyhow::Result<FloodReport> {
        let idle = self.series("idle").await?;
        let name = crate::agent_spec::AgentName::parse(FLOODER)?;
        let socket = crate::harness::socket_path(&crate::c0re::Core::socket_dir(self.data, &name));
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(AtomicU64::new(0));
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        {
            let (stop, answers) = (stop.clone(), answers.clone());
            std::thread::Builder::new()
                .name("bench-flooder".into())
                .spawn(move || {
                    let result = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .context("cannot build the flooder's runtime")
                        .and_then(|rt| rt.block_on(flooder(socket, &stop, &answers)));
                    // The receiver is gone only if the bench itself gave up already.
                    let _ = done_tx.send(result);
                })
                .context("cannot start the flooder's thread")?;
        }
        // Measure only once the flood is on: the flooder has had its first answer.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut done_rx = done_rx;
        while answers.load(Ordering::Relaxed) == 0 {
            if Instant::now() > deadline {
                stop.store(true, Ordering::Relaxed);
                bail!("the flooder never got an answer from hive-c0re");
            }
            tokio::select! {
                ended = &mut done_rx => {
                    let why = match ended {
                        Ok(Err(e)) => format!("{e:#}"),
                        _ => "it stopped".into(),
                    };
                    bail!("the flooder ended before flooding: {why}");
                }
                () = tokio::time::sleep(Duration::from_millis(1)) => {}
            }
        }
        let started = Instant::now();
        let flood = self.series("under flood").await;
        let flood_secs = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        let sends = tokio::time::timeout(Duration::from_secs(30), done_rx)
            .await
            .context("the flooder did not stop")?
            .context("the flooder's thread died")??;
        Ok(summarize(self.agent, &idle, &flood?, sends, flood_secs))
    }
}

/// The flooding harness: `hello`, then `send_message` to the operator until `stop`.
async fn flooder(socket: PathBuf, stop: &AtomicBool, answers: &AtomicU64) -> anyhow::Result<Sends> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut c = loop {
        match SocketClient::connect(&socket).await {
            Ok(c) => break c,
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    match c
        .call(&Request::Hello {
            agent: FLOODER.into(),
            pid: std::process::id(),
        })
        .await?
    {
        Response::Welcome { .. } => {}
        other => bail!("hive-c0re did not welcome the flooder: {other:?}"),
    }
    let mut sends = Sends::default();
    while !stop.load(Ordering::Relaxed) {
        let answer = c
            .call(&Request::SendMessage {
                to: "operator".into(),
                body: format!("flood {}", sends.total()),
            })
            .await?;
        sends.count(&answer);
        answers.fetch_add(1, Ordering::Relaxed);
    }
    Ok(sends)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_counted_by_kind() {
        let err = |code| Response::Error {
            code,
            message: "m".into(),
        };
        /// Answers → (accepted, rate limited, refused otherwise).
        type Case<'a> = (&'a [Response], (u64, u64, u64));
        let cases: &[Case] = &[
            (&[], (0, 0, 0)),
            (
                &[Response::Sent {
                    event_id: "$a".into(),
                }],
                (1, 0, 0),
            ),
            (
                &[
                    Response::Sent {
                        event_id: "$a".into(),
                    },
                    err(ErrorCode::RateLimited),
                    err(ErrorCode::RateLimited),
                ],
                (1, 2, 0),
            ),
            (
                &[err(ErrorCode::Homeserver), err(ErrorCode::RateLimited)],
                (0, 1, 1),
            ),
            (&[Response::Done], (0, 0, 1)),
        ];
        for (answers, (accepted, limited, other)) in cases {
            let mut s = Sends::default();
            for a in *answers {
                s.count(a);
            }
            assert_eq!(
                (s.accepted, s.rate_limited, s.refused_other),
                (*accepted, *limited, *other),
                "{answers:?}"
            );
            assert_eq!(s.total(), accepted + limited + other);
            assert_eq!(s.first_other.is_some(), *other > 0, "{answers:?}");
        }
    }

    #[test]
    fn the_first_other_refusal_is_kept() {
        let mut s = Sends::default();
        for code in [ErrorCode::Homeserver, ErrorCode::Secret] {
            s.count(&Response::Error {
                code,
                message: format!("{code:?}"),
            });
        }
        assert!(s.first_other.expect("one kept").contains("Homeserver"));
    }

    #[test]
    fn ratios_are_flood_over_idle_per_percentile() {
        let series = |hive: &[f64], floor: f64| Series {
            floor: vec![floor; hive.len()],
            hive: hive.to_vec(),
        };
        /// (idle, flood) → (ratio p50, ratio p99)
        type Case<'a> = (&'a [f64], &'a [f64], (f64, f64));
        let cases: &[Case] = &[
            (&[10.0, 10.0, 10.0], &[20.0, 20.0, 20.0], (2.0, 2.0)),
            (&[10.0, 20.0, 40.0], &[10.0, 20.0, 80.0], (1.0, 2.0)),
            (&[10.0, 20.0, 40.0], &[5.0, 10.0, 20.0], (0.5, 0.5)),
        ];
        for (idle, flood, (r50, r99)) in cases {
            let r = summarize(
                "bench0",
                &series(idle, 1.0),
                &series(flood, 2.0),
                Sends::default(),
                1.0,
            );
            assert_eq!(
                (r.ratio_p50, r.ratio_p99),
                (*r50, *r99),
                "{idle:?} {flood:?}"
            );
            assert_eq!(r.messages, idle.len());
            assert_eq!((r.idle_floor_p50_ms, r.flood_floor_p50_ms), (1.0, 2.0));
        }
    }

    #[test]
    fn empty_series_give_no_figures() {
        let r = summarize(
            "bench0",
            &Series::default(),
            &Series::default(),
            Sends::default(),
            0.0,
        );
        assert_eq!(r.messages, 0);
        assert!(r.idle_p50_ms.is_nan() && r.ratio_p50.is_nan() && r.flood_p99_ms.is_nan());
    }
}
