//! The checks a request or question passes before the operators see it.

use super::*;

fn cfg(text: &str) -> Config {
    Config::validate(toml::from_str(text).expect("test config parses"), None)
        .expect("test config validates")
}

#[test]
fn who_may_be_spawned() {
    let cfg = cfg(
        "[operators]\nusers = [\"@alice:localhost\", \"@bob:elsewhere\"]\n[approvals]\nmanagers = [\"hm1nd\"]\n",
    );
    struct Case {
        name: &'static str,
        refused: Option<&'static str>,
    }
    let cases = [
        Case {
            name: "newbie",
            refused: None,
        },
        Case {
            name: "hm1nd",
            refused: Some(
                "hm1nd is listed in approvals.managers: a manager cannot be spawned by a request",
            ),
        },
        Case {
            name: "alice",
            refused: Some("alice is an operator's name"),
        },
        // An operator elsewhere: @bob:localhost is not them.
        Case {
            name: "bob",
            refused: None,
        },
    ];
    for c in cases {
        let n = AgentName::parse(c.name).unwrap();
        let got = spawnable(&cfg, &n).err().map(|e| e.to_string());
        assert_eq!(got.as_deref(), c.refused, "{}", c.name);
    }
    // The appservice's own user, when agents share its namespace.
    let cfg = super::tests::cfg("[appservice]\nsender_localpart = \"bot\"\n");
    let refused = spawnable(&cfg, &AgentName::parse("bot").unwrap()).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "@bot:localhost is the appservice's own user"
    );
}

#[test]
fn summaries_are_bounded() {
    assert!(check_summary("short").is_ok());
    assert!(check_summary(&"x".repeat(MAX_SUMMARY)).is_ok());
    assert!(check_summary(&"x".repeat(MAX_SUMMARY + 1)).is_err());
    assert_eq!(
        check_summary(&"x".repeat(1001)).unwrap_err().to_string(),
        "the summary is 1001 bytes; at most 1000 (the config itself carries the rest)"
    );
}

#[test]
fn questions_are_bounded() {
    struct Case {
        name: &'static str,
        question: String,
        options: Vec<String>,
        refused: Option<&'static str>,
    }
    let opts = |n: usize, text: &str| vec![text.to_owned(); n];
    let q = |s: &str| s.to_owned();
    let cases = [
        Case {
            name: "a question, no options",
            question: q("which?"),
            options: vec![],
            refused: None,
        },
        Case {
            name: "nine options",
            question: q("which?"),
            options: opts(9, "x"),
            refused: None,
        },
        Case {
            name: "4000 bytes after trimming",
            question: format!("  {}\n", "q".repeat(4000)),
            options: vec![],
            refused: None,
        },
        Case {
            name: "empty",
            question: q(" \n "),
            options: vec![],
            refused: Some("the question must be 1 to 4000 bytes"),
        },
        Case {
            name: "too long",
            question: "q".repeat(4001),
            options: vec![],
            refused: Some("the question must be 1 to 4000 bytes"),
        },
        Case {
            name: "ten options",
            question: q("which?"),
            options: opts(10, "x"),
            refused: Some("at most 9 options, each 1 to 200 bytes"),
        },
        Case {
            name: "a blank option",
            question: q("which?"),
            options: vec![q("a"), q("  ")],
            refused: Some("at most 9 options, each 1 to 200 bytes"),
        },
        Case {
            name: "an option of 201 bytes",
            question: q("which?"),
            options: vec!["o".repeat(201)],
            refused: Some("at most 9 options, each 1 to 200 bytes"),
        },
    ];
    for c in cases {
        let got = check_question(&c.question, &c.options)
            .err()
            .map(|e| e.to_string());
        assert_eq!(got.as_deref(), c.refused, "{}", c.name);
    }
}

#[test]
fn what_a_config_may_not_grant_itself() {
    let hive = cfg(
        "[providers.anthropic]\nkind = \"anthropic\"\napi_key_file = \"/k\"\nmodels = [\"claude-a\"]\n",
    );
    let empty = cfg("");
    let spec = |text: &str| {
        let dir = std::path::Path::new("/nonexistent/bots/x");
        crate::agent_spec::AgentSpec::parse(
            AgentName::parse("x").unwrap(),
            dir,
            &dir.join("agent.toml"),
            text,
        )
        .expect("test spec parses")
    };
    struct Case {
        name: &'static str,
        hive: &'static str,
        agent: &'static str,
        refused: Option<&'static str>,
    }
    let cases = [
        Case {
            name: "a brain with no model",
            hive: "hive",
            agent: "[brain]\nkind = \"scripted\"\n",
            refused: None,
        },
        Case {
            name: "a model hive.toml allows",
            hive: "hive",
            agent: "[brain]\nkind = \"anthropic\"\nmodel = \"claude-a\"\n",
            refused: None,
        },
        Case {
            name: "no provider declared at all: it cannot think, but is not refused",
            hive: "empty",
            agent: "[brain]\nkind = \"anthropic\"\nmodel = \"claude-a\"\n",
            refused: None,
        },
        Case {
            name: "a model hive.toml does not allow",
            hive: "hive",
            agent: "[brain]\nkind = \"anthropic\"\nmodel = \"claude-z\"\n",
            refused: Some(
                "its agent.toml asks for what hive.toml does not grant: brain.model \"claude-z\" is not in [providers.anthropic] models (claude-a)",
            ),
        },
        Case {
            name: "a provider hive.toml does not declare",
            hive: "hive",
            agent: "[brain]\nkind = \"anthropic\"\nmodel = \"claude-a\"\nprovider = \"mine\"\n",
            refused: Some(
                "its agent.toml asks for what hive.toml does not grant: brain.provider \"mine\" is not declared in hive.toml (no [providers.mine])",
            ),
        },
    ];
    for c in cases {
        let cfg = if c.hive == "hive" { &hive } else { &empty };
        let got = grantable(cfg, &spec(c.agent)).err().map(|e| e.to_string());
        assert_eq!(got.as_deref(), c.refused, "{}", c.name);
    }
}
