//! The approvals figures: an operator's ✅ → the approval is applying.

use super::*;

/// `args.approvals` rounds on agent `agent`: commit a change on its proposed side, file the
/// request as `hive config propose` does, wait for it to be posted, then time the ✅.
pub(super) async fn approval_rounds(
    args: &BenchArgs,
    cfg: &Config,
    data: &Path,
    client: &Client,
    agent: &str,
    store: &Store,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    use matrix_sdk::ruma::events::reaction::ReactionEventContent;
    use matrix_sdk::ruma::events::relation::Annotation;
    let alias = RoomAliasId::parse(format!("#hive-approvals:{}", cfg.server_name))?;
    let room = client
        .join_room_by_id_or_alias((&*alias).into(), &[])
        .await?;
    let name = crate::agent_spec::AgentName::parse(agent)?;
    let repo = crate::configrepo::ConfigRepo::new(data, &name);
    let (mut floor, mut hive) = (Vec::new(), Vec::new());
    for i in 0..args.approvals {
        let toml =
            format!("[brain]\nkind = \"scripted\"\n[[brain.rules]]\nsilent = true\n# round {i}\n");
        let sha = repo.commit_proposed(
            &[crate::configrepo::ConfigFile {
                path: "agent.toml".into(),
                executable: false,
                content: toml.into_bytes(),
            }],
            &format!("bench round {i}"),
        )?;
        let id =
            crate::c0re::approvals::file_apply_commit(data, cfg, "bench", agent, &sha, "bench")?
                .map_err(|e| anyhow::anyhow!("the bench's request was refused: {e}"))?;
        anyhow::ensure!(
            crate::c0re::control::wake_running_core(data),
            "hive-c0re's control socket did not answer"
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        let request = loop {
            if let Some(ev) = store.approval(id)?.and_then(|a| a.request_event) {
                break matrix_sdk::ruma::OwnedEventId::try_from(ev)?;
            }
            anyhow::ensure!(Instant::now() < deadline, "request #{id} was never posted");
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let t0 = now_us();
        let reaction = room
            .send(ReactionEventContent::new(Annotation::new(
                request,
                "✅".into(),
            )))
            .await?
            .response
            .event_id;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let a = store.approval(id)?.context("request vanished")?;
            match a.state {
                crate::store::ApprovalState::Applied => break,
                crate::store::ApprovalState::Failed => {
                    bail!("request #{id} failed: {}", a.reason.unwrap_or_default())
                }
                _ => {}
            }
            anyhow::ensure!(Instant::now() < deadline, "request #{id} was never applied");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let recv = store
            .received_us(reaction.as_str())?
            .context("the reaction was not recorded")?;
        let started = store
            .audit_log(100)?
            .into_iter()
            .find(|e| e.approval_id == Some(id) && e.action == "apply-start")
            .context("no apply-start in the audit trail")?
            .ts_us;
        floor.push((recv - t0) as f64 / 1000.0);
        hive.push((started - t0) as f64 / 1000.0);
    }
    floor.sort_by(f64::total_cmp);
    hive.sort_by(f64::total_cmp);
    Ok((floor, hive))
}
