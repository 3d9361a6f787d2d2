//! `!model <id>` in an agent's inbox: the model is config, so nothing changes until an operator
//! approves. The core edits the brain's `model` in the agent.toml of the agent's proposed side
//! ([`super::decide::set_brain_model`], every other byte kept), commits it there validated as
//! `write_config` validates (the whole tree, what hive.toml grants), and files an apply-commit
//! request in the operator's name. Its diff against the applied config is what the operators
//! approve (a manager's unapplied commits on the proposed side are in it too, and shown).

use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::configrepo::{CommitError, ConfigFile, ConfigRepo};

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
                let answer = format!("`!model {model}`: nothing changed: {e}.");
                self.audit_command(by, "model", agent.as_str(), None, "refused", &answer);
                return answer;
            }
        };
        let summary = format!("{by} asks to switch {agent}'s model to `{model}` (`!model`).");
        let answer = match self
            .request_apply_commit(by, agent.as_str(), &sha, &summary)
            .await
        {
            Ok(id) => format!(
                "Asked the operators to switch **{agent}** to `{model}`: request #{id} in #hive-approvals (commit `{}`). It runs on the new model once approved.",
                &sha[..12.min(sha.len())]
            ),
            Err(e) => {
                format!("`!model {model}`: committed `{sha}`, but the request was refused: {e}")
            }
        };
        self.audit_command(
            by,
            "model",
            agent.as_str(),
            Some(&sha),
            "requested",
            &answer,
        );
        answer
    }

    /// Commits `agent.toml` with the brain's model set to `model` on `agent`'s proposed side;
    /// the new sha.
    fn commit_model(&self, agent: &AgentName, model: &ModelId) -> Result<String, ModelRefused> {
        let repo = ConfigRepo::new(self.data_dir(), agent);
        let tip = repo.proposed()?.ok_or(ModelRefused::Unversioned)?;
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
