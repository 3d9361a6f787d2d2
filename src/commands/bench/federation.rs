//! The federation section of `hive bench`: the cross-hive hop against the raw federation hop,
//! measured in one run on two throwaway hives that federate on loopback.
//!
//! Two Synapses (`localhost:<port>`, TLS federation listeners with certificates from a CA made
//! for the run: [`crate::homeserver::testca`]), two cores on the `external` runtime, peered with
//! each other: [`SENDER`] on [`HIVE_A`] may message [`RECEIVER`] on [`HIVE_B`]. The bench is
//! both agents' harness. Per sample, alternately:
//!
//! - **raw hop**: hive-a's operator (a matrix-sdk client) sends into a federated room both
//!   operators are in → hive-b's operator, a plain `/sync` long-poll, has it. Federation with
//!   nothing of the hive's in it;
//! - **hive hop**: the sender's `send_message` to `receiver@hive-b` on its socket (hive-a's core
//!   checks it, numbers it, posts it in the peer room as the sender's puppet) → hive-b's core has
//!   it from its homeserver, releases it in its stream's order, hands it to the receiver's
//!   harness (`next` answered). The same event is also timed to hive-b's operator's `/sync`
//!   (joined to the peer room) and to hive-b's core's transaction endpoint, which tells the
//!   hive's share from the homeservers'.
//!
//! Both hops start at a client request on hive-a and end when a client of hive-b's side has the
//! event pushed to it (a held long-poll answered: `/sync` for the operator, `next` for the
//! harness). The target: the hive adds at most [`TARGET_ADDED_P50_MS`] at the median.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use matrix_sdk::ruma::api::client::room::create_room;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::ruma::{OwnedServerName, RoomAliasId, RoomOrAliasId, ServerName};
use matrix_sdk::{Client, Room};
use serde::Serialize;
use tokio::sync::mpsc;

use super::{Deliveries, fake_harness, login, pct};
use crate::config::Config;
use crate::homeserver::{self, Layout, Synapse};
use crate::store::{Store, now_us};
use crate::wire::client::SocketClient;
use crate::wire::protocol::{Request, Response};

/// The hive that sends (it sorts first, so it creates the peer room).
pub const HIVE_A: &str = "hive-a";
/// The hive that receives.
pub const HIVE_B: &str = "hive-b";
/// The agent on hive-a that sends.
pub const SENDER: &str = "sender";
/// The agent on hive-b whose harness receives.
pub const RECEIVER: &str = "receiver";
/// The most the hive may add to the raw hop at the median (issue 12).
pub const TARGET_ADDED_P50_MS: f64 = 5.0;
/// Samples of each hop before measuring: the first sends pay for connections on every side.
const WARM_UP: usize = 5;
/// Pause between two samples.
const PAUSE: Duration = Duration::from_millis(50);
/// How long the peering may take to come up, and any one event to cross.
const WAIT: Duration = Duration::from_secs(120);

/// The section's figures, in ms.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FederationReport {
    pub samples: usize,
    /// hive-a's operator sends → hive-b's operator's `/sync` has it.
    pub raw_p50_ms: f64,
    pub raw_p90_ms: f64,
    pub raw_max_ms: f64,
    /// The sender's `send_message` → the receiver's harness on hive-b has it.
    pub hive_p50_ms: f64,
    pub hive_p90_ms: f64,
    pub hive_max_ms: f64,
    /// The same event → hive-b's operator's `/sync` has it (in the peer room).
    pub hive_seen_p50_ms: f64,
    /// The same event → hive-b's core's transaction endpoint has it.
    pub hive_txn_p50_ms: f64,
    /// hive-a's side alone: the operator's `PUT …/send` → 200 (raw), the sender's
    /// `send_message` → `sent` (hive), at p50.
    pub raw_send_p50_ms: f64,
    pub hive_send_p50_ms: f64,
    /// `hive_p50_ms - raw_p50_ms`.
    pub added_p50_ms: f64,
    /// `hive_p50_ms / raw_p50_ms`.
    pub ratio_p50: f64,
    /// `added_p50_ms <= TARGET_ADDED_P50_MS`.
    pub target_met: bool,
}

/// The samples of one run, in ms each, in any order.
#[derive(Debug, Default)]
pub struct Samples {
    pub raw: Vec<f64>,
    pub hive: Vec<f64>,
    pub hive_seen: Vec<f64>,
    pub hive_txn: Vec<f64>,
    pub raw_send: Vec<f64>,
    pub hive_send: Vec<f64>,
}

/// The report of `s`: percentiles of each series, and the hive hop against the raw one.
pub fn summarize(mut s: Samples) -> FederationReport {
    for v in [
        &mut s.raw,
        &mut s.hive,
        &mut s.hive_seen,
        &mut s.hive_txn,
        &mut s.raw_send,
        &mut s.hive_send,
    ] {
        v.sort_by(f64::total_cmp);
    }
    let added = pct(&s.hive, 50) - pct(&s.raw, 50);
    FederationReport {
        samples: s.hive.len().min(s.raw.len()),
        raw_p50_ms: pct(&s.raw, 50),
        raw_p90_ms: pct(&s.raw, 90),
        raw_max_ms: pct(&s.raw, 100),
        hive_p50_ms: pct(&s.hive, 50),
        hive_p90_ms: pct(&s.hive, 90),
        hive_max_ms: pct(&s.hive, 100),
        hive_seen_p50_ms: pct(&s.hive_seen, 50),
        hive_txn_p50_ms: pct(&s.hive_txn, 50),
        raw_send_p50_ms: pct(&s.raw_send, 50),
        hive_send_p50_ms: pct(&s.hive_send, 50),
        added_p50_ms: added,
        ratio_p50: pct(&s.hive, 50) / pct(&s.raw, 50),
        // NaN (no samples) is not met.
        target_met: added <= TARGET_ADDED_P50_MS,
    }
}

/// One of the two hives, running.
struct Hive {
    data: PathBuf,
    cfg: Config,
    synapse: Synapse,
    core: tokio::process::Child,
    creds: homeserver::OperatorCredentials,
}

/// A hive's name and the ports chosen for it before either starts (each names the other).
struct Id {
    hive: &'static str,
    federation: u16,
    agent: &'static str,
    agent_toml: String,
    /// Its `[[peers]]` line's `agents`.
    pairs: String,
}

impl Id {
    fn server_name(&self) -> String {
        format!("localhost:{}", self.federation)
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The hive.toml of `me`, peered with `peer`, its certificates in `certs`.
fn hive_toml(me: &Id, peer: &Id, certs: &Path, hs: u16, appservice: u16) -> String {
    let q = |name: &str| serde_json::json!(certs.join(name).display().to_string());
    format!(
        "[hive]\nname = \"{hive}\"\n\
         [homeserver]\nport = {hs}\nserver_name = \"{server}\"\n\
         [appservice]\nlisten = \"127.0.0.1:{appservice}\"\n\
         [web]\nenabled = false\n\
         [runtime]\nkind = \"external\"\n\
         [limits]\nmessages_per_minute = 6000\n\
         [federation]\nbind = [\"127.0.0.1\"]\ntls_cert = {cert}\ntls_key = {key}\nca = {ca}\n\
         [[peers]]\nhive = \"{peer_hive}\"\nserver_name = \"{peer_server}\"\nagents = [{pairs}]\n",
        hive = me.hive,
        server = me.server_name(),
        cert = q(&format!("{}.pem", me.hive)),
        key = q(&format!("{}.key", me.hive)),
        ca = q("ca.pem"),
        peer_hive = peer.hive,
        peer_server = peer.server_name(),
        pairs = me.pairs,
    )
}

/// Writes `me`'s hive under `dir/<hive>`, starts its Synapse and its core.
async fn provision(dir: &Path, venv: &Path, me: &Id, peer: &Id) -> anyhow::Result<Hive> {
    let root = dir.join(me.hive);
    let bots = root.join("bots");
    std::fs::create_dir_all(bots.join(me.agent))?;
    std::fs::write(bots.join(me.agent).join("agent.toml"), &me.agent_toml)?;
    let config = root.join("hive.toml");
    std::fs::write(
        &config,
        hive_toml(me, peer, &dir.join("certs"), free_port()?, free_port()?),
    )?;
    let cfg = Config::load(Some(&config))?;
    let data = root.join("data");
    let registration = crate::commands::c0re::prepare_data_dir(&cfg, &data)?;
    let layout = Layout::with_venv(&data, venv.to_owned());
    let overrides = format!(
        "{}\n{}",
        homeserver::TEST_OVERRIDES,
        homeserver::FEDERATION_TEST_OVERRIDES
    );
    let configs = homeserver::render_config(&layout, &cfg, &registration, Some(&overrides))?;
    let synapse = Synapse::start(&layout, &configs, &cfg.homeserver_url).await?;
    let creds = homeserver::ensure_operator(&data, &layout, &cfg).await?;
    let core = super::spawn_core(
        &std::env::current_exe()?,
        &config,
        &data,
        &bots,
        &root.join("c0re.log"),
    )?;
    let pid_file = crate::commands::pid_file(&data, "c0re");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pid_file.exists() {
        if Instant::now() > deadline {
            bail!(
                "{}'s hive-c0re did not become ready; see {}",
                me.hive,
                root.join("c0re.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Hive {
        data,
        cfg,
        synapse,
        core,
        creds,
    })
}

/// Runs the section in `dir` (two hives under it), `samples` of each hop, with Synapse from
/// `venv`.
pub async fn run(dir: &Path, venv: &Path, samples: usize) -> anyhow::Result<FederationReport> {
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs)?;
    let layout = Layout::with_venv(&certs, venv.to_owned());
    homeserver::ensure_installed(&layout).await?;
    homeserver::testca::make_certs(&layout, &certs, &[HIVE_A, HIVE_B])?;
    let silent = "[brain]\nkind = \"scripted\"\n[[brain.rules]]\nsilent = true\n";
    let a = Id {
        hive: HIVE_A,
        federation: free_port()?,
        agent: SENDER,
        agent_toml: format!("allowed_recipients = [\"{RECEIVER}@{HIVE_B}\"]\n{silent}"),
        pairs: format!("{{ local = \"{SENDER}\", remote = [\"{RECEIVER}\"] }}"),
    };
    let b = Id {
        hive: HIVE_B,
        federation: free_port()?,
        agent: RECEIVER,
        agent_toml: silent.to_owned(),
        pairs: format!("{{ local = \"{RECEIVER}\", remote = [\"{SENDER}\"] }}"),
    };
    let (ha, hb) = tokio::join!(provision(dir, venv, &a, &b), provision(dir, venv, &b, &a));
    let (ha, hb) = match (ha, hb) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), rest) => {
            if let Ok(h) = rest {
                h.stop().await;
            }
            return Err(e);
        }
        (Ok(h), Err(e)) => {
            h.stop().await;
            return Err(e);
        }
    };
    let result = measure(&ha, &hb, &b, samples).await;
    ha.stop().await;
    hb.stop().await;
    result
        .map(summarize)
        .with_context(|| format!("see {}/hive-*/c0re.log", dir.display()))
}

impl Hive {
    async fn stop(mut self) {
        crate::proc::stop(&mut self.core, Duration::from_secs(10)).await;
        self.synapse.stop().await;
    }
}

/// Joins `room` (an id or alias) as `client`, through `via`, retrying while the invite or the
/// room's state is on its way.
async fn join(
    client: &Client,
    room: &RoomOrAliasId,
    via: &[OwnedServerName],
) -> anyhow::Result<Room> {
    let deadline = Instant::now() + WAIT;
    loop {
        match client.join_room_by_id_or_alias(room, via).await {
            Ok(r) => return Ok(r),
            Err(e) if Instant::now() > deadline => {
                return Err(e).with_context(|| format!("cannot join {room}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Event id → when hive-b's operator's `/sync` returned it (µs), pushed as they come.
type Seen = mpsc::UnboundedReceiver<(String, i64)>;

/// hive-b's operator as a plain client: `/sync` long-polls back to back, each timeline event
/// timestamped when its response has arrived. Until the task is aborted.
async fn watch(
    homeserver: String,
    token: String,
    tx: mpsc::UnboundedSender<(String, i64)>,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let mut since: Option<String> = None;
    loop {
        let mut url = url::Url::parse(&format!("{homeserver}/_matrix/client/v3/sync"))?;
        url.query_pairs_mut()
            .append_pair("timeout", if since.is_some() { "10000" } else { "0" })
            .append_pair(
                "filter",
                r#"{"presence":{"types":[]},"account_data":{"types":[]}}"#,
            );
        if let Some(s) = &since {
            url.query_pairs_mut().append_pair("since", s);
        }
        let body = http
            .get(url)
            .bearer_auth(&token)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        let at = now_us();
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        if since.is_some() {
            let rooms = v["rooms"]["join"].as_object().into_iter().flatten();
            for (_, room) in rooms {
                for ev in room["timeline"]["events"].as_array().into_iter().flatten() {
                    if let Some(id) = ev["event_id"].as_str() {
                        // The receiver is gone only when the section is over.
                        let _ = tx.send((id.to_owned(), at));
                    }
                }
            }
        }
        since = Some(
            v["next_batch"]
                .as_str()
                .context("a /sync answer without next_batch")?
                .to_owned(),
        );
    }
}

/// Waits until `rx` has said `event_id`, keeping what else it said in `got`.
async fn wait_for(
    rx: &mut Seen,
    got: &mut HashMap<String, i64>,
    event_id: &str,
    what: &str,
) -> anyhow::Result<i64> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(t) = got.remove(event_id) {
            return Ok(t);
        }
        let (id, t) = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .with_context(|| format!("{what} never had {event_id}"))?
            .with_context(|| format!("{what} is gone"))?;
        got.insert(id, t);
    }
}

/// Waits until the receiver's harness has `event_id` (it gets only what the sender sends, in
/// order: anything before it is skipped).
async fn at_harness(
    rx: &mut mpsc::UnboundedReceiver<String>,
    event_id: &str,
) -> anyhow::Result<()> {
    loop {
        let got = tokio::time::timeout(WAIT, rx.recv())
            .await
            .with_context(|| format!("hive-b's harness never had {event_id}"))?
            .context("hive-b's harness is gone")?;
        if got == event_id {
            return Ok(());
        }
    }
}

/// The sender's `send_message` to the receiver: the event id, or the core's refusal.
async fn send(sender: &mut SocketClient, body: String) -> anyhow::Result<Result<String, Response>> {
    Ok(
        match sender
            .call(&Request::SendMessage {
                to: format!("{RECEIVER}@{HIVE_B}"),
                body,
            })
            .await?
        {
            Response::Sent { event_id } => Ok(event_id),
            other => Err(other),
        },
    )
}

async fn measure(a: &Hive, b: &Hive, b_id: &Id, samples: usize) -> anyhow::Result<Samples> {
    let socket = |h: &Hive, agent: &str| -> anyhow::Result<PathBuf> {
        let name = crate::agent_spec::AgentName::parse(agent)?;
        Ok(crate::wire::socket_path(&crate::c0re::Core::socket_dir(
            &h.data, &name,
        )))
    };
    // The receiver's harness on hive-b; its deliveries come back on `delivered`.
    let deliveries: Deliveries = Arc::default();
    let (tx, mut harness_rx) = mpsc::unbounded_channel::<String>();
    let harness = tokio::spawn(fake_harness(
        socket(b, RECEIVER)?,
        RECEIVER.to_owned(),
        deliveries.clone(),
        tx,
    ));
    let mut sender = loop {
        match SocketClient::connect(&socket(a, SENDER)?).await {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    sender
        .call(&Request::Hello {
            agent: SENDER.to_owned(),
            pid: std::process::id(),
        })
        .await?;
    let store_b = Store::open(&b.data.join("c0re.db"))?;
    let harness_time = |id: &str| -> anyhow::Result<i64> {
        Ok(deliveries.lock().unwrap_or_else(|p| p.into_inner())[id][0])
    };

    // The peering is up once hive-a accepts a message to the receiver (it needs the peer room
    // and hive-b's directory, which hive-b publishes only once it has joined) and hive-b's
    // harness has it.
    let deadline = Instant::now() + WAIT;
    let first = loop {
        match send(&mut sender, "is the peering up?".into()).await? {
            Ok(id) => break id,
            Err(e) if Instant::now() > deadline => bail!("the peering never came up: {e:?}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    };
    at_harness(&mut harness_rx, &first).await?;

    // hive-a's operator makes a federated room and invites hive-b's, who joins it and the peer
    // room (from which its /sync also sees the hive's events).
    let (op_a, op_b) = (login(&a.creds).await?, login(&b.creds).await?);
    let mut req = create_room::v3::Request::new();
    req.name = Some("bench raw federation".into());
    req.preset = Some(create_room::v3::RoomPreset::PublicChat);
    req.invite = vec![op_b.user_id().context("not logged in")?.to_owned()];
    let raw_a = op_a.create_room(req).await?;
    let via: OwnedServerName = ServerName::parse(a.cfg.server_name.as_str())?;
    join(&op_b, <&RoomOrAliasId>::from(raw_a.room_id()), &[via]).await?;
    let peer_alias = RoomAliasId::parse(format!("#peer-{HIVE_A}:{}", b_id.server_name()))?;
    join(&op_b, <&RoomOrAliasId>::from(&*peer_alias), &[]).await?;
    let (stx, mut seen_rx): (_, Seen) = mpsc::unbounded_channel();
    let watcher = tokio::spawn(watch(
        b.creds.homeserver.trim_end_matches('/').to_owned(),
        op_b.access_token()
            .context("hive-b's operator has no token")?,
        stx,
    ));
    let mut seen: HashMap<String, i64> = HashMap::new();

    let mut s = Samples::default();
    let result: anyhow::Result<()> = async {
        for i in 0..WARM_UP + samples {
            let warm = i < WARM_UP;
            // Raw: a plain client → a plain client.
            let t0 = now_us();
            let ev = raw_a
                .send(RoomMessageEventContent::text_plain(format!("raw {i}")))
                .await?
                .response
                .event_id;
            let sent = now_us();
            let t = wait_for(&mut seen_rx, &mut seen, ev.as_str(), "hive-b's operator").await?;
            if !warm {
                s.raw.push((t - t0) as f64 / 1000.0);
                s.raw_send.push((sent - t0) as f64 / 1000.0);
            }
            tokio::time::sleep(PAUSE).await;
            // The hive: the sender's socket → the receiver's harness.
            let t0 = now_us();
            let ev = send(&mut sender, format!("hive {i}"))
                .await?
                .map_err(|e| anyhow::anyhow!("hive-a refused a message: {e:?}"))?;
            let sent = now_us();
            at_harness(&mut harness_rx, &ev).await?;
            let t = wait_for(&mut seen_rx, &mut seen, &ev, "hive-b's operator").await?;
            let txn = store_b
                .received_us(&ev)?
                .with_context(|| format!("hive-b's core never recorded {ev}"))?;
            if !warm {
                s.hive.push((harness_time(&ev)? - t0) as f64 / 1000.0);
                s.hive_seen.push((t - t0) as f64 / 1000.0);
                s.hive_txn.push((txn - t0) as f64 / 1000.0);
                s.hive_send.push((sent - t0) as f64 / 1000.0);
            }
            tokio::time::sleep(PAUSE).await;
        }
        Ok(())
    }
    .await;
    harness.abort();
    watcher.abort();
    result.map(|()| s)
}

pub fn print(r: &FederationReport) {
    println!();
    println!(
        "federation ({} hops each, ms)                 p50      p90      max",
        r.samples
    );
    println!(
        "  raw: client on hive-a → client on hive-b  {:>7.2}  {:>7.2}  {:>7.2}",
        r.raw_p50_ms, r.raw_p90_ms, r.raw_max_ms
    );
    println!(
        "  hive: send_message → harness on hive-b    {:>7.2}  {:>7.2}  {:>7.2}",
        r.hive_p50_ms, r.hive_p90_ms, r.hive_max_ms
    );
    println!(
        "  added by the hive at p50                  {:>7.2}  (target ≤ {TARGET_ADDED_P50_MS:.0}: {})",
        r.added_p50_ms,
        if r.target_met { "met" } else { "NOT met" }
    );
    println!(
        "  ratio hive / raw at p50                   {:>7.3}",
        r.ratio_p50
    );
    println!(
        "  (the hive's event at p50: hive-b's core has it {:.2}, hive-b's client {:.2})",
        r.hive_txn_p50_ms, r.hive_seen_p50_ms
    );
    println!(
        "  (hive-a's send alone at p50: raw PUT {:.2}, send_message {:.2})",
        r.raw_send_p50_ms, r.hive_send_p50_ms
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hive_hop_is_reported_against_the_raw_hop() {
        struct Case {
            name: &'static str,
            raw: Vec<f64>,
            hive: Vec<f64>,
            added: f64,
            ratio: f64,
            met: bool,
        }
        let cases = [
            Case {
                name: "a few ms over, in any order",
                raw: vec![30.0, 10.0, 20.0],
                hive: vec![24.0, 12.0, 33.0],
                added: 4.0,
                ratio: 1.2,
                met: true,
            },
            Case {
                name: "exactly the target is met",
                raw: vec![20.0],
                hive: vec![25.0],
                added: 5.0,
                ratio: 1.25,
                met: true,
            },
            Case {
                name: "over the target",
                raw: vec![20.0, 20.0],
                hive: vec![25.5, 25.5],
                added: 5.5,
                ratio: 1.275,
                met: false,
            },
            Case {
                name: "faster than raw",
                raw: vec![20.0],
                hive: vec![19.0],
                added: -1.0,
                ratio: 0.95,
                met: true,
            },
        ];
        for c in cases {
            let r = summarize(Samples {
                raw: c.raw,
                hive: c.hive,
                ..Default::default()
            });
            assert!((r.added_p50_ms - c.added).abs() < 1e-9, "{}: {r:?}", c.name);
            assert!((r.ratio_p50 - c.ratio).abs() < 1e-9, "{}: {r:?}", c.name);
            assert_eq!(r.target_met, c.met, "{}", c.name);
        }
        let none = summarize(Samples::default());
        assert!(!none.target_met, "no samples meet no target");
        assert_eq!(none.samples, 0);
    }

    #[test]
    fn p90_and_max_come_from_the_sorted_samples() {
        let r = summarize(Samples {
            raw: (1..=10).rev().map(f64::from).collect(),
            hive: (11..=20).map(f64::from).collect(),
            hive_seen: vec![3.0, 1.0, 2.0],
            hive_txn: vec![7.0],
            raw_send: vec![4.0, 5.0, 3.0],
            hive_send: vec![9.0],
        });
        assert_eq!(
            (r.raw_p50_ms, r.raw_p90_ms, r.raw_max_ms),
            (6.0, 10.0, 10.0)
        );
        assert_eq!(
            (r.hive_p50_ms, r.hive_p90_ms, r.hive_max_ms),
            (16.0, 20.0, 20.0)
        );
        assert_eq!((r.hive_seen_p50_ms, r.hive_txn_p50_ms), (2.0, 7.0));
        assert_eq!((r.raw_send_p50_ms, r.hive_send_p50_ms), (4.0, 9.0));
        assert_eq!(r.samples, 10);
    }

    #[test]
    fn each_hive_names_the_other_as_its_peer() {
        let a = Id {
            hive: HIVE_A,
            federation: 1001,
            agent: SENDER,
            agent_toml: String::new(),
            pairs: "{ local = \"sender\", remote = [\"receiver\"] }".into(),
        };
        let b = Id {
            hive: HIVE_B,
            federation: 1002,
            agent: RECEIVER,
            agent_toml: String::new(),
            pairs: "{ local = \"receiver\", remote = [\"sender\"] }".into(),
        };
        let dir = tempfile::tempdir().unwrap();
        for f in ["hive-a.pem", "hive-a.key", "ca.pem"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        let toml = hive_toml(&a, &b, dir.path(), 1003, 1004);
        assert!(toml.contains("server_name = \"localhost:1002\""), "{toml}");
        let path = dir.path().join("hive.toml");
        std::fs::write(&path, &toml).unwrap();
        let cfg = Config::load(Some(&path)).unwrap();
        assert_eq!(cfg.server_name.as_str(), "localhost:1001");
        assert_eq!(cfg.peers.len(), 1);
        let p = &cfg.peers[0];
        assert_eq!(p.hive.as_str(), HIVE_B);
        assert_eq!(p.server_name.as_str(), "localhost:1002");
        let (s, r) = (
            crate::agent_spec::AgentName::parse(SENDER).unwrap(),
            crate::agent_spec::AgentName::parse(RECEIVER).unwrap(),
        );
        assert!(p.allows(&s, &r));
        assert_eq!(
            cfg.federation.as_ref().map(|f| f.port),
            Some(1001),
            "peers connect to the port in the server name"
        );
    }
}
