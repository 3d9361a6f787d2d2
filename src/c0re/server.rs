//! The appservice HTTP API the homeserver calls (application service API v1).
//!
//! Rules:
//! - every endpoint reads the whole body first ([`body_first`]: Synapse's next attempt on the
//!   connection fails with `400 Bad request syntax` otherwise), at most [`MAX_TRANSACTION`] for a
//!   transaction and axum's default (2 MiB) elsewhere, `413` beyond;
//! - then the homeserver's token ([`HsToken`], checked in constant time): `Authorization: Bearer
//!   <hs_token>`, nothing else (no `access_token` query parameter): `401 M_UNAUTHORIZED` when
//!   missing, `403 M_FORBIDDEN` when wrong;
//! - a transaction (ruma's `push_events` body, [`PushEvents`]) is persisted and answered `{}`;
//!   the work happens later. Malformed JSON is `400 M_NOT_JSON`; before the rooms are known,
//!   `503` (Synapse sends it again). A transaction answered before in this run is answered at
//!   once (the event-id dedupe in sqlite is the guarantee, this is a shortcut);
//! - a user query registers a known agent on the spot; anything else, and every room alias, is
//!   `404 M_NOT_FOUND`. Unknown paths are `404 M_UNRECOGNIZED`.
//! - `/_hyperhive/forge/{server}` is a forge's webhook, not the homeserver's (no hs_token; its
//!   own body cap and signature): `forge/ingress.rs`.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post, put};
use ruma::OwnedTransactionId;
use ruma::events::AnyTimelineEvent;
use ruma::serde::Raw;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::Core;
use super::forge::ingress;
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
            body_first_route(put(transaction))
                .layer(axum::extract::DefaultBodyLimit::max(MAX_TRANSACTION)),
        )
        .route(
            "/_matrix/app/v1/users/{user_id}",
            body_first_route(get(query_user)),
        )
        .route(
            "/_matrix/app/v1/rooms/{alias}",
            body_first_route(get(query_alias)),
        )
        .route("/_matrix/app/v1/ping", body_first_route(post(ping)))
        .route(ingress::PATH, ingress::route(&core))
        .fallback(not_found)
        .with_state(core)
}

/// `route` with its body read before any extractor may refuse the request.
fn body_first_route(route: MethodRouter<Core>) -> MethodRouter<Core> {
    route.layer(axum::middleware::from_fn(body_first))
}

/// Reads the whole body (within the route's body limit) before the request goes on, so that a
/// refusal never leaves unread bytes on the connection.
async fn body_first(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    match Bytes::from_request(Request::from_parts(parts.clone(), body), &()).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(rejection) => rejection.into_response(),
    }
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

/// Proof that a request carries the homeserver's token: an extractor, so no handler checks it.
#[derive(Debug)]
pub struct HsToken;

/// Why a request is not the homeserver's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unauthorized {
    /// No `Authorization` header.
    #[error("missing hs_token")]
    Missing,
    /// A header that is not `Bearer <hs_token>`.
    #[error("bad hs_token")]
    Wrong,
}

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        let message = self.to_string();
        match self {
            Unauthorized::Missing => error(StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED", &message),
            Unauthorized::Wrong => error(StatusCode::FORBIDDEN, "M_FORBIDDEN", &message),
        }
    }
}

/// Whether `header` (the request's `Authorization`) presents `hs_token`, compared in constant
/// time. Only the `Bearer ` scheme, spelled so, is read.
pub fn check_hs_token(header: Option<&HeaderValue>, hs_token: &str) -> Result<(), Unauthorized> {
    let value = header.ok_or(Unauthorized::Missing)?;
    let presented = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(presented.as_bytes().ct_eq(hs_token.as_bytes())) {
        Ok(())
    } else {
        Err(Unauthorized::Wrong)
    }
}

impl FromRequestParts<Core> for HsToken {
    type Rejection = Unauthorized;

    async fn from_request_parts(parts: &mut Parts, core: &Core) -> Result<Self, Unauthorized> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION);
        check_hs_token(header, core.hs_token())
            .map(|()| HsToken)
            .inspect_err(|e| {
                if *e == Unauthorized::Wrong {
                    tracing::warn!("refused a request with a wrong hs_token");
                }
            })
    }
}

/// The body of `PUT /_matrix/app/v1/transactions/{txnId}`: the fields of ruma's
/// `push_events::v1::Request` the core reads, with its event type. (ruma's own request type
/// requires `events`; a body without it has always been an empty transaction here.)
/// Ephemeral events are not read.
#[derive(Debug, Deserialize)]
pub struct PushEvents {
    #[serde(default)]
    pub events: Vec<Raw<AnyTimelineEvent>>,
}

#[tracing::instrument(skip_all, fields(txn_id = %txn_id))]
async fn transaction(
    State(core): State<Core>,
    _: HsToken,
    Path(txn_id): Path<OwnedTransactionId>,
    body: Bytes,
) -> Response {
    let received_us = now_us();
    let txn: PushEvents = match serde_json::from_slice(&body) {
        Ok(t) => t,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "M_NOT_JSON",
                &format!("transaction body: {e}"),
            );
        }
    };
    if !core.rooms().is_ready() {
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
    if core.answered_txn(txn_id.as_str(), &body) {
        tracing::debug!("transaction already answered in this run");
        return axum::Json(json!({})).into_response();
    }
    let mut events = Vec::with_capacity(txn.events.len());
    for raw in txn.events {
        // Events without the fields we route on are not ours to judge; skip, don't fail the txn.
        match raw.deserialize_as_unchecked::<TimelineEvent>() {
            Ok(ev) => events.push(ev),
            Err(e) => tracing::debug!(error = %e, "skipped an event the core does not route"),
        }
    }
    let core2 = core.clone();
    let n = events.len();
    // sqlite is quick but blocking: keep it off the async workers.
    match tokio::task::spawn_blocking(move || core2.accept(&events, received_us)).await {
        Ok(Ok(())) => {
            core.remember_txn(txn_id.as_str(), &body);
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
async fn query_user(State(core): State<Core>, _: HsToken, Path(user_id): Path<String>) -> Response {
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
async fn query_alias(_: HsToken) -> Response {
    error(StatusCode::NOT_FOUND, "M_NOT_FOUND", "no such room")
}

async fn ping(_: HsToken) -> Response {
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

#[cfg(test)]
mod tests;
