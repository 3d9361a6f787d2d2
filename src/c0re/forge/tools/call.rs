//! A forge tool's arguments read into a typed [`Call`]: the item a [`RepoName`] and a
//! number of 1 or more, bodies not blank and at most [`MAX_POST`] bytes, 1 to [`MAX_NAMES`]
//! labels or reviewers, at most [`MAX_LINE_COMMENTS`] line comments each on a path and a line,
//! a review's `head_sha` a commit sha (hex).

use serde::Deserialize;
use serde_json::{Value, json};

use super::{MAX_LINE_COMMENTS, MAX_NAMES, MAX_POST, capped};
use crate::forge::client::LineComment;
use crate::forge::{ForgeTool, ItemRef, RepoName};

/// One forge call, its arguments read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    GetPr,
    GetIssue,
    Comment {
        body: String,
    },
    Label {
        labels: Vec<String>,
    },
    RequestReview {
        reviewers: Vec<String>,
    },
    /// A review of the pull request at `head_sha`, the head the agent read.
    Review {
        body: String,
        comments: Vec<LineComment>,
        head_sha: String,
    },
    Discuss {
        body: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemArgs {
    repo: String,
    number: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BodyArgs {
    repo: String,
    number: u64,
    body: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelArgs {
    repo: String,
    number: u64,
    labels: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewerArgs {
    repo: String,
    number: u64,
    reviewers: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewArgs {
    repo: String,
    number: u64,
    body: String,
    #[serde(default)]
    comments: Vec<LineComment>,
    head_sha: String,
}

fn read<T: serde::de::DeserializeOwned>(tool: ForgeTool, v: &Value) -> Result<T, String> {
    let v = if v.is_null() { json!({}) } else { v.clone() };
    serde_json::from_value(v).map_err(|e| format!("bad arguments for {}: {e}", tool.name()))
}

fn text(what: &str, s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if s.len() > MAX_POST {
        return Err(format!(
            "the {what} is {} bytes, more than the {MAX_POST} allowed",
            s.len()
        ));
    }
    Ok(s.to_owned())
}

fn name_list(what: &str, names: Vec<String>) -> Result<Vec<String>, String> {
    if names.is_empty() || names.len() > MAX_NAMES {
        return Err(format!("give 1 to {MAX_NAMES} {what}"));
    }
    for n in &names {
        if n.trim().is_empty() || n.len() > 100 || n.chars().any(char::is_control) {
            return Err(format!("{n:?} is not one of the {what}"));
        }
    }
    Ok(names)
}

/// Reads a call's arguments: which item, and what to do (bounded, typed).
pub fn parse_call(tool: ForgeTool, v: &Value) -> Result<(ItemRef, Call), String> {
    let item = |repo: &str, number: u64| -> Result<ItemRef, String> {
        if number == 0 {
            return Err("number must be 1 or more".into());
        }
        Ok(ItemRef {
            repo: RepoName::parse(repo).map_err(|e| e.to_string())?,
            number,
        })
    };
    Ok(match tool {
        ForgeTool::ForgeGetPr | ForgeTool::ForgeGetIssue => {
            let a: ItemArgs = read(tool, v)?;
            let call = if tool == ForgeTool::ForgeGetPr {
                Call::GetPr
            } else {
                Call::GetIssue
            };
            (item(&a.repo, a.number)?, call)
        }
        ForgeTool::ForgeComment | ForgeTool::ForgeDiscuss => {
            let a: BodyArgs = read(tool, v)?;
            let body = text("body", &a.body)?;
            let call = if tool == ForgeTool::ForgeComment {
                Call::Comment { body }
            } else {
                Call::Discuss { body }
            };
            (item(&a.repo, a.number)?, call)
        }
        ForgeTool::ForgeLabel => {
            let a: LabelArgs = read(tool, v)?;
            let labels = name_list("labels", a.labels)?;
            (item(&a.repo, a.number)?, Call::Label { labels })
        }
        ForgeTool::ForgeRequestReview => {
            let a: ReviewerArgs = read(tool, v)?;
            let reviewers = name_list("reviewers", a.reviewers)?;
            (item(&a.repo, a.number)?, Call::RequestReview { reviewers })
        }
        ForgeTool::ForgeReview => {
            let a: ReviewArgs = read(tool, v)?;
            let body = text("body", &a.body)?;
            if a.comments.len() > MAX_LINE_COMMENTS {
                return Err(format!("at most {MAX_LINE_COMMENTS} line comments"));
            }
            for c in &a.comments {
                if c.line == 0 || c.path.trim().is_empty() {
                    return Err(format!(
                        "a line comment needs a path and a line of 1 or more ({}:{})",
                        c.path, c.line
                    ));
                }
                text("line comment", &c.body)?;
            }
            let head_sha = a.head_sha.trim().to_ascii_lowercase();
            if head_sha.is_empty()
                || head_sha.len() > 64
                || !head_sha.chars().all(|c| c.is_ascii_hexdigit())
            {
                return Err(format!(
                    "head_sha {:?} is not a commit sha: give the head_sha forge_get_pr answered",
                    capped(&a.head_sha, 80)
                ));
            }
            let call = Call::Review {
                body,
                comments: a.comments,
                head_sha,
            };
            (item(&a.repo, a.number)?, call)
        }
    })
}
