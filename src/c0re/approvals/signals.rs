//! One signal from `#hive-approvals`, from the queue to its effect: the facts gathered (the
//! request or question it is about, the sender's standing, the power level only when it
//! decides), [`decide::decide`] asked, its [`Outcome`] carried out. A signal that cannot be
//! read, or handled in time, is dead-lettered and said; the request it was about fails closed.

use anyhow::Context;
use ruma::UserId;

use super::decide::{self, Action, Outcome, PowerLevels, Sender, Standing};
use crate::c0re::Core;
use crate::c0re::rooms::RoomKey;
use crate::c0re::routing::ApprovalSignal;
use crate::store::{Approval, InboxItem, VoteOutcome};

impl Core {
    /// A queued signal that does not read as one: dead-lettered with the reason, and said in
    /// `#hive-approvals` (which request it was about cannot be known).
    pub(super) async fn unreadable_signal(
        &self,
        item: &InboxItem,
        e: &serde_json::Error,
    ) -> anyhow::Result<()> {
        tracing::error!(error = %e, event_id = %item.event_id, "unreadable approvals signal");
        self.store().fail(item.id, &format!("unreadable: {e}"))?;
        let text = format!(
            "☠️ an event from {} ({}) in the approvals queue could not be read ({e}); it is kept as a dead letter.",
            item.sender, item.event_id
        );
        self.notice(self.rooms().get(&RoomKey::Approvals), &text)
            .await;
        Ok(())
    }

    /// A reaction or redaction that could not be handled in [`MAX_SIGNAL_ATTEMPTS`] tries: kept
    /// in the queue database as dead, said in `#hive-approvals`, and the request it was about is
    /// failed closed (cancelled) rather than left to a later ✓.
    pub(super) async fn give_up_signal(&self, item: &InboxItem) -> anyhow::Result<()> {
        tracing::error!(event_id = %item.event_id, sender = %item.sender, "gave up an approvals event");
        let signal = match item.body.parse::<ApprovalSignal>() {
            Ok(s) => s,
            Err(e) => return self.unreadable_signal(item, &e).await,
        };
        let target = signal.target();
        let request = match self.store().approval_by_request_event(target)? {
            Some(a) => Some(a),
            // A redacted vote names the reaction: find its request through the vote.
            None => self.store().approval_of_vote(target)?,
        };
        let mut text = format!(
            "☠️ {} from {} ({}) could not be handled after {} attempts; it is kept as a dead letter.",
            signal.kind(),
            item.sender,
            item.event_id,
            item.attempts
        );
        if let Some(a) = request.filter(|a| !a.state.is_final())
            && self.store().cancel_approval(
                a.id,
                "hive-c0re",
                "a decision on it could not be processed",
            )?
        {
            text.push_str(&format!(
                " Request #{} is cancelled so nothing is applied without that decision: request it again.",
                a.id
            ));
        }
        match self.rooms().get(&RoomKey::Approvals) {
            Some(room) => self.notice(Some(room), &text).await,
            None => self.notice(None, &text).await,
        }
        Ok(())
    }

    /// Gathers the facts of one signal (event `event_id`), decides, and carries out the outcome.
    pub(super) async fn handle_signal(
        &self,
        event_id: &str,
        sender: &str,
        signal: &ApprovalSignal,
    ) -> anyhow::Result<()> {
        let sender = UserId::parse(sender).context("bad sender")?;
        let target = signal.target();
        let question = self.store().question_by_event(target)?;
        let request = self.store().approval_by_request_event(target)?;
        let mut facts = decide::Facts {
            signal,
            sender: &sender,
            question: question.as_ref(),
            request: request.as_ref(),
            sender_is_requester: request.as_ref().is_some_and(|a| {
                self.cfg().agent_of(&sender).map(|n| n.to_string()) == Some(a.requester.clone())
            }),
            approver: None,
        };
        let mut outcome = decide::decide(&facts);
        if outcome == Outcome::NeedsStanding {
            facts.approver = Some(self.approver(&sender).await?);
            outcome = decide::decide(&facts);
        }
        match outcome {
            Outcome::NeedsStanding => anyhow::bail!("the sender's standing was asked for twice"),
            Outcome::Nothing => {}
            Outcome::Report {
                action,
                request,
                what,
            } => self.report(&sender, action, request, &what).await,
            Outcome::Answer { question, answer } => self.answer(question, &answer, &sender).await,
            Outcome::Vote {
                request,
                verdict,
                key,
            } => {
                let voted = self.store().vote(
                    request.id,
                    event_id,
                    sender.as_str(),
                    verdict,
                    self.cfg().approvals_required,
                )?;
                self.counted(request, &sender, key, Action::from(verdict), voted)
                    .await;
            }
            Outcome::Cancel { request } => {
                if self
                    .store()
                    .cancel_approval(request.id, sender.as_str(), "request redacted")?
                {
                    self.notice(
                        None,
                        &format!(
                            "🗑️ Request #{} cancelled: {sender} redacted it.",
                            request.id
                        ),
                    )
                    .await;
                }
            }
            Outcome::Confirm { request } => self.confirmed(request, &sender, event_id).await?,
            Outcome::Withdraw { reaction } => {
                if let Some((a, reverted)) = self.store().withdraw_vote(
                    reaction,
                    sender.as_str(),
                    self.cfg().approvals_required,
                )? && reverted
                {
                    self.thread(
                        &a,
                        &format!("↩️ {sender} withdrew a ✓: waiting for approvals again."),
                    )
                    .await;
                }
            }
        }
        Ok(())
    }

    /// Says what a counted reaction did, where the operators look.
    async fn counted(
        &self,
        a: &Approval,
        sender: &UserId,
        key: &str,
        action: Action,
        voted: VoteOutcome,
    ) {
        match voted {
            VoteOutcome::Approved => {
                // Said without holding up the apply (the loop starts it right after this).
                let (c, a, text) = (
                    self.clone(),
                    a.clone(),
                    format!("✓ Approved by {sender}; applying."),
                );
                tokio::spawn(async move { c.thread(&a, &text).await });
            }
            VoteOutcome::Counted {
                approvals,
                required,
            } => {
                self.thread(
                    a,
                    &format!("✓ from {sender} counted: {approvals} of {required} approvals."),
                )
                .await;
            }
            VoteOutcome::Denied => {
                self.react(a, "❌").await;
                self.thread(a, &format!("❌ Denied by {sender}. Nothing was applied."))
                    .await;
            }
            VoteOutcome::Closed(state) => {
                self.report(
                    sender,
                    action,
                    Some(a),
                    &format!(
                        "reacted {key} to request #{} after it was {state}: ignored",
                        a.id
                    ),
                )
                .await;
            }
            VoteOutcome::Expired => {
                self.thread(
                    a,
                    &format!("⌛ Request #{} had expired: nothing done.", a.id),
                )
                .await;
            }
            VoteOutcome::Duplicate | VoteOutcome::AlreadyVoted => {}
        }
    }

    /// Whether `user` may decide approvals (`Err`: why not). The power level is fetched only
    /// when the rest of [`decide::standing`] holds.
    async fn approver(&self, user: &UserId) -> anyhow::Result<Result<(), decide::NotApprover>> {
        let cfg = self.cfg();
        let mut sender = Sender {
            user,
            agent: cfg
                .agent_of(user)
                .filter(|n| self.agents().get(n).is_some()),
            local: user.server_name() == cfg.server_name,
            operator: cfg.is_operator(user),
            power: None,
        };
        let min = cfg.approver_min_power_level;
        let mut standing = decide::standing(&sender, min);
        if standing == Standing::AskPowerLevel {
            sender.power = Some(self.power_level_in_approvals(user).await?);
            standing = decide::standing(&sender, min);
        }
        match standing {
            Standing::Approver => Ok(Ok(())),
            Standing::NotApprover(why) => Ok(Err(why)),
            Standing::AskPowerLevel => anyhow::bail!("{user}'s power level was asked for twice"),
        }
    }

    /// `user`'s power level in the approvals room: from the cache, or fetched (and cached).
    async fn power_level_in_approvals(&self, user: &UserId) -> anyhow::Result<i64> {
        let pl = match self.approvals().cached_power_levels() {
            Some(pl) => pl,
            None => {
                if crate::failpoint::fails("power-levels") {
                    anyhow::bail!("failpoint power-levels: the homeserver is away");
                }
                let room = self
                    .rooms()
                    .get(&RoomKey::Approvals)
                    .context("no approvals room")?;
                let pl = PowerLevels::from_content(&self.power_levels(&room).await?);
                self.approvals().cache_power_levels(pl.clone());
                pl
            }
        };
        Ok(pl.of(user))
    }
}
