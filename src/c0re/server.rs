//! The appservice HTTP API the homeserver calls (application service API v1).
//!
//! Every endpoint reads the whole body first (Synapse's next attempt fails with `400 Bad request
//! syntax` otherwise), then checks `Authorization: Bearer <hs_token>` in constant time: 401 when
//! missing, 403 when wrong. A transaction is persisted and answered; the work happens later.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::Core;
use super::routing::TimelineEvent;
use crate::agent_spec::AgentName;
use crate::store::now_us;

/// The largest transaction Synapse sends: 100 events of at most 64 KiB each, plus up to 100
/// ephemeral events and the JSON around them.
pub const MAX_TRANSACTION: usize = 16 << 20;

pub fn router(core: Core) -> Router {
    Router::new()
        .route(
            "/_matrix/app/v1/transactions/{txn_id}",
            put(transaction).layer(axum::extract::DefaultBodyLimit::max(MAX_TRANSACTION)),
        )
        .route("/_matrix/app/v1/users/{user_id}", get(query_user))
        .route("/_matrix/app/v1/rooms/{alias}", get(query_alias))
        .route("/_matrix/app/v1/ping", post(ping))
        .fallback(not_found)
        .with_state(core)
}

fn error(status: StatusCode, errcode: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "errcode": errcode, "error": message })),
    )
        .into_response()
}

async fn not_found(_body: Bytes) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "M_UNRECOGNIZED",
        "unrecognized request",
    )
}

/// Checks the homeserver's token: `Some` is the refusal to send.
fn refuse(core: &Core, headers: &HeaderMap) -> Option<Response> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "M_UNAUTHORIZED",
            "missing hs_token",
        ));
    };
    let presented = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(presented.as_bytes().ct_eq(core.hs_token().as_bytes())) {
        None
    } else {
        tracing::warn!("refused a request with a wrong hs_token");
        Some(error(StatusCode::FORBIDDEN, "M_FORBIDDEN", "bad hs_token"))
    }
}

#[derive(Deserialize)]
struct Transaction {
    #[serde(default)]
    events: Vec<serde_json::Value>,
}

#[tracing::instrument(skip_all, fields(txn_id = %txn_id))]
async fn transaction(
    State(core): State<Core>,
    Path(txn_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let received_us = now_us();
    if let Some(r) = refuse(&core, &headers) {
        return r;
    }
    let txn: Transaction = match serde_json::from_slice(&body) {
        Ok(t) => t,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "M_NOT_JSON",
                &format!("transaction body: {e}"),
            );
        }
    };
    if !core.is_ready() {
        // Not knowing the rooms yet, the core could not route; Synapse will send it again.
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "M_UNKNOWN",
            "hive-c0re is starting",
        );
    }
    // Answered before in this run: the store committed it then. The key is recorded only
    // after the commit below, so a re-send that arrives while the first is being stored goes
    // through the store too (deduplicated there by event id), never answered early.
    if core.answered_txn(&txn_id, &body) {
        tracing::debug!("transaction already answered in this run");
        return axum::Json(json!({})).into_response();
    }
    let mut events = Vec::with_capacity(txn.events.len());
    for raw in txn.events {
        // Events without the fields we route on are not ours to judge; skip, don't fail the txn.
        match serde_json::from_value::<TimelineEvent>(raw) {
            Ok(ev) => events.push(ev),
            Err(e) => tracing::debug!(error = %e, "skipped an event the core does not route"),
        }
    }
    let core2 = core.clone();
    let n = events.len();
    // sqlite is quick but blocking: keep it off the async workers.
    match tokio::task::spawn_blocking(move || core2.accept(&events, received_us)).await {
        Ok(Ok(())) => {
            core.remember_txn(&txn_id, &body);
            tracing::debug!(events = n, "transaction persisted");
            axum::Json(json!({})).into_response()
        }
        Ok(Err(e)) => {
            // Not answering 200 makes Synapse send the same transaction again: nothing is lost.
            tracing::error!(error = %format!("{e:#}"), "could not persist transaction");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "M_UNKNOWN",
                "could not persist the transaction",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "transaction task failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "M_UNKNOWN",
                "internal error",
            )
        }
    }
}

/// The homeserver asks whether a user in our namespace exists (e.g. someone invited it).
/// Known agents are registered on the spot; anything else does not exist.
async fn query_user(
    State(core): State<Core>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    _body: Bytes,
) -> Response {
    if let Some(r) = refuse(&core, &headers) {
        return r;
    }
    let known = ruma::UserId::parse(&user_id)
        .ok()
        .and_then(|u| core.cfg().agent_of(&u))
        .filter(|n: &AgentName| core.agents().get(n).is_some());
    match known {
        Some(name) => match core.register_agent(&name).await {
            Ok(()) => axum::Json(json!({})).into_response(),
            Err(e) => {
                tracing::warn!(agent = %name, error = %format!("{e:#}"), "could not register agent on query");
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "M_UNKNOWN",
                    "could not create the user",
                )
            }
        },
        None => error(StatusCode::NOT_FOUND, "M_NOT_FOUND", "no such user"),
    }
}

/// Rooms are created by the core at start, never on demand.
async fn query_alias(
    State(core): State<Core>,
    Path(_alias): Path<String>,
    headers: HeaderMap,
    _body: Bytes,
) -> Response {
    if let Some(r) = refuse(&core, &headers) {
        return r;
    }
    error(StatusCode::NOT_FOUND, "M_NOT_FOUND", "no such room")
}

async fn ping(State(core): State<Core>, headers: HeaderMap, _body: Bytes) -> Response {
    if let Some(r) = refuse(&core, &headers) {
        return r;
    }
    axum::Json(json!({})).into_response()
}

impl Core {
    fn answered_txn(&self, txn_id: &str, body: &[u8]) -> bool {
        self.inner
            .txns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&super::RecentTxns::key(txn_id, body))
    }

    fn remember_txn(&self, txn_id: &str, body: &[u8]) {
        self.inner
            .txns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(super::RecentTxns::key(txn_id, body));
    }
}
