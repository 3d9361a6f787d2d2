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
use crate::store::Store;
use crate::wire::client::SocketClient;
use crate::wire::protocol::{ErrorCode, Request, Response};

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

/// One series' figures, next to the idle series of the same run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// Operator send → the harness has the message.
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// This series / the idle series, per percentile.
    pub ratio_p50: f64,
    pub ratio_p95: f64,
    pub ratio_p99: f64,
    /// Send → the core's transaction endpoint has it (the homeserver's part), at p50.
    pub floor_p50_ms: f64,
}

impl Figures {
    /// The figures of `s` (sorted) against `idle` (sorted).
    pub fn of(s: &Series, idle: &Series) -> Self {
        let ratio = |p| pct(&s.hive, p) / pct(&idle.hive, p);
        Self {
            p50_ms: pct(&s.hive, 50),
            p95_ms: pct(&s.hive, 95),
            p99_ms: pct(&s.hive, 99),
            ratio_p50: ratio(50),
            ratio_p95: ratio(95),
            ratio_p99: ratio(99),
            floor_p50_ms: pct(&s.floor, 50),
        }
    }
}

/// The flood phase's figures (`flood` in `--json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FloodReport {
    /// Round trips measured in each series.
    pub messages: usize,
    /// The agent the operator's messages went to.
    pub agent: String,
    /// The flooder's limit, messages per minute (burst of as many).
    pub messages_per_minute: u32,
    /// Nobody flooding.
    pub idle: Figures,
    /// From the flooder's first answer on (while its burst lasts, every send is posted).
    pub flooding: Figures,
    /// From the core's first `rate_limited` refusal on (the flooder still sending); absent if
    /// the limit was not reached within [`LIMIT_WAIT`].
    pub limited: Option<Figures>,
    /// The flooder's first answer → its first `rate_limited` refusal, seconds.
    pub limited_after_secs: Option<f64>,
    /// How long the flooder flooded (its first answer → told to stop), seconds.
    pub flood_secs: f64,
    pub flooder: Sends,
}

/// How long the bench waits, after the flooding series, for the core to refuse the flooder.
pub const LIMIT_WAIT: Duration = Duration::from_secs(120);

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

/// What the flooder has had so far, shared with the bench while it runs.
#[derive(Debug, Default)]
struct Progress {
    answers: AtomicU64,
    rate_limited: AtomicU64,
    stop: AtomicBool,
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

type Done = tokio::sync::oneshot::Receiver<anyhow::Result<Sends>>;

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

    /// Idle series; the flooder starts; the series again (flooding); once the core refuses the
    /// flooder, the series a third time (limited); the flooder stops.
    pub async fn run(mut self) -> anyhow::Result<FloodReport> {
        let idle = self.series("idle").await?;
        let name = crate::agent_spec::AgentName::parse(FLOODER)?;
        let socket = crate::wire::socket_path(&crate::c0re::Core::socket_dir(self.data, &name));
        let progress = Arc::new(Progress::default());
        let (done_tx, mut done) = tokio::sync::oneshot::channel();
        {
            let progress = progress.clone();
            std::thread::Builder::new()
                .name("bench-flooder".into())
                .spawn(move || {
                    let result = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .context("cannot build the flooder's runtime")
                        .and_then(|rt| rt.block_on(flooder(socket, &progress)));
                    // The receiver is gone only if the bench itself gave up already.
                    let _ = done_tx.send(result);
                })
                .context("cannot start the flooder's thread")?;
        }
        let measured = self.measure(&progress, &mut done).await;
        progress.stop.store(true, Ordering::Relaxed);
        let (flooding, limited, limited_after, started) = measured?;
        let flood_secs = started.elapsed().as_secs_f64();
        let sends = tokio::time::timeout(Duration::from_secs(30), done)
            .await
            .context("the flooder did not stop")?
            .context("the flooder's thread died")??;
        Ok(FloodReport {
            messages: self.messages,
            agent: self.agent.to_owned(),
            messages_per_minute: MESSAGES_PER_MINUTE,
            idle: Figures::of(&idle, &idle),
            flooding: Figures::of(&flooding, &idle),
            limited: limited.as_ref().map(|l| Figures::of(l, &idle)),
            limited_after_secs: limited_after.map(|d| d.as_secs_f64()),
            flood_secs,
            flooder: sends,
        })
    }

    /// The two series under flood: (flooding, limited, first answer → first refusal, when the
    /// flood started).
    async fn measure(
        &mut self,
        progress: &Progress,
        done: &mut Done,
    ) -> anyhow::Result<(Series, Option<Series>, Option<Duration>, Instant)> {
        let answered = |p: &Progress| p.answers.load(Ordering::Relaxed) > 0;
        if !wait_for(progress, done, Duration::from_secs(30), answered).await? {
            bail!("the flooder never got an answer from hive-c0re");
        }
        let started = Instant::now();
        let flooding = self.series("flooding").await?;
        let refused = |p: &Progress| p.rate_limited.load(Ordering::Relaxed) > 0;
        if !wait_for(progress, done, LIMIT_WAIT, refused).await? {
            return Ok((flooding, None, None, started));
        }
        let limited_after = started.elapsed();
        let limited = self.series("limited").await?;
        Ok((flooding, Some(limited), Some(limited_after), started))
    }
}

/// Waits up to `within` for `cond`; an error if the flooder ended meanwhile.
async fn wait_for(
    progress: &Progress,
    done: &mut Done,
    within: Duration,
    cond: impl Fn(&Progress) -> bool,
) -> anyhow::Result<bool> {
    let deadline = Instant::now() + within;
    while !cond(progress) {
        if Instant::now() > deadline {
            return Ok(false);
        }
        tokio::select! {
            ended = &mut *done => {
                let why = match ended {
                    Ok(Err(e)) => format!("{e:#}"),
                    _ => "it stopped".into(),
                };
                bail!("the flooder ended before the bench was done: {why}");
            }
            () = tokio::time::sleep(Duration::from_millis(1)) => {}
        }
    }
    Ok(true)
}

/// The phase's part of the text report.
pub fn print(f: &FloodReport) {
    println!();
    println!(
        "round trip while one agent floods ({} messages to {}, ms)   p50      p95      p99",
        f.messages, f.agent
    );
    let row = |label: &str, v: [f64; 3]| {
        println!("  {label:<48} {:>8.2} {:>8.2} {:>8.2}", v[0], v[1], v[2]);
    };
    let ratio = |label: &str, v: &Figures| {
        println!(
            "  {label:<48} {:>8.3} {:>8.3} {:>8.3}",
            v.ratio_p50, v.ratio_p95, v.ratio_p99
        );
    };
    let i = &f.idle;
    row("idle (send → harness)", [i.p50_ms, i.p95_ms, i.p99_ms]);
    let l = &f.flooding;
    row(
        "flooding, from its first send",
        [l.p50_ms, l.p95_ms, l.p99_ms],
    );
    ratio("  ratio flooding / idle", l);
    match (&f.limited, f.limited_after_secs) {
        (Some(m), Some(after)) => {
            row(
                &format!("flooding, held by the limit (from {after:.1} s)"),
                [m.p50_ms, m.p95_ms, m.p99_ms],
            );
            ratio("  ratio held / idle", m);
        }
        _ => println!(
            "  (the limit was not reached within {} s of flooding)",
            LIMIT_WAIT.as_secs()
        ),
    }
    println!(
        "  (homeserver floor at p50: idle {:.2}, flooding {:.2}, held {:.2})",
        i.floor_p50_ms,
        l.floor_p50_ms,
        f.limited.as_ref().map_or(f64::NAN, |m| m.floor_p50_ms)
    );
    let s = &f.flooder;
    println!(
        "  flooder ({} messages/min): {} sends in {:.1} s: {} accepted, {} refused rate_limited, {} refused otherwise",
        f.messages_per_minute,
        s.total(),
        f.flood_secs,
        s.accepted,
        s.rate_limited,
        s.refused_other
    );
    if let Some(first) = &s.first_other {
        println!("  first other refusal: {first}");
    }
}

/// The flooding harness: `hello`, then `send_message` to the operator until `stop`.
async fn flooder(socket: PathBuf, progress: &Progress) -> anyhow::Result<Sends> {
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
    while !progress.stop.load(Ordering::Relaxed) {
        let answer = c
            .call(&Request::SendMessage {
                to: "operator".into(),
                body: format!("flood {}", sends.total()),
            })
            .await?;
        sends.count(&answer);
        if sends.rate_limited > 0 {
            progress
                .rate_limited
                .store(sends.rate_limited, Ordering::Relaxed);
        }
        progress.answers.fetch_add(1, Ordering::Relaxed);
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
    fn ratios_are_the_series_over_idle_per_percentile() {
        let series = |hive: &[f64], floor: f64| Series {
            floor: vec![floor; hive.len()],
            hive: hive.to_vec(),
        };
        /// (idle, series) → (ratio p50, ratio p99)
        type Case<'a> = (&'a [f64], &'a [f64], (f64, f64));
        let cases: &[Case] = &[
            (&[10.0, 10.0, 10.0], &[20.0, 20.0, 20.0], (2.0, 2.0)),
            (&[10.0, 20.0, 40.0], &[10.0, 20.0, 80.0], (1.0, 2.0)),
            (&[10.0, 20.0, 40.0], &[5.0, 10.0, 20.0], (0.5, 0.5)),
        ];
        for (idle, flood, (r50, r99)) in cases {
            let f = Figures::of(&series(flood, 2.0), &series(idle, 1.0));
            assert_eq!(
                (f.ratio_p50, f.ratio_p99),
                (*r50, *r99),
                "{idle:?} {flood:?}"
            );
            assert_eq!(f.p99_ms, flood[flood.len() - 1]);
            assert_eq!(f.floor_p50_ms, 2.0);
        }
    }

    #[test]
    fn empty_series_give_no_figures() {
        let f = Figures::of(&Series::default(), &Series::default());
        assert!(f.p50_ms.is_nan() && f.ratio_p50.is_nan() && f.floor_p50_ms.is_nan());
    }
}
