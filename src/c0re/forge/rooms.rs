//! `#forge-<owner>-<repo>`: one room per followed repository, found by alias or made on its
//! first delivery (and at start for every followed repository), then known to routing like
//! every room of the hive (`RoomKey::Forge`).
//!
//! Members: the operators (invited, power 100), the hive's bot (its creator, 100), and every
//! agent whose `[[forge.grant]]` covers the repository (joined, the default power). Its name is
//! `forge: <owner>/<repo>`, its topic the repository's web page. It is a child of the space.

use std::collections::HashMap;

use anyhow::Context;
use ruma::OwnedRoomId;

use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::c0re::rooms::{RoomKey, RoomMap, RoomPlan};
use crate::config::ForgeServer;
use crate::forge::{ForgeKind, RepoName};

/// The web page of `repo` on `server`: the site's `<owner>/<repo>` for Gitea and Forgejo; for
/// GitHub, whose API is on `api.github.com`, `https://github.com/<owner>/<repo>` (an
/// Enterprise server's API is `<site>/api/v3`: its site then).
pub fn repo_web_url(server: &ForgeServer, repo: &RepoName) -> String {
    let mut site = server.url.clone();
    if server.kind == ForgeKind::Github {
        if site.host_str() == Some("api.github.com") {
            return format!("https://github.com/{repo}");
        }
        let path = site
            .path()
            .trim_end_matches('/')
            .trim_end_matches("/api/v3")
            .to_owned();
        site.set_path(&path);
    }
    format!("{}/{repo}", site.as_str().trim_end_matches('/'))
}

impl Core {
    /// The agents of this hive whose `[[forge.grant]]` covers `repo` (for any tool): the room's
    /// agent members.
    fn forge_members(&self, repo: &RepoName) -> Vec<AgentName> {
        self.agents()
            .all()
            .iter()
            .filter(|(_, e)| {
                e.spec()
                    .forge_grants
                    .iter()
                    .any(|g| g.repos.iter().any(|p| p.covers(repo)))
            })
            .map(|(n, _)| n.clone())
            .collect()
    }

    fn forge_plan(&self, server: &ForgeServer, repo: &RepoName) -> RoomPlan {
        RoomPlan {
            key: RoomKey::forge(repo),
            alias_local: repo.alias_localpart(),
            name: format!("forge: {}", repo.to_string().to_ascii_lowercase()),
            topic: repo_web_url(server, repo),
            space: false,
            federate: false,
            agents: self.forge_members(repo),
        }
    }

    /// The room of `repo` (followed by a server of `[forge]`): known already, found by its
    /// alias (its members repaired), or made now; linked into the space; known to routing.
    pub(crate) async fn forge_room(&self, repo: &RepoName) -> anyhow::Result<OwnedRoomId> {
        if let Some(room) = self.rooms().get(&RoomKey::forge(repo)) {
            return Ok(room);
        }
        self.ensure_forge_room(repo).await
    }

    /// Finds or makes the room of `repo` and repairs its members (an agent granted the forge
    /// since the room was made joins now).
    pub(crate) async fn ensure_forge_room(&self, repo: &RepoName) -> anyhow::Result<OwnedRoomId> {
        let server = self
            .cfg()
            .forge
            .server_of(repo)
            .with_context(|| format!("{repo} is not followed by any [[forge.servers]]"))?;
        let plan = self.forge_plan(server, repo);
        let (room, created) = self.ensure_room(&plan).await?;
        if created {
            tracing::info!(%repo, %room, "made the repository's room");
        }
        if let Some(space) = self.rooms().get(&RoomKey::Space) {
            self.link_child(&space, &room).await?;
        }
        self.rooms().add(plan.key, room.clone());
        Ok(room)
    }

    /// At start, before routing begins: the rooms of followed repositories the store knows,
    /// into the routing map (so an outbox post to one is not lost before the `forge` task has
    /// looked at them; it repairs their members once the hive is ready).
    pub(crate) fn known_forge_rooms(
        &self,
        stored: &HashMap<RoomKey, OwnedRoomId>,
        map: &mut RoomMap,
    ) {
        for (key, room) in stored {
            if let RoomKey::Forge(repo) = key
                && self.cfg().forge.server_of(repo).is_some()
            {
                map.insert(key.clone(), room.clone());
            }
        }
    }

    /// Once ready: the room of every followed repository, found, made or repaired. One that
    /// cannot be set up now is logged; its first delivery tries again.
    pub(crate) async fn forge_rooms_at_start(&self) {
        let repos: Vec<RepoName> = self
            .cfg()
            .forge
            .servers
            .iter()
            .flat_map(|s| s.repos.iter().cloned())
            .collect();
        for repo in repos {
            if let Err(e) = self.ensure_forge_room(&repo).await {
                tracing::warn!(%repo, error = %format!("{e:#}"), "cannot set up the repository's room; its next delivery tries again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_pages_of_repositories() {
        struct Case {
            name: &'static str,
            kind: ForgeKind,
            url: &'static str,
            want: &'static str,
        }
        let cases = [
            Case {
                name: "forgejo at the root",
                kind: ForgeKind::Forgejo,
                url: "http://127.0.0.1:3000",
                want: "http://127.0.0.1:3000/Acme/Widgets",
            },
            Case {
                name: "gitea under a path",
                kind: ForgeKind::Gitea,
                url: "https://example.org/git/",
                want: "https://example.org/git/Acme/Widgets",
            },
            Case {
                name: "github.com",
                kind: ForgeKind::Github,
                url: "https://api.github.com",
                want: "https://github.com/Acme/Widgets",
            },
            Case {
                name: "github enterprise",
                kind: ForgeKind::Github,
                url: "https://ghe.example.org/api/v3",
                want: "https://ghe.example.org/Acme/Widgets",
            },
        ];
        for c in cases {
            let server = ForgeServer {
                name: "s".into(),
                kind: c.kind,
                url: c.url.parse().unwrap(),
                token_file: "t".into(),
                webhook_secret_file: "w".into(),
                login: None,
                repos: vec![],
            };
            let repo = RepoName::parse("Acme/Widgets").unwrap();
            assert_eq!(repo_web_url(&server, &repo), c.want, "{}", c.name);
        }
    }
}
