//! Notifications: what the operators must not miss mentions them, so every client's default
//! push rules (`.m.rule.is_user_mention`, on `m.mentions.user_ids`) notify them.
//!
//! Rules:
//! - an approval request and an agent's question in `#hive-approvals` mention every operator:
//!   [`mention_operators`] adds their user ids to `m.mentions.user_ids`, a pill (a matrix.to link
//!   with the user id) per operator at the end of `formatted_body` and the user ids at the end
//!   of `body`, leaving what came before as it was (a request still starts `Request #N: `);
//! - an agent's `send_message` to an operator mentions that operator with a pill
//!   (`outbound::message_content`); its reply mentions whom it answers ([`reply_mentions`]): an
//!   operator's message, that operator; a core event in its own inbox (a schedule's fire, a
//!   reminder, an operator's answer), every operator, since the answer is for them;
//! - nothing ever sets `m.mentions.room`: an agent cannot notify a whole room (and with
//!   `m.mentions` present, a body's `@room` does not either);
//! - mentioning operators routes nothing: operators are not agents (`routing.rs` routes by
//!   agents' mentions only, and never an agent's message outside an inbox).

use ruma::{OwnedUserId, UserId};
use serde_json::{Value, json};

use crate::matrix::markdown::escape;

/// Most operators mentioned in one message (the event stays well under 64 KiB).
pub const MAX_MENTIONED: usize = 20;

/// Adds a mention of each of `operators` (at most [`MAX_MENTIONED`]) to `content`, a message
/// content with `body` and maybe `formatted_body` (module doc). No operators: unchanged.
pub fn mention_operators(content: &mut Value, operators: &[OwnedUserId]) {
    let ops = &operators[..operators.len().min(MAX_MENTIONED)];
    if ops.is_empty() {
        return;
    }
    let body = content["body"].as_str().unwrap_or_default().to_owned();
    let html = match content["formatted_body"].as_str() {
        Some(h) => h.to_owned(),
        None => escape(&body).replace('\n', "<br>"),
    };
    let ids: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
    let pills: Vec<String> = ops.iter().map(|o| pill(o)).collect();
    content["body"] = json!(format!("{body}\n\n🔔 {}", ids.join(", ")));
    content["format"] = json!("org.matrix.custom.html");
    content["formatted_body"] = json!(format!("{html}\n<p>🔔 {}</p>", pills.join(", ")));
    let mut mentioned: Vec<String> = content["m.mentions"]["user_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for id in ids {
        if !mentioned.contains(&id) {
            mentioned.push(id);
        }
    }
    content["m.mentions"] = json!({ "user_ids": mentioned });
}

/// A pill: the user's matrix.to link, showing the user id.
pub fn pill(user: &UserId) -> String {
    format!(
        "<a href=\"https://matrix.to/#/{user}\">{}</a>",
        escape(user.as_str())
    )
}

/// Whom an agent's reply mentions: the operator it answers; for a core event in its own inbox
/// (`sender` is the core), every operator; anyone else it answers, that user (module doc).
pub fn reply_mentions(
    sender: &str,
    core: &UserId,
    operators: &[OwnedUserId],
    in_own_inbox: bool,
) -> Vec<OwnedUserId> {
    match UserId::parse(sender) {
        Ok(s) if s == core && in_own_inbox => {
            operators[..operators.len().min(MAX_MENTIONED)].to_vec()
        }
        Ok(s) if s == core => Vec::new(),
        Ok(s) => vec![s],
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> OwnedUserId {
        UserId::parse(s).expect("a valid user id")
    }

    #[test]
    fn operators_are_mentioned() {
        struct Case {
            name: &'static str,
            content: Value,
            operators: Vec<OwnedUserId>,
            body: &'static str,
            html: &'static str,
            mentions: Vec<&'static str>,
        }
        let cases = [
            Case {
                name: "a request: body and html end with the operators",
                content: json!({ "msgtype": "m.text", "body": "Request #1: x", "format": "org.matrix.custom.html", "formatted_body": "<p>Request #1: x</p>" }),
                operators: vec![u("@op:hive"), u("@ada:hive")],
                body: "Request #1: x\n\n🔔 @op:hive, @ada:hive",
                html: "<p>Request #1: x</p>\n<p>🔔 <a href=\"https://matrix.to/#/@op:hive\">@op:hive</a>, <a href=\"https://matrix.to/#/@ada:hive\">@ada:hive</a></p>",
                mentions: vec!["@op:hive", "@ada:hive"],
            },
            Case {
                name: "plain text gets an html form, escaped",
                content: json!({ "msgtype": "m.text", "body": "a <b>\nc", "m.mentions": { "user_ids": [] } }),
                operators: vec![u("@op:hive")],
                body: "a <b>\nc\n\n🔔 @op:hive",
                html: "a &lt;b&gt;<br>c\n<p>🔔 <a href=\"https://matrix.to/#/@op:hive\">@op:hive</a></p>",
                mentions: vec!["@op:hive"],
            },
            Case {
                name: "mentions already there are kept, none twice",
                content: json!({ "body": "b", "formatted_body": "<p>b</p>", "m.mentions": { "user_ids": ["@op:hive", "@x:hive"] } }),
                operators: vec![u("@op:hive")],
                body: "b\n\n🔔 @op:hive",
                html: "<p>b</p>\n<p>🔔 <a href=\"https://matrix.to/#/@op:hive\">@op:hive</a></p>",
                mentions: vec!["@op:hive", "@x:hive"],
            },
            Case {
                name: "no operators: unchanged",
                content: json!({ "body": "b" }),
                operators: vec![],
                body: "b",
                html: "",
                mentions: vec![],
            },
        ];
        for mut c in cases {
            mention_operators(&mut c.content, &c.operators);
            assert_eq!(c.content["body"], c.body, "{}", c.name);
            assert_eq!(
                c.content["formatted_body"].as_str().unwrap_or_default(),
                c.html,
                "{}",
                c.name
            );
            let got: Vec<&str> = c.content["m.mentions"]["user_ids"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            assert_eq!(got, c.mentions, "{}", c.name);
            assert!(
                c.content["m.mentions"].get("room").is_none(),
                "{}: never @room",
                c.name
            );
        }
    }

    #[test]
    fn whom_a_reply_mentions() {
        struct Case {
            name: &'static str,
            sender: &'static str,
            in_own_inbox: bool,
            want: Vec<&'static str>,
        }
        let core = u("@hive:hive");
        let ops = [u("@op:hive"), u("@ada:hive")];
        let cases = [
            Case {
                name: "an operator's message: that operator",
                sender: "@ada:hive",
                in_own_inbox: true,
                want: vec!["@ada:hive"],
            },
            Case {
                name: "a core event in its own inbox: every operator",
                sender: "@hive:hive",
                in_own_inbox: true,
                want: vec!["@op:hive", "@ada:hive"],
            },
            Case {
                name: "the core elsewhere: nobody (the core reads no mentions)",
                sender: "@hive:hive",
                in_own_inbox: false,
                want: vec![],
            },
            Case {
                name: "another agent: that agent, as before",
                sender: "@iris:hive",
                in_own_inbox: true,
                want: vec!["@iris:hive"],
            },
            Case {
                name: "a sender that is no user id: nobody",
                sender: "iris@hive-b",
                in_own_inbox: false,
                want: vec![],
            },
        ];
        for c in cases {
            let got = reply_mentions(c.sender, &core, &ops, c.in_own_inbox);
            let got: Vec<&str> = got.iter().map(|u| u.as_str()).collect();
            assert_eq!(got, c.want, "{}", c.name);
        }
    }
}
