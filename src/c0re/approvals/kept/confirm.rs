//! A purge's second confirmation: after the ✓ the request waits (`confirming`) until an
//! operator replies in its thread with exactly `purge <name>`.
//!
//! Rules (`decide::confirmation`, where every approvals decision is; its table test is below):
//! - only a reply in the thread of a purge request counts, and only one whose text (trimmed)
//!   is exactly `purge <name>`; anything else said in the thread is conversation: nothing;
//! - it must come from an approver (the same standing as a vote: a configured operator on this
//!   server with the power level, never an agent): from anyone else it is reported and ignored;
//! - it counts only while the request is `confirming` (after its ✓, before its time is up):
//!   before the ✓, or after the purge ended, it is reported and nothing is done.

use ruma::UserId;

use crate::c0re::Core;
use crate::c0re::approvals::decide::phrase;
use crate::store::{Approval, Confirmation};

impl Core {
    /// An approved purge: it now waits for its second confirmation, asked for in its thread.
    pub(in crate::c0re::approvals) async fn ask_purge_confirmation(
        &self,
        a: &Approval,
    ) -> anyhow::Result<()> {
        let ttl = (self.cfg().approval_ttl_secs as i64).saturating_mul(1_000_000);
        if self.store().ask_confirmation(a.id, ttl)? {
            self.react(a, "🔐").await;
            self.thread(
                a,
                &format!(
                    "🔐 Approved. To remove **{}**'s kept state for good, an operator replies in this thread with exactly `{}` before {} (the core's clock). Nothing is removed until then.",
                    a.agent,
                    phrase(&a.agent),
                    crate::store::utc(crate::store::now_us().saturating_add(ttl))
                ),
            )
            .await;
        }
        Ok(())
    }

    /// An approver's confirmation (`event`) of purge `a`: it is applied now, once.
    pub(in crate::c0re::approvals) async fn confirmed(
        &self,
        a: &Approval,
        by: &UserId,
        event: &str,
    ) -> anyhow::Result<()> {
        let required = self.cfg().approvals_required;
        let said = match self.store().confirm(a.id, by.as_str(), event, required)? {
            Confirmation::Confirmed => {
                self.thread(a, &format!("✓ Purge confirmed by {by}; purging."))
                    .await;
                let a = self
                    .store()
                    .approval(a.id)?
                    .ok_or_else(|| anyhow::anyhow!("request #{} vanished", a.id))?;
                self.apply_kept(a).await;
                return Ok(());
            }
            Confirmation::NotWaiting(now) => format!(
                "⚠️ {by}'s confirmation came too late: request #{} is {}; nothing was removed.",
                a.id,
                now.map_or("gone".to_owned(), |s| s.to_string())
            ),
            Confirmation::Short {
                approvals,
                required,
            } => format!(
                "⚠️ {by}'s confirmation is not enough: request #{} has {approvals} of {required} approvals, so it waits for approvals again; nothing was removed.",
                a.id
            ),
            Confirmation::Stale {
                filed_against,
                kept_by,
            } => format!(
                "⚠️ Request #{} is cancelled: it was filed against destroy #{filed_against}, but **{}** was revived since ({}); nothing was removed.",
                a.id,
                a.agent,
                kept_by.map_or("and is not kept now".to_owned(), |d| format!(
                    "and kept again by destroy #{d}: file a new purge"
                ))
            ),
        };
        self.thread(a, &said).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::c0re::approvals::decide::{Action, NotApprover, Outcome, confirmation};
    use crate::store::{ApprovalKind, ApprovalState};
    use ruma::OwnedUserId;

    fn purge(state: ApprovalState) -> Approval {
        Approval {
            id: 4,
            kind: ApprovalKind::Purge,
            agent: "echo".into(),
            sha: "0".repeat(40),
            requester: "hm1nd".into(),
            summary: String::new(),
            state,
            required: 1,
            created_us: 0,
            expires_us: 1,
            request_event: Some("$req".into()),
            decided_us: None,
            reason: None,
            deploy: None,
            complete: true,
            outcome_told: false,
        }
    }

    #[test]
    fn confirmation_table() {
        struct Case {
            name: &'static str,
            kind: ApprovalKind,
            state: ApprovalState,
            body: &'static str,
            approver: Option<Result<(), NotApprover>>,
            want: &'static str,
        }
        let user: OwnedUserId = "@echo:hs".try_into().unwrap();
        let agent = Some(Err(NotApprover::Agent {
            user: user.clone(),
            agent: crate::agent_spec::AgentName::parse("echo").unwrap(),
        }));
        let not_op = Some(Err(NotApprover::NotOperator { user }));
        use ApprovalState::{Applied, Confirming, Pending};
        let cases = [
            Case {
                name: "an approver's exact phrase confirms",
                kind: ApprovalKind::Purge,
                state: Confirming,
                body: "purge echo",
                approver: Some(Ok(())),
                want: "confirm",
            },
            Case {
                name: "surrounding blanks are fine",
                kind: ApprovalKind::Purge,
                state: Confirming,
                body: "  purge echo\n",
                approver: Some(Ok(())),
                want: "confirm",
            },
            Case {
                name: "the standing is asked for only when the phrase matches",
                kind: ApprovalKind::Purge,
                state: Confirming,
                body: "purge echo",
                approver: None,
                want: "needs standing",
            },
            Case {
                name: "an agent's confirmation never counts",
                kind: ApprovalKind::Purge,
                state: Confirming,
                body: "purge echo",
                approver: agent,
                want: "report",
            },
            Case {
                name: "nor a non-operator's",
                kind: ApprovalKind::Purge,
                state: Confirming,
                body: "purge echo",
                approver: not_op,
                want: "report",
            },
            Case {
                name: "another agent's name is not this purge",
                kind: ApprovalKind::Purge,
                state: Confirming,
                body: "purge argus",
                approver: Some(Ok(())),
                want: "nothing",
            },
            Case {
                name: "case matters",
                kind: ApprovalKind::Purge,
                state: Confirming,
                body: "Purge echo",
                approver: Some(Ok(())),
                want: "nothing",
            },
            Case {
                name: "a yes is conversation",
                kind: ApprovalKind::Purge,
                state: Confirming,
                body: "yes",
                approver: Some(Ok(())),
                want: "nothing",
            },
            Case {
                name: "before the ✓ it does not count",
                kind: ApprovalKind::Purge,
                state: Pending,
                body: "purge echo",
                approver: Some(Ok(())),
                want: "report",
            },
            Case {
                name: "after the purge it does not count",
                kind: ApprovalKind::Purge,
                state: Applied,
                body: "purge echo",
                approver: Some(Ok(())),
                want: "report",
            },
            Case {
                name: "only a purge is confirmed",
                kind: ApprovalKind::Destroy,
                state: Confirming,
                body: "purge echo",
                approver: Some(Ok(())),
                want: "nothing",
            },
        ];
        for c in cases {
            let mut a = purge(c.state);
            a.kind = c.kind;
            let got = match confirmation(&a, c.body, c.approver) {
                Outcome::Confirm { request } => {
                    assert_eq!(request.id, 4);
                    "confirm"
                }
                Outcome::NeedsStanding => "needs standing",
                Outcome::Report { action, .. } => {
                    assert_eq!(action, Action::Confirm, "{}", c.name);
                    "report"
                }
                Outcome::Nothing => "nothing",
                other => panic!("{}: {other:?}", c.name),
            };
            assert_eq!(got, c.want, "{}", c.name);
        }
    }
}
