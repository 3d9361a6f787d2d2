//! The approvals state machine's values (states, kinds, verdicts) and its pure rules: what
//! one reaction does to a request ([`tally`]) and what a withdrawn one undoes ([`reverts`]).
//! `Store::vote` and `Store::withdraw_vote` read the facts and write the answer in one
//! transaction; `c0re::approvals::decide` documents them with the rest of the rules.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalState {
    Pending,
    Approved,
    /// A purge, approved, waiting for the operator's second confirmation in its thread.
    Confirming,
    Applying,
    Applied,
    Failed,
    Denied,
    Expired,
    Cancelled,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Confirming => "confirming",
            Self::Applying => "applying",
            Self::Applied => "applied",
            Self::Failed => "failed",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }

    pub(super) fn parse(s: &str) -> rusqlite::Result<Self> {
        Ok(match s {
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "confirming" => Self::Confirming,
            "applying" => Self::Applying,
            "applied" => Self::Applied,
            "failed" => Self::Failed,
            "denied" => Self::Denied,
            "expired" => Self::Expired,
            "cancelled" => Self::Cancelled,
            other => {
                return Err(rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    format!("unknown approval state {other:?}").into(),
                ));
            }
        })
    }
}

impl std::fmt::Display for ApprovalState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ApprovalState {
    /// Whether nothing can happen to a request in this state any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Applied | Self::Failed | Self::Denied | Self::Expired | Self::Cancelled
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    Deny,
}

impl Verdict {
    /// As stored in `approval_votes.verdict` and written in the audit's `action`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Deny => "deny",
        }
    }

    pub(super) fn parse(s: &str) -> anyhow::Result<Self> {
        match s {
            "approve" => Ok(Self::Approve),
            "deny" => Ok(Self::Deny),
            other => anyhow::bail!("unknown verdict {other:?} in approval_votes"),
        }
    }
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalKind {
    /// Apply a config commit to an existing agent.
    ApplyCommit,
    /// Spawn a new agent from a config seeded from the template.
    InitConfig,
    /// Stop an agent and keep its state (`c0re::approvals::kept`).
    Destroy,
    /// Bring a kept agent back on its last applied config.
    Revive,
    /// Remove a kept agent's state, after a second confirmation.
    Purge,
}

impl ApprovalKind {
    /// As stored in `approvals.kind` and written in the audit's `action`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApplyCommit => "apply_commit",
            Self::InitConfig => "init_config",
            Self::Destroy => "destroy",
            Self::Revive => "revive",
            Self::Purge => "purge",
        }
    }

    pub(super) fn parse(s: &str) -> rusqlite::Result<Self> {
        match s {
            "apply_commit" => Ok(Self::ApplyCommit),
            "init_config" => Ok(Self::InitConfig),
            "destroy" => Ok(Self::Destroy),
            "revive" => Ok(Self::Revive),
            "purge" => Ok(Self::Purge),
            other => Err(rusqlite::Error::FromSqlConversionFailure(
                1,
                rusqlite::types::Type::Text,
                format!("unknown approval kind {other:?}").into(),
            )),
        }
    }
}

impl ApprovalKind {
    /// Whether the request is about an agent's life (destroy, revive, purge) rather than a
    /// config: its sha is the applied one at filing, and it changes no config.
    pub fn is_kept_state(self) -> bool {
        matches!(self, Self::Destroy | Self::Revive | Self::Purge)
    }
}

impl std::fmt::Display for ApprovalKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// The facts one reaction is counted against, read inside the vote's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ballot {
    /// This reaction event was counted before.
    pub duplicate: bool,
    pub state: ApprovalState,
    pub expires_us: i64,
    pub now_us: i64,
    pub verdict: Verdict,
    /// This voter's ✓ on the request is counted already (and not withdrawn).
    pub already_approved: bool,
    /// Distinct voters whose ✓ counts now, before this reaction.
    pub approvals: u32,
    /// The count recorded when the request was filed.
    pub filed_required: u32,
    /// The hive's configured count now: a floor under `filed_required`.
    pub hive_required: u32,
}

/// What one reaction does to a request (pure; `Store::vote` writes it):
/// - a reaction counted before is a duplicate; a request no longer `pending` is closed to it,
///   except that a purge waiting for its second confirmation (`confirming`) is still open to
///   an approver's ❌ (it denies: nothing is removed); a ✓ there is closed (it is approved);
/// - a request whose time is up (`now_us >= expires_us`) expires, whatever the reaction;
/// - a voter's second ✓ counts once; a ❌ denies at once;
/// - a ✓ approves when distinct ✓s reach `max(filed_required, hive_required)`, else it is
///   counted.
pub fn tally(b: &Ballot) -> VoteOutcome {
    if b.duplicate {
        return VoteOutcome::Duplicate;
    }
    let open = match b.state {
        ApprovalState::Pending => true,
        ApprovalState::Confirming => b.verdict == Verdict::Deny,
        _ => false,
    };
    if !open {
        return VoteOutcome::Closed(b.state);
    }
    if b.now_us >= b.expires_us {
        return VoteOutcome::Expired;
    }
    match b.verdict {
        Verdict::Approve if b.already_approved => VoteOutcome::AlreadyVoted,
        Verdict::Deny => VoteOutcome::Denied,
        Verdict::Approve => {
            let approvals = b.approvals.saturating_add(1);
            let required = b.filed_required.max(b.hive_required);
            if approvals >= required {
                VoteOutcome::Approved
            } else {
                VoteOutcome::Counted {
                    approvals,
                    required,
                }
            }
        }
    }
}

/// Whether withdrawing a `verdict` takes a request in `state` back to `pending`: only a ✓, only
/// while `approved` or (a purge) `confirming` (the action has not started), only if the ✓s
/// left (`remaining`) are below `required` (the hive's floor applied).
pub fn reverts(verdict: Verdict, state: ApprovalState, remaining: u32, required: u32) -> bool {
    verdict == Verdict::Approve
        && matches!(state, ApprovalState::Approved | ApprovalState::Confirming)
        && remaining < required
}

/// What one counted reaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteOutcome {
    /// This reaction event was counted before (a duplicated transaction).
    Duplicate,
    /// The request is no longer open.
    Closed(ApprovalState),
    /// The request's time ran out (it is now `expired`).
    Expired,
    /// This operator's ✓ is already counted.
    AlreadyVoted,
    /// Counted; more approvals are needed.
    Counted { approvals: u32, required: u32 },
    /// The request is now `approved`.
    Approved,
    /// The request is now `denied`.
    Denied,
}
