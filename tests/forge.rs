//! The forge lanes end to end (issue 17): a pull request opened on the Gitea stand-in
//! (`tests/common/gitea.rs`) is delivered as Forgejo signs it → its thread appears in
//! `#forge-acme-widgets` → argus (the real Claude Code CLI, against a scripted Messages API)
//! calls `forge_get_pr`, then `forge_review` with a 🔴 on a line and the `head_sha` it read
//! (when the tool's schema takes one) → the stand-in received a `REQUEST_CHANGES` review with
//! that line comment on that commit; triage (the same CLI) labels the pull
//! request and requests the reviewer its `route:` line names → the stand-in received both, and
//! each agent's write is said in the thread.
//!
//! The scripted Messages API is strict: it records as a violation a request without
//! `max_tokens`, a `tool_result` answering no `tool_use` it sent, a tool it wants to call that
//! the request does not offer, a forge tool that answered an error, a forge notice without
//! the lines the agents read (`forge:`, `roles:`, `route:`). Both lists of violations (the
//! model's and the stand-in's) are asserted empty; a wait ends early when one appears.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use common::gitea::{self, Gitea, PullSeed};
use common::model_api::Contract;
use common::{Seen, TestHive};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(120);
const KEY: &str = "hh-test-claude-key-forge-4b2e";
const TOKEN: &str = "hh-forge-token-e2e-7d1c9a";
const SECRET: &str = "hh-webhook-secret-e2e-2a6f";
const REPO: &str = "acme/widgets";
const HEAD: &str = "9c2b7e1f0a3d5c8b6e4f2a1d0c9b8e7f6a5d4c3b";
/// The line argus comments on (in the diff's new side).
const LINE: u64 = 11;

/// What a scripted turn does next, by the `tool_use` id it answered.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    ArgusGotPr,
    ArgusReviewed,
    TriageLabeled,
    TriageRequested,
    TriageDiscussed,
}

#[derive(Default)]
struct Script {
    /// Every `tool_use` id sent, and the step it was.
    sent: HashMap<String, Step>,
    /// The `tool_use` ids whose results were acted on.
    answered: std::collections::HashSet<String>,
    /// The notices acted on, by model and text.
    handled: std::collections::HashSet<String>,
    violations: Vec<String>,
    requests: usize,
    /// For triage: the reviewer its `route:` line named, the route's why.
    route: Option<(String, String)>,
}

type Shared = Arc<Mutex<Script>>;

/// The forge notice's lines, from the latest core event in the conversation.
struct Notice {
    repo: String,
    number: u64,
    opened_pr: bool,
    roles: String,
    route: String,
}

fn user_texts(body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for m in body["messages"].as_array().into_iter().flatten() {
        if m["role"] != "user" {
            continue;
        }
        match &m["content"] {
            Value::String(s) => out.push(s.clone()),
            Value::Array(blocks) => {
                for b in blocks {
                    if b["type"] == "text" {
                        out.push(b["text"].as_str().unwrap_or("").to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Reads the latest `forge` core event's text: `forge: …`, `roles: …`, `route: …`.
fn notice(body: &Value) -> Result<Option<(String, Notice)>, String> {
    let Some(text) = user_texts(body)
        .into_iter()
        .rev()
        .find(|t| t.contains("reports a `forge` event"))
    else {
        return Ok(None);
    };
    let line = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::to_owned)
            .ok_or_else(|| format!("the forge notice has no `{prefix}` line:\n{text}"))
    };
    let head = line("forge: ")?;
    let kind_rest = head
        .strip_prefix("pull request ")
        .map(|r| (true, r))
        .or_else(|| head.strip_prefix("issue ").map(|r| (false, r)))
        .ok_or_else(|| format!("`forge:` names no pull request or issue: {head}"))?;
    let (is_pull, rest) = kind_rest;
    let item = rest.split(' ').next().unwrap_or("");
    let (repo, number) = item
        .split_once('#')
        .ok_or_else(|| format!("`forge:` names no owner/repo#n: {head}"))?;
    let number = number
        .parse()
        .map_err(|e| format!("`forge:` number {number:?}: {e}"))?;
    let action = rest.split(' ').nth(1).unwrap_or("");
    let n = Notice {
        repo: repo.to_owned(),
        number,
        opened_pr: is_pull && action == "opened",
        roles: line("roles: ")?,
        route: line("route: ")?,
    };
    Ok(Some((text.clone(), n)))
}

/// The `head_sha` in `forge_get_pr`'s answer (its JSON, or a text holding that JSON).
fn head_sha_in(answer: &str) -> Option<String> {
    if let Ok(pr) = serde_json::from_str::<Value>(answer) {
        return pr["head_sha"].as_str().map(str::to_owned);
    }
    let rest = answer.split_once("\"head_sha\"")?.1;
    let rest = rest
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    Some(rest.split('"').next()?.to_owned())
}

/// `route: iris, reviewer bob (route 1: path web/app.css)` → (`bob`, the whole line).
fn reviewer_of(route: &str) -> Option<String> {
    let rest = route.split_once(", reviewer ")?.1;
    Some(rest.split([' ', ',']).next()?.to_owned())
}

fn tool_use(s: &mut Script, step: Step, name: &str, input: Value) -> Value {
    let id = format!("toolu_{:02}", s.sent.len() + 1);
    s.sent.insert(id.clone(), step);
    json!([{"type": "tool_use", "id": id, "name": format!("mcp__hive__{name}"), "input": input}])
}

fn text(t: &str) -> Value {
    json!([{"type": "text", "text": t}])
}

/// One scripted answer: argus (model `claude-argus`) or triage (`claude-triage`).
fn decide(s: &mut Script, body: &Value) -> Value {
    s.requests += 1;
    let model = body["model"].as_str().unwrap_or("").to_owned();
    if body["max_tokens"].as_u64().is_none() {
        s.violations
            .push(format!("{model}: a request without max_tokens"));
    }
    let offered: Vec<String> = body["tools"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    // Whether `forge_review` takes the head it reviews (`head_sha`, required since the review
    // fix): a model reads the schema it is offered, and so does this one.
    let review_takes_head = body["tools"].as_array().into_iter().flatten().any(|t| {
        t["name"] == "mcp__hive__forge_review"
            && t["input_schema"]["properties"].get("head_sha").is_some()
    });
    // A request that offers no tool (a side request of the CLI's, if it makes one) is not a
    // turn of the agent's: answered, nothing consumed.
    if offered.is_empty() {
        return text("Nothing to do.");
    }
    // Every tool_result in the conversation answers a tool_use this API sent; the newest one
    // not answered yet is what this request is about (the CLI may merge a new prompt or a
    // reminder after it, so the last block is not the test).
    let mut fresh: Option<(Step, String, bool)> = None;
    for m in body["messages"].as_array().into_iter().flatten() {
        for b in m["content"].as_array().into_iter().flatten() {
            if b["type"] != "tool_result" {
                continue;
            }
            let id = b["tool_use_id"].as_str().unwrap_or("").to_owned();
            let Some(step) = s.sent.get(&id).copied() else {
                s.violations.push(format!(
                    "{model}: a tool_result for {id:?}, which was never sent"
                ));
                continue;
            };
            if s.answered.insert(id) {
                let content = match &b["content"] {
                    Value::String(t) => t.clone(),
                    Value::Array(p) => p.iter().filter_map(|p| p["text"].as_str()).collect(),
                    _ => String::new(),
                };
                fresh = Some((step, content, b["is_error"] == true));
            }
        }
    }
    let n = match notice(body) {
        Ok(n) => n,
        Err(e) => {
            s.violations.push(format!("{model}: {e}"));
            return text("I cannot read this notice.");
        }
    };
    let Some((prompt, n)) = n else {
        return text("Nothing for me.");
    };
    let call = |s: &mut Script, step: Step, name: &str, input: Value| {
        if !offered.iter().any(|o| o == &format!("mcp__hive__{name}")) {
            s.violations.push(format!(
                "{model}: {name} is not offered (offered: {offered:?})"
            ));
            return text("I may not.");
        }
        tool_use(s, step, name, input)
    };
    let item = json!({"repo": n.repo, "number": n.number});
    let with = |extra: Value| {
        let mut v = item.clone();
        for (k, x) in extra.as_object().expect("an object") {
            v[k] = x.clone();
        }
        v
    };
    if let Some((step, content, is_error)) = fresh {
        if is_error {
            s.violations
                .push(format!("{model}: {step:?} answered an error: {content}"));
            return text("The forge tool failed.");
        }
        return match step {
            Step::ArgusGotPr => {
                if !content.contains("src/parser.rs") || !content.contains("unwrap()") {
                    s.violations.push(format!(
                        "forge_get_pr's answer has no files or diff: {content}"
                    ));
                }
                // The head argus read, passed back so the core can hold the review to it.
                let head = head_sha_in(&content);
                let mut review = with(json!({
                    "body": "🔴 One bug: the parser panics on an input that ends early.\n🟢 The test for the last token.",
                    "comments": [{"path": "src/parser.rs", "line": LINE,
                                  "body": "🔴 `unwrap()` panics when the input ends early: return the error."}],
                }));
                if review_takes_head {
                    match head {
                        Some(h) => review["head_sha"] = json!(h),
                        None => s
                            .violations
                            .push(format!("forge_get_pr's answer has no head_sha: {content}")),
                    }
                }
                call(s, Step::ArgusReviewed, "forge_review", review)
            }
            Step::ArgusReviewed => text("Reviewed: changes requested."),
            Step::TriageLabeled => match s.route.clone() {
                Some((reviewer, _)) => call(
                    s,
                    Step::TriageRequested,
                    "forge_request_review",
                    with(json!({"reviewers": [reviewer]})),
                ),
                None => text("No reviewer to ask."),
            },
            Step::TriageRequested => {
                let (reviewer, why) = s.route.clone().unwrap_or_default();
                call(
                    s,
                    Step::TriageDiscussed,
                    "forge_discuss",
                    with(json!({
                        "body": format!("Labelled frontend and asked {reviewer} to review: {why}."),
                    })),
                )
            }
            Step::TriageDiscussed => text("Triaged."),
        };
    }
    // A notice is acted on once (a later request may carry it again).
    if !n.opened_pr || !s.handled.insert(format!("{model}\n{prompt}")) {
        return text("Noted.");
    }
    match model.as_str() {
        "claude-argus" if n.roles.contains("review") => {
            call(s, Step::ArgusGotPr, "forge_get_pr", item.clone())
        }
        "claude-triage" if n.roles.contains("triage") => {
            let Some(reviewer) = reviewer_of(&n.route) else {
                s.violations.push(format!(
                    "triage's route line names no reviewer: route: {}",
                    n.route
                ));
                return text("No route.");
            };
            s.route = Some((reviewer, n.route.clone()));
            call(
                s,
                Step::TriageLabeled,
                "forge_label",
                with(json!({"labels": ["frontend"]})),
            )
        }
        _ => {
            s.violations.push(format!(
                "{model} was told of an opened pull request with roles: {}",
                n.roles
            ));
            text("Not my role.")
        }
    }
}

/// The scripted model; what the real Messages API would refuse is answered 400 and recorded.
async fn messages(
    State((s, contract)): State<(Shared, Contract)>,
    headers: axum::http::HeaderMap,
    Json(body): Json<Value>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Some(refused) = contract.anthropic(&headers, &body) {
        return refused;
    }
    let content = decide(&mut s.lock().unwrap(), &body);
    let stop = common::model_api::stop_reason(&content);
    Json(
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
        "content": content, "stop_reason": stop, "stop_sequence": null,
        "usage": {"input_tokens": 30, "output_tokens": 6}}),
    )
    .into_response()
}

fn claude_bot(model: &str, tools: &[String]) -> String {
    let tools: Vec<String> = tools.iter().map(|t| format!("{t:?}")).collect();
    format!(
        "[brain]\nkind = \"claude-code\"\nmodel = \"{model}\"\nprovider = \"local-claude\"\n\
         [[forge.grant]]\nrepos = [\"*\"]\ntools = [{}]\n",
        tools.join(", ")
    )
}

/// The grants of the shipped bot, so the test runs what `bots/` ships.
fn shipped_tools(bot: &str) -> Vec<String> {
    let path = format!("{}/bots/{bot}/agent.toml", env!("CARGO_MANIFEST_DIR"));
    let toml: toml::Value = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    toml["forge"]["grant"][0]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{path} has no [[forge.grant]] tools"))
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argus_reviews_and_triage_routes_a_pull_request() {
    let Some(cli) = common::claude_code_cli() else {
        return;
    };
    let script: Shared = Arc::default();
    let contract = Contract::default();
    let app = axum::Router::new()
        .route("/v1/messages", axum::routing::post(messages))
        .with_state((script.clone(), contract.clone()));
    let base = common::serve_http(app).await;
    let (_k, key) = common::secret_file("anthropic.key", KEY);
    let (_t, token_file) = common::secret_file("forge.token", &format!("{TOKEN}\n"));
    let (_s, secret_file) = common::secret_file("forge.secret", &format!("{SECRET}\n"));

    let g = Gitea::start(TOKEN).await;
    for u in ["alice", "bob"] {
        g.add_user(u);
    }
    g.add_repo(REPO, &["bug", "frontend", "backend"]);
    g.add_pull(REPO, PullSeed {
        number: 5,
        title: "Fix the parser".into(),
        body: "It dropped the last token; the app's colour too.".into(),
        user: "alice".into(),
        head_sha: HEAD.into(),
        base: "main".into(),
        head: "fix-parser".into(),
        files: vec![
            ("src/parser.rs".into(), "modified".into(), 3, 1),
            ("web/app.css".into(), "modified".into(), 1, 0),
        ],
        diff: "diff --git a/src/parser.rs b/src/parser.rs\n--- a/src/parser.rs\n+++ b/src/parser.rs\n@@ -10,3 +10,5 @@\n fn parse() {\n-    let t = next();\n+    let t = next().unwrap();\n+    // the last token\n+    push(t);\n }\n".into(),
        labels: vec![],
    });

    let argus_tools = shipped_tools("argus");
    let triage_tools = shipped_tools("triage");
    let mut hive = TestHive::with_config(
        &[
            ("argus", claude_bot("claude-argus", &argus_tools)),
            ("triage", claude_bot("claude-triage", &triage_tools)),
            ("iris", common::scripted("iris")),
        ],
        &format!(
            "[providers.local-claude]\nkind = \"anthropic\"\nbase_url = \"{base}\"\napi_key_file = {key:?}\n\
             models = [\"claude-argus\", \"claude-triage\"]\n\
             [forge]\nreview_agent = \"argus\"\ntriage_agent = \"triage\"\n\
             [[forge.servers]]\nname = \"forgejo\"\nkind = \"forgejo\"\nurl = \"{}\"\n\
             token_file = {token_file:?}\nwebhook_secret_file = {secret_file:?}\nrepos = [\"{REPO}\"]\n\
             [[forge.routes]]\npaths = [\"web/\"]\nagent = \"iris\"\nreviewer = \"bob\"\n",
            g.url
        ),
    )
    .await;
    for bot in ["argus", "triage"] {
        let prompt = format!("{}/bots/{bot}/prompt.md", env!("CARGO_MANIFEST_DIR"));
        std::fs::copy(&prompt, hive.bots.join(bot).join("prompt.md")).unwrap();
    }
    hive.start_core_env(&[(
        hyperhive::brain::claude_code::CLI_ENV,
        cli.to_str().unwrap(),
    )]);
    let op = hive.operator().await;
    let bot = format!("@{}:{}", hive.cfg.sender_localpart, hive.cfg.server_name);
    let hook = format!("http://{}/_hyperhive/forge/forgejo", hive.cfg.listen);

    let payload = g.pull_request_payload(REPO, 5, "opened", "alice");
    let r = gitea::deliver(&hook, SECRET, "pull_request", "e2e-1", &payload).await;
    let status = r.status().as_u16();
    assert_eq!(
        status,
        200,
        "the delivery: {}",
        r.text().await.unwrap_or_default()
    );

    // The room is made on the first delivery; the operator is invited to it.
    let alias = matrix_sdk::ruma::RoomAliasId::parse(format!(
        "#forge-acme-widgets:{}",
        hive.cfg.server_name
    ))
    .unwrap();
    let deadline = Instant::now() + WAIT;
    let room = loop {
        match op
            .client
            .join_room_by_id_or_alias((&*alias).into(), &[])
            .await
        {
            Ok(room) => break room,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!(
                "{alias} was never made: {e}\n{}",
                common::logs_tail(hive.dir.path())
            ),
        }
    };
    let root_of = |m: &[Seen]| -> Option<Seen> {
        m.iter()
            .find(|x| {
                x.sender == bot
                    && x.thread.is_none()
                    && x.body.contains("pull request acme/widgets#5")
            })
            .cloned()
    };
    op.wait_until(&room, WAIT, "#5's thread root", |m| root_of(m).is_some())
        .await;

    // Both agents work the pull request; a violation ends the wait early.
    let failed = || !script.lock().unwrap().violations.is_empty() || !g.violations().is_empty();
    let done = || {
        !g.reviews_of(REPO, 5).is_empty()
            && !g.requested_of(REPO, 5).is_empty()
            && !g.labels_of(REPO, 5).is_empty()
    };
    let argus = format!("@argus:{}", hive.cfg.server_name);
    let triage = format!("@triage:{}", hive.cfg.server_name);
    let msgs = op
        .wait_until(
            &room,
            WAIT,
            "argus's review and triage's reasons in #5's thread",
            |m| {
                if failed() {
                    return true;
                }
                let Some(root) = root_of(m) else { return false };
                let thread: Vec<&Seen> = m
                    .iter()
                    .filter(|x| x.thread.as_ref() == Some(&root.event_id))
                    .collect();
                done()
                    && thread.iter().any(|x| {
                        x.sender == argus && x.body.contains("requested changes on acme/widgets#5")
                    })
                    && thread.iter().any(|x| {
                        x.sender == triage
                            && x.body.contains("asked bob to review")
                            && x.body.contains("route 1")
                    })
            },
        )
        .await;
    assert_eq!(
        script.lock().unwrap().violations,
        Vec::<String>::new(),
        "the scripted model saw violations"
    );
    assert_eq!(
        g.violations(),
        Vec::<String>::new(),
        "the hive broke Gitea's contract"
    );
    assert!(
        script.lock().unwrap().requests >= 6,
        "both agents ran their turns"
    );

    // argus read the pull request, then posted one request-changes review with the line comment.
    let received = g.received();
    assert!(
        received
            .iter()
            .any(|r| r.method == "GET" && r.path == "/api/v1/repos/acme/widgets/pulls/5"),
        "forge_get_pr read the pull request: {received:#?}"
    );
    let reviews: Vec<_> = received
        .iter()
        .filter(|r| r.path.ends_with("/pulls/5/reviews"))
        .collect();
    assert_eq!(reviews.len(), 1, "one review: {reviews:#?}");
    let review = reviews[0].body.clone().expect("a JSON review");
    assert_eq!(
        review["event"], "REQUEST_CHANGES",
        "a 🔴 requests changes: {review}"
    );
    assert_eq!(review["commit_id"], HEAD, "on the head commit: {review}");
    assert!(
        review["body"].as_str().unwrap_or("").contains("🔴 One bug"),
        "{review}"
    );
    let c = &review["comments"][0];
    assert_eq!(c["path"], "src/parser.rs", "{review}");
    assert_eq!(c["new_position"], LINE, "{review}");
    assert!(
        c["body"]
            .as_str()
            .unwrap_or("")
            .starts_with("🔴 `unwrap()` panics"),
        "{review}"
    );
    assert_eq!(reviews[0].status, 200);

    // triage labelled it and asked the route's reviewer.
    let labels: Vec<_> = received
        .iter()
        .filter(|r| r.path.ends_with("/issues/5/labels"))
        .collect();
    assert_eq!(labels.len(), 1, "{labels:#?}");
    assert_eq!(labels[0].body, Some(json!({"labels": ["frontend"]})));
    assert_eq!(g.labels_of(REPO, 5), vec!["frontend".to_owned()]);
    let asked: Vec<_> = received
        .iter()
        .filter(|r| r.path.ends_with("/pulls/5/requested_reviewers"))
        .collect();
    assert_eq!(asked.len(), 1, "{asked:#?}");
    assert_eq!(
        asked[0].body.as_ref().map(|b| b["reviewers"].clone()),
        Some(json!(["bob"]))
    );
    assert_eq!(g.requested_of(REPO, 5), vec!["bob".to_owned()]);
    assert_eq!(
        received.iter().filter(|r| r.method == "POST").count(),
        3,
        "nothing else was written (no comment, no second review): {received:#?}"
    );

    // The thread: the hive's lines and each agent's.
    let root = root_of(&msgs).expect("the root");
    let thread: Vec<&Seen> = msgs
        .iter()
        .filter(|x| x.thread.as_ref() == Some(&root.event_id))
        .collect();
    assert!(
        thread
            .iter()
            .any(|x| x.sender == bot && x.body.starts_with("alice opened")),
        "{thread:#?}"
    );
    assert!(
        thread
            .iter()
            .any(|x| x.sender == triage && x.body.contains("route 1")),
        "triage said why, naming the route: {thread:#?}"
    );
    for m in &msgs {
        for secret in [TOKEN, SECRET, KEY] {
            assert!(
                !m.body.contains(secret),
                "a secret reached the room: {}",
                m.body
            );
        }
    }
    let store = hyperhive::store::Store::open(&hive.data.join("c0re.db")).unwrap();
    let log = store.audit_log(1000).unwrap();
    for (actor, action) in [
        ("argus", "forge_get_pr"),
        ("argus", "forge_review"),
        ("triage", "forge_label"),
        ("triage", "forge_request_review"),
    ] {
        assert!(
            log.iter()
                .any(|e| e.actor == actor && e.action == action && e.outcome == "ok"),
            "{actor}'s {action} is audited ok"
        );
    }
    contract.assert_kept();
    assert_eq!(hive.stop_core().code(), Some(0));
}
