//! The `!hive …` commands an operator types in `#hive-c0re`: a clap-derived enum, parsed once
//! from the message body. The doc comments below are the help text `!hive help` answers with.
//!
//! Rules:
//! - the body is what [`routing::command_args`](super::super::routing::command_args) leaves
//!   after `!hive`, split into words shell-style (whitespace separates, `'…'` and `"…"` group,
//!   `\` escapes the next character outside single quotes);
//! - no words, `help`, `-h` or `--help` is [`HiveCommand::Help`];
//! - anything clap refuses (an unknown command, a stray argument, an unclosed quote) is a
//!   [`Usage`] error: clap's rendered message, plain text, answered as it is.

use clap::{ColorChoice, CommandFactory, Parser, Subcommand};

/// Every command the core answers in `#hive-c0re`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum HiveCommand {
    /// Every agent: its brain, its state and its queue (queued, done, dead).
    Status,
    /// Every agent: its state, brain and model, description, queue and last turn.
    Agents,
    /// `logs <agent> [lines]`: the end of an agent's log (20 lines unless told), secrets redacted.
    Logs {
        agent: String,
        /// How many lines (1 to 200).
        #[arg(default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=200))]
        lines: u16,
    },
    /// `stop <agent>`: stop its harness (after its turn) and keep it stopped until `start`.
    Stop { agent: String },
    /// `start <agent>`: start it again (stopped, crashed too often, or could not start).
    Start { agent: String },
    /// `restart <agent>`: stop its harness (after its turn) and start it afresh.
    Restart { agent: String },
    /// `notes <agent>`: the notes it keeps (`write_notes`).
    Notes { agent: String },
    /// `usage [agent]`: turns, time, tokens and cost per agent, today and the last 7 days.
    Usage { agent: Option<String> },
    /// Open approval requests and questions, each linked to its message.
    Approvals,
    /// `audit [rows]`: the newest rows of the audit trail (20 unless told).
    Audit {
        /// How many rows (1 to 100).
        #[arg(default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=100))]
        rows: u16,
    },
    /// `cancel <agent>`: stop its running turn now (its brain is killed; the message counts as done).
    Cancel {
        /// The agent whose turn to stop.
        agent: String,
    },
    /// Every agent's schedules (agent.toml `[[schedules]]`): the rule, the next and the last fire.
    Schedules,
    /// `fire <agent> <schedule>`: fire one of its schedules now (its prompt into its inbox; audited).
    Fire {
        /// The agent.
        agent: String,
        /// The schedule's name.
        schedule: String,
    },
    /// This list.
    Help,
}

/// The command line after `!hive`, as clap sees it.
#[derive(Debug, Parser)]
#[command(
    name = "!hive",
    bin_name = "!hive",
    about = "Commands for hive-c0re, from an operator in #hive-c0re.",
    no_binary_name = true,
    disable_help_subcommand = true,
    disable_version_flag = true,
    color = ColorChoice::Never,
    help_template = "{about}\n\n{usage-heading} {usage}\n\nCommands:\n{subcommands}"
)]
struct Line {
    #[command(subcommand)]
    command: Option<HiveCommand>,
}

/// A body that is no command: what to answer, clap's message made short for a chat room.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Usage(String);

/// Parses the words after `!hive` (`args` as [`routing::command_args`] returns them).
///
/// [`routing::command_args`]: super::super::routing::command_args
pub fn parse(args: &str) -> Result<HiveCommand, Usage> {
    let words = split_words(args).map_err(|e| usage(&format!("error: {e}\n")))?;
    match Line::try_parse_from(words) {
        Ok(Line { command }) => Ok(command.unwrap_or(HiveCommand::Help)),
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => Ok(HiveCommand::Help),
        Err(e) => Err(usage(&e.render().to_string())),
    }
}

/// The answer to `!hive help`: clap's help, rendered from the doc comments above.
pub fn help_text() -> String {
    let help = Line::command().render_help().to_string();
    format!("```\n{}\n```", help.trim_end())
}

/// clap's error without its `--help` tip (a chat has `!hive help`), fenced.
fn usage(rendered: &str) -> Usage {
    let text: Vec<&str> = rendered
        .lines()
        .filter(|l| !l.starts_with("For more information"))
        .collect();
    Usage(format!(
        "```\n{}\n```\n`!hive help` lists commands.",
        text.join("\n").trim_end()
    ))
}

/// A quote opened and never closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unclosed {0} quote")]
pub struct UnclosedQuote(&'static str);

/// Splits `s` into words the way a shell would, without expansions: whitespace separates,
/// `'…'` groups literally, `"…"` groups with `\"` and `\\` escaped, `\` escapes outside quotes.
fn split_words(s: &str) -> Result<Vec<String>, UnclosedQuote> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(word.take()),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err(UnclosedQuote("single")),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err(UnclosedQuote("double")),
                        },
                        Some(c) => w.push(c),
                        None => return Err(UnclosedQuote("double")),
                    }
                }
            }
            '\\' => {
                let w = word.get_or_insert_with(String::new);
                if let Some(c) = chars.next() {
                    w.push(c);
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Case {
        name: &'static str,
        args: &'static str,
        /// The command, or a fragment the usage answer must contain.
        want: Result<HiveCommand, &'static str>,
    }

    #[test]
    fn bodies_parse_to_a_command_or_usage() {
        use HiveCommand::{Cancel, Help, Status};
        let cases = [
            Case {
                name: "status",
                args: "status",
                want: Ok(Status),
            },
            Case {
                name: "status, spaced",
                args: "  status\t",
                want: Ok(Status),
            },
            Case {
                name: "status, quoted",
                args: "\"status\"",
                want: Ok(Status),
            },
            Case {
                name: "status, single-quoted",
                args: "'sta'tus",
                want: Ok(Status),
            },
            Case {
                name: "nothing is help",
                args: "",
                want: Ok(Help),
            },
            Case {
                name: "help",
                args: "help",
                want: Ok(Help),
            },
            Case {
                name: "--help",
                args: "--help",
                want: Ok(Help),
            },
            Case {
                name: "-h",
                args: "-h",
                want: Ok(Help),
            },
            Case {
                name: "status --help",
                args: "status --help",
                want: Ok(Help),
            },
            Case {
                name: "unknown command",
                args: "frobnicate",
                want: Err("unrecognized subcommand 'frobnicate'"),
            },
            Case {
                name: "a typo gets a tip",
                args: "statsu",
                want: Err("tip: some similar subcommands exist: 'start', 'status'"),
            },
            Case {
                name: "a stray argument",
                args: "status now",
                want: Err("unexpected argument 'now'"),
            },
            Case {
                name: "a flag nobody has",
                args: "--force",
                want: Err("unexpected argument '--force'"),
            },
            Case {
                name: "upper case is not a command",
                args: "STATUS",
                want: Err("'STATUS'"),
            },
            Case {
                name: "no version flag",
                args: "--version",
                want: Err("'--version'"),
            },
            Case {
                name: "an unclosed quote",
                args: "status \"now",
                want: Err("unclosed double quote"),
            },
            Case {
                name: "cancel an agent's turn",
                args: "cancel argus",
                want: Ok(Cancel {
                    agent: "argus".into(),
                }),
            },
            Case {
                name: "cancel needs an agent",
                args: "cancel",
                want: Err("<AGENT>"),
            },
            Case {
                name: "cancel takes one agent",
                args: "cancel argus iris",
                want: Err("unexpected argument 'iris'"),
            },
            Case {
                name: "agents",
                args: "agents",
                want: Ok(HiveCommand::Agents),
            },
            Case {
                name: "logs, lines by default",
                args: "logs echo",
                want: Ok(HiveCommand::Logs {
                    agent: "echo".into(),
                    lines: 20,
                }),
            },
            Case {
                name: "logs, lines given",
                args: "logs echo 200",
                want: Ok(HiveCommand::Logs {
                    agent: "echo".into(),
                    lines: 200,
                }),
            },
            Case {
                name: "logs, too many lines",
                args: "logs echo 201",
                want: Err("201 is not in 1..=200"),
            },
            Case {
                name: "logs, no lines",
                args: "logs echo 0",
                want: Err("0 is not in 1..=200"),
            },
            Case {
                name: "logs without an agent",
                args: "logs",
                want: Err("<AGENT>"),
            },
            Case {
                name: "stop",
                args: "stop echo",
                want: Ok(HiveCommand::Stop {
                    agent: "echo".into(),
                }),
            },
            Case {
                name: "start",
                args: "start echo",
                want: Ok(HiveCommand::Start {
                    agent: "echo".into(),
                }),
            },
            Case {
                name: "restart",
                args: "restart echo",
                want: Ok(HiveCommand::Restart {
                    agent: "echo".into(),
                }),
            },
            Case {
                name: "stop two agents",
                args: "stop echo argus",
                want: Err("unexpected argument 'argus'"),
            },
            Case {
                name: "notes",
                args: "notes echo",
                want: Ok(HiveCommand::Notes {
                    agent: "echo".into(),
                }),
            },
            Case {
                name: "usage of all",
                args: "usage",
                want: Ok(HiveCommand::Usage { agent: None }),
            },
            Case {
                name: "usage of one",
                args: "usage echo",
                want: Ok(HiveCommand::Usage {
                    agent: Some("echo".into()),
                }),
            },
            Case {
                name: "approvals",
                args: "approvals",
                want: Ok(HiveCommand::Approvals),
            },
            Case {
                name: "audit, rows by default",
                args: "audit",
                want: Ok(HiveCommand::Audit { rows: 20 }),
            },
            Case {
                name: "audit, rows given",
                args: "audit 5",
                want: Ok(HiveCommand::Audit { rows: 5 }),
            },
            Case {
                name: "audit, not a number",
                args: "audit many",
                want: Err("invalid value 'many'"),
            },
            Case {
                name: "an unclosed single quote",
                args: "'",
                want: Err("unclosed single quote"),
            },
            Case {
                name: "schedules",
                args: "schedules",
                want: Ok(HiveCommand::Schedules),
            },
            Case {
                name: "fire",
                args: "fire echo standup",
                want: Ok(HiveCommand::Fire {
                    agent: "echo".into(),
                    schedule: "standup".into(),
                }),
            },
            Case {
                name: "fire without a schedule",
                args: "fire echo",
                want: Err("<SCHEDULE>"),
            },
        ];
        for c in cases {
            match (parse(c.args), c.want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{}", c.name),
                (Err(Usage(text)), Err(fragment)) => {
                    assert!(text.contains(fragment), "{}: {text}", c.name);
                    assert!(
                        text.ends_with("`!hive help` lists commands."),
                        "{}: {text}",
                        c.name
                    );
                    assert!(
                        !text.contains("--help"),
                        "{}: the tip is a chat's: {text}",
                        c.name
                    );
                    assert!(!text.contains('\u{1b}'), "{}: no ANSI: {text:?}", c.name);
                }
                (got, want) => panic!("{}: got {got:?}, want {want:?}", c.name),
            }
        }
    }

    #[test]
    fn words_split_like_a_shell() {
        struct Case {
            name: &'static str,
            input: &'static str,
            want: Result<&'static [&'static str], UnclosedQuote>,
        }
        let cases = [
            Case {
                name: "empty",
                input: "",
                want: Ok(&[]),
            },
            Case {
                name: "blanks",
                input: " \t\n ",
                want: Ok(&[]),
            },
            Case {
                name: "words",
                input: "a  b\tc",
                want: Ok(&["a", "b", "c"]),
            },
            Case {
                name: "double quotes group",
                input: "\"a b\" c",
                want: Ok(&["a b", "c"]),
            },
            Case {
                name: "single quotes are literal",
                input: r#"'a \" b'"#,
                want: Ok(&[r#"a \" b"#]),
            },
            Case {
                name: "escapes in double quotes",
                input: r#""a \" \\ \n""#,
                want: Ok(&[r#"a " \ \n"#]),
            },
            Case {
                name: "a backslash escapes a blank",
                input: r"a\ b",
                want: Ok(&["a b"]),
            },
            Case {
                name: "quotes join a word",
                input: "a'b'\"c\"",
                want: Ok(&["abc"]),
            },
            Case {
                name: "an empty quoted word",
                input: "'' x",
                want: Ok(&["", "x"]),
            },
            Case {
                name: "a trailing backslash",
                input: "a\\",
                want: Ok(&["a"]),
            },
            Case {
                name: "unclosed double",
                input: "\"a",
                want: Err(UnclosedQuote("double")),
            },
            Case {
                name: "unclosed single",
                input: "a 'b",
                want: Err(UnclosedQuote("single")),
            },
        ];
        for c in cases {
            let got = split_words(c.input);
            let want = c
                .want
                .map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(got, want, "{}", c.name);
        }
    }

    #[test]
    fn help_lists_every_command() {
        let help = help_text();
        assert!(!help.contains('\u{1b}'), "no ANSI: {help:?}");
        insta::assert_snapshot!("hive_help", help);
    }

    #[test]
    fn a_typo_is_answered_with_usage() {
        let answer = parse("statsu").expect_err("not a command").to_string();
        insta::assert_snapshot!("usage_typo", answer);
    }
}
