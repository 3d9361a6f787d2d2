//! Why a request is refused before an operator is asked, and the pure checks that say so: what
//! filing (`filing.rs`), a spawn's files (`spawn_files.rs`), a rollback and the kept-state
//! requests (`kept.rs`) all refuse with. A leaf: it knows the store and the config, never the
//! filing.

use crate::agent_spec::{AgentName, NameError};
use crate::c0re::limits;
use crate::config::{Config, ProviderRefusal};
use crate::configrepo::CommitError;

/// Most bytes of a request's summary (it is shown in the request; the config carries the rest).
pub const MAX_SUMMARY: usize = 1000;
/// Most bytes of an agent's question for the operators.
const MAX_QUESTION: usize = 4000;
/// Most options of a question (one keycap each), and most bytes of one.
const MAX_OPTIONS: usize = 9;
const MAX_OPTION: usize = 200;

/// Why a request (or a question) is refused before it reaches the operators. The texts are
/// what the requester reads, in `#hive-c0re` and in the tool's answer.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Rate(#[from] limits::Refused),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("{0} is already an agent of this hive")]
    AlreadyAnAgent(AgentName),
    #[error("{0} is not an agent of this hive")]
    NotAnAgent(AgentName),
    #[error("the summary is {0} bytes; at most {MAX_SUMMARY} (the config itself carries the rest)")]
    Summary(usize),
    /// Not a full commit id (`configrepo::parse_sha`'s reason).
    #[error("{0}")]
    Sha(CommitError),
    #[error("{0} is listed in approvals.managers: a manager cannot be spawned by a request")]
    Manager(AgentName),
    #[error("{0} is the appservice's own user")]
    AppserviceUser(ruma::OwnedUserId),
    #[error("{0} is an operator's name")]
    OperatorName(AgentName),
    /// The commit could not be snapshotted into the core's repo.
    #[error("{0:#}")]
    Snapshot(anyhow::Error),
    /// The commit's files could not be read (`ConfigRepo::read_commit`'s reason).
    #[error("{0}")]
    Unreadable(CommitError),
    #[error("its agent.toml does not validate: {0}")]
    Invalid(CommitError),
    #[error("its agent.toml asks for what hive.toml does not grant: {0}")]
    NotGrantable(ProviderRefusal),
    #[error("{0} is already applied")]
    AlreadyApplied(String),
    /// The history could not be read to see whether the commit fast-forwards.
    #[error("{0:#}")]
    History(anyhow::Error),
    #[error("{sha} does not fast-forward the applied config; base the change on {applied}")]
    NotFastForward { sha: String, applied: String },
    #[error("the question must be 1 to {MAX_QUESTION} bytes")]
    Question,
    #[error("at most {MAX_OPTIONS} options, each 1 to {MAX_OPTION} bytes")]
    Options,
    /// A rollback to a deploy the agent never had.
    #[error(
        "{agent} has no deploy/{deploy}; its latest is deploy/{latest} (config_log lists them)"
    )]
    UnknownDeploy {
        agent: AgentName,
        deploy: u64,
        latest: u64,
    },
    /// A rollback to the files the agent runs already.
    #[error("deploy/{deploy} has the same files as {agent}'s applied config: nothing to roll back")]
    NothingToRollBack { agent: AgentName, deploy: u64 },
    /// A destroy, revive or purge that cannot be asked for.
    #[error(transparent)]
    Kept(#[from] KeptRefusal),
}

/// Why a request was refused before it reached the operator, as its requester reads it (the
/// socket's and the tool's answer): a [`Refusal`], or the internal failure that stopped the
/// filing.
#[derive(Debug, thiserror::Error)]
pub enum RequestRefused {
    /// The request itself was refused.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The filing failed inside the core (the store, the config repo, a task).
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

/// Why a destroy, revive or purge is refused before an operator is asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeptRefusal {
    #[error("{0} is not an agent of this hive")]
    NotAnAgent(AgentName),
    #[error("{0} is kept already (destroyed): revive it or purge it")]
    AlreadyKept(AgentName),
    #[error("{0} is not kept: only a destroyed agent can be {1}")]
    NotKept(AgentName, &'static str),
    #[error("{0} is a manager (approvals.managers): a request cannot destroy it")]
    Manager(AgentName),
    #[error(
        "{0}'s harness is started by someone else (runtime = \"external\" in hive.toml): the core cannot stop it, so it cannot destroy it"
    )]
    External(AgentName),
    #[error("{0}'s directory is gone already: it is purged, and no longer kept")]
    AlreadyPurged(AgentName),
    #[error("{0} is kept (destroyed): revive it first")]
    Kept(AgentName),
}

/// What an agent's config may not grant itself, checked against the hive's config (the
/// operator's): a model provider hive.toml does not declare, of another kind, or a model it
/// does not allow. (An agent with no provider at all is not refused: it says it cannot think.)
pub fn grantable(cfg: &Config, spec: &crate::agent_spec::AgentSpec) -> Result<(), Refusal> {
    match cfg.provider_for(&spec.brain) {
        Ok(_) => Ok(()),
        Err(e) if e.is_warning() => Ok(()),
        Err(e) => Err(Refusal::NotGrantable(e)),
    }
}

/// A request's summary: one short text, shown to the operators as written.
pub(in crate::c0re::approvals) fn check_summary(summary: &str) -> Result<(), Refusal> {
    if summary.len() > MAX_SUMMARY {
        return Err(Refusal::Summary(summary.len()));
    }
    Ok(())
}

/// An agent's question: 1 to 4000 bytes (trimmed), at most 9 options of 1 to 200 bytes each.
pub(in crate::c0re::approvals) fn check_question(
    question: &str,
    options: &[String],
) -> Result<(), Refusal> {
    let question = question.trim();
    if question.is_empty() || question.len() > MAX_QUESTION {
        return Err(Refusal::Question);
    }
    if options.len() > MAX_OPTIONS
        || options
            .iter()
            .any(|o| o.trim().is_empty() || o.len() > MAX_OPTION)
    {
        return Err(Refusal::Options);
    }
    Ok(())
}

/// Whether `name` may be spawned: never a manager's name (a spawned agent would get the
/// manager's powers from hive.toml), nor an identity of the hive's own (the appservice's user,
/// an operator's localpart on this server).
pub fn spawnable(cfg: &Config, name: &AgentName) -> Result<(), Refusal> {
    if cfg.managers.contains(name) {
        return Err(Refusal::Manager(name.clone()));
    }
    let user = cfg.agent_user_id(name);
    if user == cfg.bot_user_id() {
        return Err(Refusal::AppserviceUser(user));
    }
    if cfg.operators.contains(&user)
        || cfg
            .operators
            .iter()
            .any(|o| o.server_name() == cfg.server_name && o.localpart() == name.as_str())
    {
        return Err(Refusal::OperatorName(name.clone()));
    }
    Ok(())
}

/// A config request (spawn, apply, rollback) for `name` is refused while it is kept: a spawn
/// cannot reuse a kept name, and a kept agent's config changes only after a revive. The outer
/// error is the store's.
pub fn refuse_kept(
    store: &crate::store::Store,
    name: &AgentName,
) -> anyhow::Result<Result<(), Refusal>> {
    Ok(match store.kept_agent(name.as_str())? {
        Some(_) => Err(KeptRefusal::Kept(name.clone()).into()),
        None => Ok(()),
    })
}
