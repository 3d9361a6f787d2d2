//! Each pull request's or issue's thread in its repository's room. (Issue 17, part B.)

use ruma::OwnedEventId;

use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::forge::ItemRef;

impl Core {
    /// Posts `text` (Markdown) in the thread of `item`, as `as_agent` (the hive's own user
    /// when `None`), making the repository's room and the item's thread first if they are
    /// missing; `txn_id` makes a repeat the same event. Returns the event id.
    pub async fn forge_thread_post(
        &self,
        item: &ItemRef,
        as_agent: Option<&AgentName>,
        text: &str,
        txn_id: &str,
    ) -> anyhow::Result<OwnedEventId> {
        let _ = (item, as_agent, text, txn_id);
        anyhow::bail!("forge threads are not built yet (issue 17, part B)")
    }
}
