//! What the in-process model brains (`openai`, `anthropic`) share: the tools they offer (the
//! hive's and the declared MCP servers'), the memory of past exchanges, the step cap, and how a
//! turn ends (the reply said, remembered; a budget or step stop said in the room). Each backend
//! only speaks its API's shape.

use std::path::Path;

use serde_json::Value;

use super::{BrainError, Tools};
use crate::agent_spec::AgentSpec;
use crate::wire::protocol::{ErrorCode, Message, ToolInfo};

/// One agent's model brain, whatever the API.
pub struct ModelBrain {
    agent: String,
    prompt: Option<String>,
    /// Model calls per message (the core's `calls_per_message` cap, checked here too).
    pub max_steps: u64,
    toolbox: Toolbox,
    history: History,
}

/// What a turn starts from.
pub struct Turn {
    /// The system prompt: `prompt.md`, who the agent is, unavailable servers.
    pub system: String,
    /// The tools on offer.
    pub tools: Vec<ToolInfo>,
    /// Past exchanges, oldest first.
    pub history: Vec<Exchange>,
    /// This message as the model sees it.
    pub user: String,
}

impl ModelBrain {
    pub fn new(spec: &AgentSpec, state_dir: &Path) -> Self {
        let max_steps = spec
            .brain
            .limits()
            .and_then(|l| l.calls_per_message)
            .unwrap_or(crate::wire::protocol::DEFAULT_CALLS_PER_MESSAGE);
        Self {
            agent: spec.name.to_string(),
            prompt: spec.prompt.clone(),
            max_steps: max_steps.max(1),
            toolbox: Toolbox::new(spec, state_dir),
            history: History::load(state_dir, spec.brain.history().unwrap_or(DEFAULT_HISTORY)),
        }
    }

    pub async fn begin(
        &mut self,
        msg: &Message,
        tools: &mut Tools<'_>,
    ) -> Result<Turn, BrainError> {
        let (offered, note) = self.toolbox.offer(tools).await?;
        Ok(Turn {
            system: format!(
                "{}\n\nYou are {}, an agent of a hive on Matrix. Each user message is one message to you; \
                 your final answer is posted as your reply. Use the tools to act.{note}",
                self.prompt.clone().unwrap_or_default(),
                self.agent
            ),
            tools: offered,
            history: self.history.exchanges().cloned().collect(),
            user: super::prompt_of(msg),
        })
    }

    /// One model call through the core; `None` when the agent is over budget (said in the room:
    /// the turn is over).
    pub async fn call(
        &self,
        tools: &mut Tools<'_>,
        request: Value,
    ) -> Result<Option<Value>, BrainError> {
        match tools.model(request).await? {
            Ok(r) => Ok(Some(r)),
            Err(e) if e.code == ErrorCode::Budget => {
                tools.stop_over_budget(&e.message).await?;
                Ok(None)
            }
            Err(e) => Err(BrainError::Failed(format!("model call failed: {e}"))),
        }
    }

    /// Runs one tool call: (result text, is_error).
    pub async fn run_tool(
        &mut self,
        tools: &mut Tools<'_>,
        name: &str,
        arguments: Value,
    ) -> Result<(String, bool), BrainError> {
        self.toolbox.run(tools, name, arguments).await
    }

    /// Ends the turn with the model's final text: said in the room (with a note naming declared
    /// servers that did not start) and remembered.
    pub async fn finish(
        &mut self,
        tools: &mut Tools<'_>,
        turn: Turn,
        text: &str,
    ) -> Result<(), BrainError> {
        let text = text.trim();
        let said = self.toolbox.reply(text);
        if !said.is_empty() {
            tools.say(&said).await?;
        }
        self.history.push(turn.user, reply_or_silence(text));
        Ok(())
    }

    /// Ends a turn that used every model call it had.
    pub async fn give_up(&mut self, tools: &mut Tools<'_>, turn: Turn) -> Result<(), BrainError> {
        let stop = format!(
            "I stopped: this message needed more than {} model calls.",
            self.max_steps
        );
        tools.say(&stop).await?;
        self.history.push(turn.user, stop);
        Ok(())
    }
}

/// The system prompt of a `!compact`'s one model call.
pub const SUMMARY_SYSTEM: &str = "You compact an agent's memory. Summarise the conversation you are given (messages to the agent and its replies) in a few short paragraphs: who asked what, what was decided and done, what is still open. Write only the summary.";
/// What the summary stands in for in the history (the message side of its one exchange).
pub const SUMMARY_USER: &str = "(The operator compacted my memory with `!compact`: a summary of the conversation so far follows.)";

impl ModelBrain {
    /// `!new-session`: every exchange forgotten (the history saved empty). Failed, and the
    /// history as it was, if it cannot be saved.
    pub fn new_session(&mut self) -> Result<String, BrainError> {
        let n = self.history.replace(Vec::new()).map_err(unsaved)?;
        Ok(format!(
            "Started a new session: I forgot our {n} earlier exchange(s)."
        ))
    }

    /// `!compact`'s input: the history as one transcript for the summary call; `None` when
    /// there is nothing to compact.
    pub fn transcript(&self) -> Option<String> {
        let parts: Vec<String> = self
            .history
            .exchanges()
            .map(|x| format!("{}\n\n{} replied:\n{}", x.user, self.agent, x.reply))
            .collect();
        (!parts.is_empty()).then(|| parts.join("\n\n---\n\n"))
    }

    /// `!compact`'s result: the history replaced by one exchange holding `summary` (an empty
    /// summary leaves the history as it was). Failed, and the history as it was, if it cannot
    /// be saved.
    pub fn compacted(&mut self, summary: &str) -> Result<String, BrainError> {
        let summary = summary.trim();
        if summary.is_empty() {
            return Ok("The model gave no summary: my history is unchanged.".into());
        }
        let n = self
            .history
            .replace(vec![Exchange {
                user: SUMMARY_USER.into(),
                reply: summary.into(),
            }])
            .map_err(unsaved)?;
        Ok(format!(
            "Compacted my history: {n} exchange(s) replaced by a summary."
        ))
    }

    /// What a compact answers when the history is empty.
    pub fn nothing_to_compact() -> String {
        "Nothing to compact: my history is empty.".into()
    }
}

/// A history that could not be saved, as the brain's failure.
fn unsaved(e: anyhow::Error) -> BrainError {
    BrainError::Failed(format!("cannot save history.json: {e:#}"))
}

/// The tools a model-backed brain offers in a turn: the hive's (run by the core) and those of
/// the MCP servers the agent declares (run in the harness, see `mcp::client`).
pub struct Toolbox {
    servers: crate::mcp::client::DeclaredServers,
    /// The declared servers that could not be started this turn, for the reply.
    unavailable: Option<String>,
}

impl Toolbox {
    fn new(spec: &AgentSpec, state_dir: &Path) -> Self {
        Self {
            servers: crate::mcp::client::DeclaredServers::new(spec, state_dir),
            unavailable: None,
        }
    }

    /// Every tool on offer this turn, and a line for the system prompt naming declared servers
    /// that could not be started (empty when all run).
    async fn offer(
        &mut self,
        tools: &mut Tools<'_>,
    ) -> Result<(Vec<ToolInfo>, String), BrainError> {
        let mut all = tools.list_tools().await?;
        self.unavailable = None;
        if self.servers.is_empty() {
            return Ok((all, String::new()));
        }
        let offered = self.servers.offer().await;
        all.extend(offered.tools);
        let note = if offered.unavailable.is_empty() {
            String::new()
        } else {
            let list = offered
                .unavailable
                .iter()
                .map(|(name, why)| format!("{name} ({why})"))
                .collect::<Vec<_>>()
                .join("; ");
            let names: Vec<String> = offered
                .unavailable
                .iter()
                .map(|(name, _)| format!("`{name}`"))
                .collect();
            self.unavailable = Some(format!(
                "_(These MCP servers of mine did not start, so I worked without their tools: {}; the harness log says why.)_",
                names.join(", ")
            ));
            format!(
                "\n\nThese MCP servers of yours are unavailable this turn, so their tools are missing: {list}."
            )
        };
        Ok((all, note))
    }

    /// The turn's final reply, with a note naming declared servers that did not start.
    fn reply(&self, text: &str) -> String {
        match (&self.unavailable, text.is_empty()) {
            (None, _) => text.to_owned(),
            (Some(note), true) => note.clone(),
            (Some(note), false) => format!("{text}\n\n{note}"),
        }
    }

    /// Runs one tool call: (result text, is_error).
    async fn run(
        &mut self,
        tools: &mut Tools<'_>,
        name: &str,
        arguments: serde_json::Value,
    ) -> Result<(String, bool), BrainError> {
        if crate::mcp::client::DeclaredServers::owns(name) {
            Ok(self.servers.call(name, arguments).await)
        } else {
            tools.call_tool(name, arguments).await
        }
    }
}

/// What an in-process model brain remembers between messages: the last exchanges (message and
/// final reply), kept in the agent's state dir so they survive restarts and rebuilds. Tool calls
/// are not kept (their effect is in the reply, the notes, the rooms).
pub struct History {
    path: std::path::PathBuf,
    keep: usize,
    exchanges: std::collections::VecDeque<Exchange>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Exchange {
    /// The message as the model saw it (`<sender> wrote:\n<body>`).
    pub user: String,
    /// What the agent said.
    pub reply: String,
}

/// The reply remembered for a turn that said nothing (model APIs refuse empty messages).
fn reply_or_silence(text: &str) -> String {
    if text.is_empty() {
        "(I said nothing.)".into()
    } else {
        text.to_owned()
    }
}

/// Exchanges kept unless the config says otherwise.
pub const DEFAULT_HISTORY: usize = 10;
/// The history's size in characters, at most; the oldest exchanges go first.
const MAX_HISTORY_CHARS: usize = 32 * 1024;

impl History {
    /// Loads `history.json` from the state dir; a file that cannot be read starts afresh (and
    /// is kept aside as `history.json.bad`), it never stops the agent.
    pub fn load(state_dir: &Path, keep: usize) -> Self {
        let path = state_dir.join("history.json");
        let exchanges = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "history.json is unreadable; starting afresh");
                    let aside = path.with_extension("json.bad");
                    if let Err(e) = std::fs::rename(&path, &aside) {
                        tracing::warn!(error = %e, path = %aside.display(), "cannot keep the unreadable history aside");
                    }
                    Default::default()
                }
            },
            Err(_) => Default::default(),
        };
        let mut h = Self {
            path,
            keep,
            exchanges,
        };
        h.trim();
        h
    }

    pub fn exchanges(&self) -> impl Iterator<Item = &Exchange> {
        self.exchanges.iter()
    }

    /// Remembers one exchange and saves the history.
    pub fn push(&mut self, user: String, reply: String) {
        if self.keep == 0 {
            return;
        }
        self.exchanges.push_back(Exchange { user, reply });
        self.trim();
        // The turn's reply is said already: a history not saved is logged, the turn stands.
        if let Err(e) = self.save() {
            tracing::warn!(error = %format!("{e:#}"), "cannot save history.json");
        }
    }

    /// Replaces every exchange with `exchanges` and saves the history; how many there were.
    /// If it cannot be saved, nothing changes (in memory either) and the error says why.
    pub fn replace(&mut self, exchanges: Vec<Exchange>) -> anyhow::Result<usize> {
        let mut next = History {
            path: self.path.clone(),
            keep: self.keep,
            exchanges: exchanges.into(),
        };
        next.trim();
        next.save()?;
        let before = self.exchanges.len();
        *self = next;
        Ok(before)
    }

    fn save(&self) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec(&self.exchanges).expect("exchanges serialize");
        crate::fsutil::write_atomic(&self.path, &bytes, 0o600)
    }

    fn trim(&mut self) {
        while self.exchanges.len() > self.keep
            || self
                .exchanges
                .iter()
                .map(|x| x.user.len() + x.reply.len())
                .sum::<usize>()
                > MAX_HISTORY_CHARS
        {
            self.exchanges.pop_front();
        }
    }
}

/// A turn for the model brains' tests: system "be brief", one tool `write_notes` taking
/// `input_schema`, `history` past exchanges (`q<i>` → `a<i>`), the message "now".
#[cfg(test)]
pub(crate) fn sample_turn(history: usize, input_schema: serde_json::Value) -> Turn {
    Turn {
        system: "be brief".into(),
        tools: vec![ToolInfo {
            name: "write_notes".into(),
            description: "Writes notes.".into(),
            input_schema,
        }],
        history: (0..history)
            .map(|i| Exchange {
                user: format!("op wrote:\nq{i}"),
                reply: format!("a{i}"),
            })
            .collect(),
        user: "op wrote:\nnow".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_the_last_exchanges_across_loads() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = History::load(dir.path(), 2);
        for i in 0..3 {
            h.push(format!("op wrote:\nq{i}"), format!("a{i}"));
        }
        let again = History::load(dir.path(), 2);
        let replies: Vec<&str> = again.exchanges().map(|x| x.reply.as_str()).collect();
        assert_eq!(replies, ["a1", "a2"]);
        // A smaller limit on the next start trims; a huge exchange pushes out the rest.
        assert_eq!(History::load(dir.path(), 1).exchanges().count(), 1);
        let mut h = History::load(dir.path(), 5);
        h.push("x".repeat(MAX_HISTORY_CHARS - 1), "y".into());
        assert_eq!(h.exchanges().count(), 1);
        // A damaged file starts afresh and is kept aside.
        std::fs::write(dir.path().join("history.json"), "{nope").unwrap();
        assert_eq!(History::load(dir.path(), 5).exchanges().count(), 0);
        assert!(dir.path().join("history.json.bad").is_file());
        // 0 keeps nothing.
        let mut off = History::load(dir.path(), 0);
        off.push("a".into(), "b".into());
        assert_eq!(History::load(dir.path(), 5).exchanges().count(), 0);
    }

    /// `!new-session` and `!compact` change what the next start loads.
    #[test]
    fn a_new_session_and_a_compact_are_saved() {
        let dir = tempfile::tempdir().unwrap();
        let spec = crate::agent_spec::AgentSpec::parse(
            crate::agent_spec::AgentName::parse("iris").unwrap(),
            dir.path(),
            &dir.path().join("agent.toml"),
            "[brain]\nkind = \"openai\"\nmodel = \"m\"\n",
        )
        .unwrap();
        let mut brain = ModelBrain::new(&spec, dir.path());
        assert_eq!(brain.transcript(), None);
        brain.history.push("op wrote:\nq1".into(), "a1".into());
        brain.history.push("op wrote:\nq2".into(), "a2".into());
        let t = brain.transcript().unwrap();
        assert!(t.contains("op wrote:\nq1\n\niris replied:\na1"), "{t}");
        assert!(t.contains("a2"), "{t}");
        assert!(brain.compacted("  ").unwrap().contains("unchanged"));
        assert_eq!(History::load(dir.path(), 5).exchanges().count(), 2);
        assert!(
            brain
                .compacted("they asked twice")
                .unwrap()
                .contains("2 exchange(s)")
        );
        let loaded: Vec<Exchange> = History::load(dir.path(), 5).exchanges().cloned().collect();
        assert_eq!(
            loaded,
            [Exchange {
                user: SUMMARY_USER.into(),
                reply: "they asked twice".into()
            }]
        );
        assert!(brain.new_session().unwrap().contains("1 earlier"));
        assert_eq!(History::load(dir.path(), 5).exchanges().count(), 0);
        assert!(dir.path().join("history.json").is_file());

        // A history that cannot be saved (its file's place is a directory): the command fails,
        // and the history is as it was, in memory and on disk.
        brain.history.push("op wrote:\nq3".into(), "a3".into());
        std::fs::remove_file(dir.path().join("history.json")).unwrap();
        std::fs::create_dir(dir.path().join("history.json")).unwrap();
        let failed = |r: Result<String, BrainError>| match r {
            Err(BrainError::Failed(why)) => why,
            other => panic!("not failed: {other:?}"),
        };
        assert!(failed(brain.new_session()).starts_with("cannot save history.json"));
        assert!(failed(brain.compacted("short")).starts_with("cannot save history.json"));
        assert_eq!(brain.history.exchanges().count(), 1, "unchanged in memory");
    }
}
