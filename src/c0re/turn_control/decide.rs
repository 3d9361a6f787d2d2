//! What an operator's line in an agent's inbox is: a command for the core, a control message
//! for the agent's brain, a usage answer, or a plain message. A pure function over data
//! ([`classify`]), with its table of cases below; and the one edit `!model` makes to an
//! `agent.toml` ([`set_brain_model`]), pure too.
//!
//! Rules of [`classify`]:
//! - only in an agent's inbox (`#agent-<name>`), only from an operator
//!   ([`SenderKind::Operator`]): other agents post there (`send_message`), local users and
//!   remote users may too, and whatever they type (`!cancel` too) is a plain message for the
//!   agent, never a command (nobody but an operator is told anything about commands);
//! - the body's first word, exactly (case matters), is one of the four commands:
//!   - `!cancel` → the core stops the turn running now ([`CoreCommand::Cancel`]);
//!   - `!model <id>` → the core files a config change of the brain's model
//!     ([`CoreCommand::Model`]); the id is a bounded, plain token ([`ModelId`]);
//!   - `!compact`, `!new-session` → a control message for the brain ([`Control`]), queued in
//!     order with the agent's other messages, never shown to the model as a prompt;
//! - one of the four words with bad arguments (`!cancel now`, `!model`, `!model a b`, a bad id)
//!   → [`InboxLine::Usage`], answered by the core;
//! - anything else, `!foo` too, is a plain message (operators talk to models: their text is
//!   never eaten).

use crate::agent_spec::AgentName;
use crate::c0re::routing::{RoomRole, SenderKind};
use crate::wire::protocol::Control;

/// What the core does itself, at once (never queued behind the turn it may stop).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreCommand {
    /// `!cancel`: stop the agent's running turn now; its message is done.
    Cancel,
    /// `!model <id>`: file an approval request changing the brain's model.
    Model(ModelId),
}

/// What an inbox line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboxLine {
    /// For the core (queued under the control queue, answered in the inbox).
    Core(AgentName, CoreCommand),
    /// For the agent's brain, in order with its messages.
    Brain(Control),
    /// One of the commands with bad arguments: the core answers with this.
    Usage(AgentName, String),
    /// A message for the agent like any other.
    Plain,
}

impl InboxLine {
    /// Whether the core, not the agent, answers it.
    pub fn for_the_core(&self) -> bool {
        matches!(self, InboxLine::Core(..) | InboxLine::Usage(..))
    }
}

/// The commands an operator may type in an agent's inbox, for a usage answer.
pub const USAGE: &str = "Commands in an agent's room (operators only):\n\
- `!cancel`: stop its running turn now (the message counts as done)\n\
- `!compact`: shrink its context (a summary replaces it)\n\
- `!new-session`: forget its context\n\
- `!model <id>`: ask to change its brain's model (an approval request)";

/// What `body`, sent by `sender` in a room of `room`'s role, is (the rules are in the module
/// doc).
pub fn classify(body: &str, room: &RoomRole, sender: &SenderKind) -> InboxLine {
    let (RoomRole::Inbox(owner), SenderKind::Operator) = (room, sender) else {
        return InboxLine::Plain;
    };
    let mut words = body.split_whitespace();
    let Some(first) = words.next() else {
        return InboxLine::Plain;
    };
    let rest: Vec<&str> = words.collect();
    let usage = |why: String| InboxLine::Usage(owner.clone(), format!("{why}\n\n{USAGE}"));
    let no_args = |line: InboxLine| {
        if rest.is_empty() {
            line
        } else {
            usage(format!("`{first}` takes no arguments."))
        }
    };
    match first {
        "!cancel" => no_args(InboxLine::Core(owner.clone(), CoreCommand::Cancel)),
        "!compact" => no_args(InboxLine::Brain(Control::Compact)),
        "!new-session" => no_args(InboxLine::Brain(Control::NewSession)),
        "!model" => match rest[..] {
            [id] => match ModelId::parse(id) {
                Ok(id) => InboxLine::Core(owner.clone(), CoreCommand::Model(id)),
                Err(e) => usage(format!("`!model`: {e}.")),
            },
            _ => usage("`!model` takes one model id, e.g. `!model claude-sonnet-4-5`.".into()),
        },
        _ => InboxLine::Plain,
    }
}

/// The command a line names, for the audit: its first word without the `!` (`!model gpt"4` →
/// `model`); empty for a blank line.
pub fn command_word(body: &str) -> &str {
    body.split_whitespace()
        .next()
        .map_or("", |w| w.trim_start_matches('!'))
}

/// The longest model id `!model` accepts.
pub const MAX_MODEL_ID: usize = 128;

/// A model id as `!model` takes it: 1 to [`MAX_MODEL_ID`] ASCII characters, starting with a
/// letter or digit, then letters, digits and `.-_:/@+` (`claude-sonnet-4-5`, `gpt-4o-mini`,
/// `llama3.1:8b`, `org/model`). Nothing that needs quoting in TOML or Markdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelId(String);

/// Why a model id is refused (the text names the offending value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadModelId {
    #[error("a model id is at most {MAX_MODEL_ID} characters, not {0}")]
    TooLong(usize),
    #[error("a model id starts with a letter or a digit, not {0:?}")]
    BadStart(char),
    #[error("a model id is letters, digits and `.-_:/@+`, not {0:?}")]
    BadChar(char),
}

impl ModelId {
    pub fn parse(s: &str) -> Result<Self, BadModelId> {
        let n = s.chars().count();
        if n > MAX_MODEL_ID {
            return Err(BadModelId::TooLong(n));
        }
        let mut chars = s.chars();
        match chars.next() {
            Some(c) if c.is_ascii_alphanumeric() => {}
            Some(c) => return Err(BadModelId::BadStart(c)),
            None => return Err(BadModelId::TooLong(0)),
        }
        if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || ".-_:/@+".contains(*c))) {
            return Err(BadModelId::BadChar(c));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ModelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why `!model` cannot edit an agent.toml.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelEditError {
    #[error("agent.toml does not parse: {0}")]
    Unparsable(String),
    #[error("its brain is `{0}`, which has no model")]
    NoModel(String),
    #[error("its brain's model is already `{0}`")]
    Same(String),
    #[error(
        "its agent.toml does not write its brain as a `[brain]` table `!model` can edit; a manager can change it with write_config"
    )]
    Layout,
}

/// The brains that have a model (`brain.model` in agent.toml).
const WITH_MODEL: [&str; 3] = ["openai", "anthropic", "claude-code"];

/// `text` (an agent.toml) with its brain's model set to `model`, every other byte unchanged:
/// the `model = …` line of the `[brain]` table replaced, or one added right after its header.
/// The result is checked: parsed, it must be exactly the original with `brain.model` set, or
/// the edit is refused ([`ModelEditError::Layout`]) rather than written wrong.
pub fn set_brain_model(text: &str, model: &ModelId) -> Result<String, ModelEditError> {
    let parse = |t: &str| {
        t.parse::<toml::Table>()
            .map_err(|e| ModelEditError::Unparsable(e.message().to_owned()))
    };
    let mut want = parse(text)?;
    let brain = want
        .get_mut("brain")
        .and_then(|b| b.as_table_mut())
        .ok_or(ModelEditError::Layout)?;
    let kind = brain
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or("")
        .to_owned();
    if !WITH_MODEL.contains(&kind.as_str()) {
        return Err(ModelEditError::NoModel(kind));
    }
    if brain.get("model").and_then(|m| m.as_str()) == Some(model.as_str()) {
        return Err(ModelEditError::Same(model.to_string()));
    }
    brain.insert("model".into(), toml::Value::String(model.to_string()));

    let line = format!("model = \"{model}\"");
    let mut out: Vec<String> = Vec::new();
    let (mut section, mut header_at, mut replaced) = (None::<String>, None, false);
    for l in text.lines() {
        if let Some(name) = header(l) {
            section = Some(name);
            if section.as_deref() == Some("brain") {
                header_at = Some(out.len());
            }
        } else if section.as_deref() == Some("brain") && !replaced && is_model_key(l) {
            let indent = &l[..l.len() - l.trim_start().len()];
            out.push(format!("{indent}{line}{}", trailing_comment(l)));
            replaced = true;
            continue;
        }
        out.push(l.to_owned());
    }
    if !replaced {
        let at = header_at.ok_or(ModelEditError::Layout)?;
        out.insert(at + 1, line);
    }
    let mut edited = out.join("\n");
    if text.ends_with('\n') {
        edited.push('\n');
    }
    if parse(&edited)? != want {
        return Err(ModelEditError::Layout);
    }
    Ok(edited)
}

/// The table a header line opens (`[brain]` → `brain`, `[[brain.rules]]` → `[brain.rules]`).
fn header(line: &str) -> Option<String> {
    let t = line.trim();
    if let Some(rest) = t.strip_prefix("[[") {
        return rest.split("]]").next().map(|n| format!("[{}]", n.trim()));
    }
    t.strip_prefix('[')
        .and_then(|rest| rest.split(']').next())
        .map(|n| n.trim().to_owned())
}

/// The comment ending `line` (from its first `#` outside a string, with the blanks before
/// it), or `""`: kept when the line's value is replaced.
fn trailing_comment(line: &str) -> &str {
    let (mut quote, mut escaped) = (None::<char>, false);
    for (i, c) in line.char_indices() {
        match quote {
            Some('"') if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' => return &line[line[..i].trim_end().len()..],
            None => {}
        }
    }
    ""
}

/// Whether `line` sets the key `model` (`model = …`, `model="…"`).
fn is_model_key(line: &str) -> bool {
    line.trim_start()
        .strip_prefix("model")
        .is_some_and(|rest| rest.trim_start().starts_with('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lines_command_word_is_its_first_word() {
        struct Case {
            name: &'static str,
            body: &'static str,
            want: &'static str,
        }
        let cases = [
            Case {
                name: "with bad arguments",
                body: "  !model gpt\"4 x",
                want: "model",
            },
            Case {
                name: "alone",
                body: "!cancel",
                want: "cancel",
            },
            Case {
                name: "blank",
                body: " ",
                want: "",
            },
        ];
        for c in cases {
            assert_eq!(command_word(c.body), c.want, "{}", c.name);
        }
    }

    fn argus() -> AgentName {
        AgentName::parse("argus").unwrap()
    }

    #[test]
    fn what_an_inbox_line_is() {
        struct Case {
            name: &'static str,
            body: &'static str,
            room: RoomRole,
            sender: SenderKind,
            want: Result<InboxLine, &'static str>,
        }
        let inbox = || RoomRole::Inbox(argus());
        let op = || SenderKind::Operator;
        let core = |c| Ok(InboxLine::Core(argus(), c));
        let model = |id: &str| core(CoreCommand::Model(ModelId::parse(id).unwrap()));
        let cases = [
            Case {
                name: "an operator's !cancel",
                body: "!cancel",
                room: inbox(),
                sender: op(),
                want: core(CoreCommand::Cancel),
            },
            Case {
                name: "blanks around it",
                body: "  !cancel \n",
                room: inbox(),
                sender: op(),
                want: core(CoreCommand::Cancel),
            },
            Case {
                name: "another agent's !cancel is a plain message",
                body: "!cancel",
                room: inbox(),
                sender: SenderKind::Agent(AgentName::parse("iris").unwrap()),
                want: Ok(InboxLine::Plain),
            },
            Case {
                name: "a local non-operator's !cancel is a plain message",
                body: "!cancel",
                room: inbox(),
                sender: SenderKind::Other,
                want: Ok(InboxLine::Plain),
            },
            Case {
                name: "a remote user's !cancel is a plain message",
                body: "!cancel",
                room: inbox(),
                sender: SenderKind::Remote,
                want: Ok(InboxLine::Plain),
            },
            Case {
                name: "the core's own text is no command",
                body: "!cancel",
                room: inbox(),
                sender: SenderKind::Bot,
                want: Ok(InboxLine::Plain),
            },
            Case {
                name: "an operator's !cancel outside an inbox",
                body: "!cancel",
                room: RoomRole::Swarm,
                sender: op(),
                want: Ok(InboxLine::Plain),
            },
            Case {
                name: "in the control room",
                body: "!cancel",
                room: RoomRole::Control,
                sender: op(),
                want: Ok(InboxLine::Plain),
            },
            Case {
                name: "!compact is for the brain",
                body: "!compact",
                room: inbox(),
                sender: op(),
                want: Ok(InboxLine::Brain(Control::Compact)),
            },
            Case {
                name: "!new-session is for the brain",
                body: "!new-session",
                room: inbox(),
                sender: op(),
                want: Ok(InboxLine::Brain(Control::NewSession)),
            },
            Case {
                name: "an agent's !compact is a plain message",
                body: "!compact",
                room: inbox(),
                sender: SenderKind::Agent(AgentName::parse("iris").unwrap()),
                want: Ok(InboxLine::Plain),
            },
            Case {
                name: "!model with an id",
                body: "!model claude-opus-4-1",
                room: inbox(),
                sender: op(),
                want: model("claude-opus-4-1"),
            },
            Case {
                name: "!model with a tagged local model",
                body: "!model llama3.1:8b",
                room: inbox(),
                sender: op(),
                want: model("llama3.1:8b"),
            },
            Case {
                name: "!model alone is usage",
                body: "!model",
                room: inbox(),
                sender: op(),
                want: Err("takes one model id"),
            },
            Case {
                name: "!model with two words is usage",
                body: "!model a b",
                room: inbox(),
                sender: op(),
                want: Err("takes one model id"),
            },
            Case {
                name: "!model with a quote is usage naming it",
                body: "!model gpt\"4",
                room: inbox(),
                sender: op(),
                want: Err("not '\"'"),
            },
            Case {
                name: "!model with a huge id is usage",
                body: Box::leak(format!("!model {}", "a".repeat(200)).into_boxed_str()),
                room: inbox(),
                sender: op(),
                want: Err("not 200"),
            },
            Case {
                name: "!cancel with words is usage",
                body: "!cancel now please",
                room: inbox(),
                sender: op(),
                want: Err("`!cancel` takes no arguments"),
            },
            Case {
                name: "!compact with words is usage",
                body: "!compact hard",
                room: inbox(),
                sender: op(),
                want: Err("`!compact` takes no arguments"),
            },
            Case {
                name: "an unknown !word is a plain message",
                body: "!foo bar",
                room: inbox(),
                sender: op(),
                want: Ok(InboxLine::Plain),
            },
            Case {
                name: "case matters",
                body: "!Cancel",
                room: inbox(),
                sender: op(),
                want: Ok(InboxLine::Plain),
            },
            Case {
                name: "a command later in the text is a plain message",
                body: "please !cancel",
                room: inbox(),
                sender: op(),
                want: Ok(InboxLine::Plain),
            },
            Case {
                name: "a prefix of a longer word is a plain message",
                body: "!cancelled?",
                room: inbox(),
                sender: op(),
                want: Ok(InboxLine::Plain),
            },
            Case {
                name: "an empty body",
                body: "   ",
                room: inbox(),
                sender: op(),
                want: Ok(InboxLine::Plain),
            },
        ];
        for c in cases {
            let got = classify(c.body, &c.room, &c.sender);
            if let InboxLine::Brain(control) = got {
                // What a pull stops before (`store/recv.rs`) covers every control message.
                assert_eq!(Control::of_body(c.body), Some(control), "{}", c.name);
            }
            match (&got, c.want) {
                (InboxLine::Usage(owner, text), Err(fragment)) => {
                    assert_eq!(owner, &argus(), "{}", c.name);
                    assert!(text.contains(fragment), "{}: {text}", c.name);
                    assert!(text.ends_with(USAGE), "{}: {text}", c.name);
                    assert!(got.for_the_core(), "{}", c.name);
                }
                (got, Ok(want)) => assert_eq!(got, &want, "{}", c.name),
                (got, Err(want)) => panic!("{}: got {got:?}, want usage with {want:?}", c.name),
            }
        }
    }

    #[test]
    fn model_ids_are_plain_bounded_tokens() {
        struct Case {
            id: &'static str,
            ok: bool,
        }
        let cases = [
            Case {
                id: "claude-sonnet-4-5",
                ok: true,
            },
            Case {
                id: "gpt-4o-mini",
                ok: true,
            },
            Case {
                id: "org/model_v2+q4@main",
                ok: true,
            },
            Case { id: "", ok: false },
            Case {
                id: "-x",
                ok: false,
            },
            Case {
                id: "a b",
                ok: false,
            },
            Case {
                id: "a\"b",
                ok: false,
            },
            Case {
                id: "a\\b",
                ok: false,
            },
            Case {
                id: "a`b",
                ok: false,
            },
            Case {
                id: "modèle",
                ok: false,
            },
        ];
        for c in cases {
            assert_eq!(ModelId::parse(c.id).is_ok(), c.ok, "{:?}", c.id);
        }
        assert!(ModelId::parse(&"a".repeat(MAX_MODEL_ID)).is_ok());
        assert_eq!(
            ModelId::parse(&"a".repeat(MAX_MODEL_ID + 1)),
            Err(BadModelId::TooLong(MAX_MODEL_ID + 1))
        );
    }

    #[test]
    fn the_model_line_is_set_and_nothing_else_changes() {
        struct Case {
            name: &'static str,
            toml: &'static str,
            want: Result<&'static str, ModelEditError>,
        }
        let cases = [
            Case {
                name: "replaces the model line, its comment kept",
                toml: "# the reviewer\n[brain]\nkind = \"claude-code\"\nmodel = \"old\"   # was\n",
                want: Ok(
                    "# the reviewer\n[brain]\nkind = \"claude-code\"\nmodel = \"new-1\"   # was\n",
                ),
            },
            Case {
                name: "a # inside the old value is no comment",
                toml: "[brain]\nkind = \"openai\"\n  model = 'a#b' #c \"d\"\n",
                want: Ok("[brain]\nkind = \"openai\"\n  model = \"new-1\" #c \"d\"\n"),
            },
            Case {
                name: "an escaped quote inside the old value",
                toml: "[brain]\nkind = \"openai\"\nmodel = \"a\\\"#\"\n",
                want: Ok("[brain]\nkind = \"openai\"\nmodel = \"new-1\"\n"),
            },
            Case {
                name: "adds one after the header",
                toml: "description = \"x\"\n[brain]\nkind = \"claude-code\"\n[brain.limits]\ncalls_per_message = 3\n",
                want: Ok(
                    "description = \"x\"\n[brain]\nmodel = \"new-1\"\nkind = \"claude-code\"\n[brain.limits]\ncalls_per_message = 3\n",
                ),
            },
            Case {
                name: "a model key in a sub-table is not the brain's",
                toml: "[brain]\nkind = \"openai\"\nmodel = \"a\"\n[brain.mcp_servers.x]\ncommand = [\"x\"]\n",
                want: Ok(
                    "[brain]\nkind = \"openai\"\nmodel = \"new-1\"\n[brain.mcp_servers.x]\ncommand = [\"x\"]\n",
                ),
            },
            Case {
                name: "a scripted brain has no model",
                toml: "[brain]\nkind = \"scripted\"\n",
                want: Err(ModelEditError::NoModel("scripted".into())),
            },
            Case {
                name: "a command brain has no model",
                toml: "[brain]\nkind = \"command\"\ncommand = [\"x\"]\n",
                want: Err(ModelEditError::NoModel("command".into())),
            },
            Case {
                name: "the same model",
                toml: "[brain]\nkind = \"anthropic\"\nmodel = \"new-1\"\n",
                want: Err(ModelEditError::Same("new-1".into())),
            },
            Case {
                name: "an inline brain table",
                toml: "brain = { kind = \"openai\", model = \"a\" }\n",
                want: Err(ModelEditError::Layout),
            },
            Case {
                name: "a model line inside a multi-line string is not the key",
                toml: "[brain]\nkind = \"openai\"\nnote = \"\"\"\nmodel = \"a\"\n\"\"\"\nmodel = \"b\"\n",
                want: Err(ModelEditError::Layout),
            },
            Case {
                name: "no brain",
                toml: "description = \"x\"\n",
                want: Err(ModelEditError::Layout),
            },
        ];
        let id = ModelId::parse("new-1").unwrap();
        for c in cases {
            let got = set_brain_model(c.toml, &id);
            assert_eq!(got.as_deref().map_err(Clone::clone), c.want, "{}", c.name);
        }
        assert!(matches!(
            set_brain_model("[brain\n", &id),
            Err(ModelEditError::Unparsable(_))
        ));
    }
}
