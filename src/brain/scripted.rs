//! The scripted brain: deterministic rules from `agent.toml`. Used by tests, demos and the
//! offline starter bot; it goes through exactly the same socket and tools as any other brain.

use super::{Brain, BrainError, Tools, render_template};
use crate::agent_spec::ScriptRule;
use crate::wire::protocol::Message;

pub struct Scripted {
    agent: String,
    rules: Vec<ScriptRule>,
}

impl Scripted {
    pub fn new(agent: String, rules: Vec<ScriptRule>) -> Self {
        Self { agent, rules }
    }

    /// The first rule that matches `body`, and the text after its prefix.
    pub fn pick(&self, body: &str) -> Option<(&ScriptRule, String)> {
        let text = body.trim();
        let lower = text.to_lowercase();
        self.rules.iter().find_map(|r| {
            if let Some(eq) = &r.equals {
                return (lower == eq.to_lowercase()).then(|| (r, String::new()));
            }
            if let Some(p) = &r.prefix {
                let p = p.to_lowercase();
                // Compare on chars so a multi-byte body never splits mid-character.
                return lower.starts_with(&p).then(|| {
                    (
                        r,
                        text.chars()
                            .skip(p.chars().count())
                            .collect::<String>()
                            .trim()
                            .to_owned(),
                    )
                });
            }
            if let Some(c) = &r.contains {
                return lower
                    .contains(&c.to_lowercase())
                    .then(|| (r, text.to_owned()));
            }
            Some((r, text.to_owned()))
        })
    }
}

impl Brain for Scripted {
    async fn control(
        &mut self,
        c: crate::wire::protocol::Control,
        _: &mut Tools<'_>,
    ) -> Result<String, BrainError> {
        Ok(super::unsupported("scripted", c))
    }

    async fn turn(&mut self, msg: &Message, tools: &mut Tools<'_>) -> Result<(), BrainError> {
        let Some((rule, rest)) = self.pick(&msg.body) else {
            return Ok(());
        };
        let rule = rule.clone();
        if rule.silent {
            return Ok(());
        }
        if let (Some(to), Some(body)) = (&rule.send_to, &rule.send) {
            let to = render_template(to, msg, &rest, &self.agent);
            let body = render_template(body, msg, &rest, &self.agent);
            if let Err(refused) = tools.send_message(&to, &body).await? {
                // The refusal is the answer: say it where the request came from.
                tools
                    .say(&format!("I could not send that to {to}: {refused}"))
                    .await?;
                return Ok(());
            }
        }
        if let Some(reply) = &rule.reply {
            let text = render_template(reply, msg, &rest, &self.agent);
            tools.say(&text).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(toml_text: &str) -> ScriptRule {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn picks_first_matching_rule() {
        let b = Scripted::new(
            "echo".into(),
            vec![
                rule("equals = \"ping\"\nreply = \"pong\""),
                rule("prefix = \"tell argus \"\nsend_to = \"argus\"\nsend = \"{rest}\""),
                rule("contains = \"help\"\nreply = \"help text\""),
                rule("reply = \"echo: {body}\""),
            ],
        );
        let cases = [
            ("PING", "pong", ""),
            ("  ping ", "pong", ""),
            ("Tell Argus hello there", "", "hello there"),
            ("I need HELP", "help text", "I need HELP"),
            ("ping pong", "echo: {body}", "ping pong"),
            ("tell argüs ü", "echo: {body}", "tell argüs ü"),
        ];
        for (body, want_reply, want_rest) in cases {
            let (r, rest) = b.pick(body).unwrap();
            assert_eq!(r.reply.as_deref().unwrap_or(""), want_reply, "{body}");
            assert_eq!(rest, want_rest, "{body}");
        }
        assert!(Scripted::new("x".into(), vec![]).pick("anything").is_none());
    }
}
