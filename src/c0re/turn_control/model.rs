//! `!model <id>` in an agent's inbox: the model is config, so nothing changes until an operator
//! approves. The core edits the brain's `model` in the agent.toml of the agent's proposed side
//! ([`super::decide::set_brain_model`], every other byte kept), commits it there validated as
//! `write_config` validates (the whole tree, what hive.toml grants), and files an apply-commit
//! request in the operator's name. Its diff against the applied config is what the operators
//! approve: only the model's line, since `!model` is refused while the proposed side holds
//! commits never applied (a manager's, maybe one the operators denied), which it would
//! otherwise file under the operator's name ([`unapplied_refusal`]).

use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::configrepo::{CommitError, ConfigFile, ConfigRepo, Unapplied};

use super::decide::{ModelEditError, ModelId};

/// Why `!model` changed nothing (the answer says it).
#[derive(Debug, thiserror::Error)]
enum ModelRefused {
    #[error("{0}")]
    Edit(#[from] ModelEditError),
    #[error("{0}")]
    Commit(#[from] CommitError),
    #[error("{0}")]
    NotGrantable(String),
    #[error("its config is not versioned yet")]
    Unversioned,
    #[error("{0}")]
    Unapplied(String),
    #[error("{0:#}")]
    Failed(#[from] anyhow::Error),
}

impl Core {
    /// `!model <id>` from operator `by` for `agent`: the answer (the request filed, or why not).
    pub(super) async fn model_command(
        &self,
        agent: &AgentName,
        model: &ModelId,
        by: &str,
    ) -> String {
        let core = self.clone();
        let (name, id) = (agent.clone(), model.clone());
        let committed = tokio::task::spawn_blocking(move || core.commit_model(&name, &id))
            .await
            .map_err(|e| ModelRefused::Failed(e.into()))
            .and_then(|r| r);
        let sha = match committed {
            Ok(sha) => sha,
            Err(e) => {
                let answer = self.shown(&format!("`!model {model}`: nothing changed: {e}."));
                self.audit_by(
                    by,
                    "model",
                    Some(agent.as_str()),
                    None,
                    "refused",
                    Some(&answer),
                );
                return answer;
            }
        };
        let summary = format!("{by} asks to switch {agent}'s model to `{model}` (`!model`).");
        let (answer, outcome) = match self
            .request_apply_commit(by, agent.as_str(), &sha, &summary)
            .await
        {
            Ok(id) => (
                format!(
                    "Asked the operators to switch **{agent}** to `{model}`: request #{id} in #hive-approvals (commit `{}`). It runs on the new model once approved.",
                    &sha[..12.min(sha.len())]
                ),
                "requested",
            ),
            Err(e) => (
                format!("`!model {model}`: committed `{sha}`, but the request was refused: {e}"),
                "refused",
            ),
        };
        let answer = self.shown(&answer);
        self.audit_by(
            by,
            "model",
            Some(agent.as_str()),
            Some(&sha),
            outcome,
            Some(&answer),
        );
        answer
    }

    /// Commits `agent.toml` with the brain's model set to `model` on `agent`'s proposed side;
    /// the new sha.
    fn commit_model(&self, agent: &AgentName, model: &ModelId) -> Result<String, ModelRefused> {
        let repo = ConfigRepo::new(self.data_dir(), agent);
        let tip = repo.proposed()?.ok_or(ModelRefused::Unversioned)?;
        if let Some(why) = unapplied_refusal(agent, &repo.unapplied()?) {
            return Err(ModelRefused::Unapplied(why));
        }
        let files = repo.read_commit(&tip)?;
        let toml = files
            .iter()
            .find(|f| f.path == "agent.toml")
            .ok_or(CommitError::NoAgentToml)?;
        let text = std::str::from_utf8(&toml.content).map_err(|_| CommitError::AgentTomlNotUtf8)?;
        let edited = super::decide::set_brain_model(text, model)?;
        let file = ConfigFile {
            path: "agent.toml".into(),
            executable: toml.executable,
            content: edited.into_bytes(),
        };
        let message = format!("model: {model} (!model)");
        repo.commit_proposed_checked(&[file], &message, |_, tree| {
            let spec = repo.parse_spec(tree)?;
            crate::c0re::approvals::grantable(self.cfg(), &spec)
                .map_err(|r| ModelRefused::NotGrantable(r.to_string()))
        })
    }
}

/// Why `!model` is refused while `agent`'s proposed side holds commits never applied (newest
/// first), naming them; `None` when there are none.
fn unapplied_refusal(agent: &AgentName, unapplied: &[Unapplied]) -> Option<String> {
    const NAMED: usize = 3;
    if unapplied.is_empty() {
        return None;
    }
    let mut named: Vec<String> = unapplied
        .iter()
        .take(NAMED)
        .map(|u| {
            let subject: String = u.subject.chars().take(60).collect();
            format!("`{}` “{subject}”", &u.sha[..12.min(u.sha.len())])
        })
        .collect();
    if unapplied.len() > NAMED {
        named.push(format!("{} more", unapplied.len() - NAMED));
    }
    let n = unapplied.len();
    let commits = if n == 1 { "commit" } else { "commits" };
    Some(format!(
        "{n} unapplied {commits} on {agent}'s proposed side ({}) would be filed with it: approve, deny or revert them first",
        named.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unapplied_commits_are_named_in_the_refusal() {
        struct Case {
            name: &'static str,
            unapplied: Vec<(String, &'static str)>,
            want: Option<&'static str>,
        }
        let sha = |c: char| c.to_string().repeat(40);
        let cases = [
            Case {
                name: "none: the model may change",
                unapplied: vec![],
                want: None,
            },
            Case {
                name: "one",
                unapplied: vec![(sha('a'), "prompt: be terse")],
                want: Some(
                    "1 unapplied commit on gpt's proposed side (`aaaaaaaaaaaa` “prompt: be terse”) would be filed with it: approve, deny or revert them first",
                ),
            },
            Case {
                name: "many: three named, the rest counted",
                unapplied: vec![
                    (sha('a'), "a"),
                    (sha('b'), "b"),
                    (sha('c'), "c"),
                    (sha('d'), "d"),
                ],
                want: Some(
                    "4 unapplied commits on gpt's proposed side (`aaaaaaaaaaaa` “a”, `bbbbbbbbbbbb` “b”, `cccccccccccc` “c”, 1 more) would be filed with it: approve, deny or revert them first",
                ),
            },
        ];
        let gpt = AgentName::parse("gpt").unwrap();
        for c in cases {
            let unapplied: Vec<Unapplied> = c
                .unapplied
                .iter()
                .map(|(sha, subject)| Unapplied {
                    sha: sha.clone(),
                    subject: subject.to_string(),
                })
                .collect();
            assert_eq!(
                unapplied_refusal(&gpt, &unapplied).as_deref(),
                c.want,
                "{}",
                c.name
            );
        }
    }
}
