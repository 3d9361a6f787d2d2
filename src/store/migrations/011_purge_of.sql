-- A purge request names the destroy it was filed against (the kept_agents row's approval_id
-- then): its confirmation is refused if the agent was revived and destroyed again since.
CREATE TABLE purge_of (
    approval_id INTEGER PRIMARY KEY REFERENCES approvals (id),
    destroy_id  INTEGER NOT NULL
);

-- A purge still open from before this table existed is tied to the destroy its agent is kept by
-- now (the only one it can have been filed against, unless a revive came between: then it is
-- stale, and a later destroy makes it so).
INSERT INTO purge_of (approval_id, destroy_id)
SELECT a.id, k.approval_id
FROM approvals a JOIN kept_agents k ON k.name = a.agent
WHERE a.kind = 'purge' AND a.state IN ('pending', 'approved', 'confirming');
