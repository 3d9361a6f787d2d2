-- A purge request names the destroy it was filed against (the kept_agents row's approval_id
-- then): its confirmation is refused if the agent was revived and destroyed again since.
CREATE TABLE purge_of (
    approval_id INTEGER PRIMARY KEY REFERENCES approvals (id),
    destroy_id  INTEGER NOT NULL
);
