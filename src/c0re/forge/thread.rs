//! Each pull request's or issue's thread in its repository's room: a root posted by the hive's
//! bot (`**pull request acme/widgets#5**: <title> — <url>`, stored in `forge_threads`), and
//! every later line in it (`m.relates_to` `rel_type: m.thread`, `is_falling_back: true`, its
//! `m.in_reply_to` the root, for clients without threads).
//!
//! Lines are the hive's (the `forge` task's, through the outbox) or an agent's (its forge
//! tools, [`Core::forge_thread_post`]): an agent's is sent as the agent (identity assertion),
//! through the secret filter first, and refused if it holds a secret.

use anyhow::Context;
use ruma::{OwnedEventId, OwnedRoomId};
use serde_json::json;

use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::c0re::outbound::message_content;
use crate::forge::ItemRef;

/// A thread root in the store that is not an event id: the store is wrong, no retry mends it.
#[derive(Debug, thiserror::Error)]
#[error("the stored root of {item} is no event id: {root:?}")]
pub struct BadRoot {
    pub item: String,
    pub root: String,
}

/// The transaction id of `item`'s root on `server`: the same root whoever posts it first, and
/// a repeat is the same event.
pub fn root_txn(server: &str, item: &ItemRef) -> String {
    format!(
        "hh-forge-root-{server}-{}-{}-{}",
        item.repo.owner(),
        item.repo.name(),
        item.number
    )
    .to_ascii_lowercase()
}

/// The content of a line in the thread under `root`: Markdown, a notice when the hive's own.
pub fn thread_content(text: &str, root: &str, notice: bool) -> serde_json::Value {
    let mut content = message_content(text, None, None, notice);
    content["m.relates_to"] = json!({
        "rel_type": "m.thread",
        "event_id": root,
        "is_falling_back": true,
        "m.in_reply_to": { "event_id": root },
    });
    content
}

impl Core {
    /// The thread of `item` on `server`: the stored one, or a root posted now as the bot
    /// (`root_text`) and stored. The repository's room is made first if it is missing; a
    /// thread stored in a room that was made again since is begun again there.
    pub(crate) async fn forge_thread(
        &self,
        server: &str,
        item: &ItemRef,
        root_text: &str,
    ) -> anyhow::Result<(OwnedRoomId, OwnedEventId)> {
        let room = self.forge_room(&item.repo).await?;
        if let Some((stored_room, root)) = self.store().forge_thread(server, item)?
            && stored_room == room.as_str()
        {
            let root = OwnedEventId::try_from(root.as_str()).map_err(|_| BadRoot {
                item: item.to_string(),
                root: root.clone(),
            })?;
            return Ok((room, root));
        }
        let content = message_content(root_text, None, None, true);
        let root = self
            .send_raw(&room, None, &root_txn(server, item), &content)
            .await
            .with_context(|| format!("cannot begin the thread of {item}"))?;
        self.store()
            .set_forge_thread(server, item, room.as_str(), root.as_str())?;
        Ok((room, root))
    }

    /// Posts `text` (Markdown) in the thread of `item`, as `as_agent` (the hive's own user
    /// when `None`), making the repository's room and the item's thread first if they are
    /// missing; `txn_id` makes a repeat the same event. Returns the event id. An agent's text
    /// that holds a secret is refused (the operator is told, the agent learns the kind).
    pub async fn forge_thread_post(
        &self,
        item: &ItemRef,
        as_agent: Option<&AgentName>,
        text: &str,
        txn_id: &str,
    ) -> anyhow::Result<OwnedEventId> {
        let server = self
            .cfg()
            .forge
            .server_of(&item.repo)
            .with_context(|| format!("{} is not followed by any [[forge.servers]]", item.repo))?
            .name
            .clone();
        let (room, root) = self
            .forge_thread(&server, item, &format!("**{item}**"))
            .await?;
        let content = thread_content(text, root.as_str(), as_agent.is_none());
        let Some(agent) = as_agent else {
            return self.send_raw(&room, None, txn_id, &content).await;
        };
        let user = self
            .agents()
            .get(agent)
            .with_context(|| format!("no agent {agent} in this hive"))?
            .user_id
            .clone();
        self.guard(agent, &content).await?;
        match self.send_raw(&room, Some(&user), txn_id, &content).await {
            Ok(id) => Ok(id),
            Err(e) if crate::matrix::client::is_permanent(&e) => {
                // Granted the forge since the room was made: joined now, then once more.
                tracing::info!(%agent, %room, error = %format!("{e:#}"), "an agent's thread post was refused; repairing the room's members");
                self.ensure_forge_room(&item.repo).await?;
                self.send_raw(&room, Some(&user), txn_id, &content).await
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forge::RepoName;

    #[test]
    fn roots_and_lines() {
        let item = ItemRef {
            repo: RepoName::parse("Acme/Widgets").unwrap(),
            number: 5,
        };
        assert_eq!(
            root_txn("local", &item),
            "hh-forge-root-local-acme-widgets-5"
        );
        let line = thread_content("alice **opened**", "$root", true);
        assert_eq!(line["msgtype"], "m.notice");
        assert_eq!(line["body"], "alice **opened**");
        assert_eq!(
            line["m.relates_to"],
            json!({
                "rel_type": "m.thread", "event_id": "$root", "is_falling_back": true,
                "m.in_reply_to": {"event_id": "$root"},
            })
        );
        assert_eq!(
            thread_content("hi", "$root", false)["msgtype"],
            "m.text",
            "an agent's line is a message"
        );
    }
}
