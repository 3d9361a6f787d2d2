//! `POST /_hyperhive/forge/{server}` on the appservice endpoint: a forge's webhook deliveries
//! into the hive (docs/forge.md). Decide-then-act: [`judge`] is pure over the request and the
//! server's configuration; the handler reads the body and the secret, and records.
//!
//! Rules, in this order (each refusal logged at `warn` with the server, the status and why,
//! never the body or the secret; every answer is JSON):
//! 1. the body is read in full, at most `forge.max_webhook_bytes`: beyond, `413`;
//! 2. `{server}` not a `[[forge.servers]]` name: `404`; a method but POST: `405`;
//! 3. the signature ([`webhook::verify`]) under the server's webhook secret: missing `401`,
//!    wrong or not hex `403`. Nothing else is looked at before it holds;
//! 4. the delivery id and event name ([`Delivery::from_headers`]): missing or bad `400`;
//! 5. the payload ([`webhook::read`]): malformed `400` naming what; an event the hive does not
//!    follow, or a repository the server does not follow: `200 {"ok":true,"ignored":"<why>"}`;
//! 6. recorded once ([`Store::record_delivery`](crate::store::Store::record_delivery)): a
//!    delivery id the server sent before is `409`, nothing recorded; a new one `200
//!    {"ok":true,"delivery":"<id>"}` and the `forge` task woken.
//!
//! The webhook secret is read from `webhook_secret_file` on each delivery (one trailing newline
//! trimmed): a secret rotated on disk holds at once, and deliveries are rare. An unreadable
//! or empty secret file is the hive's fault: `500`, logged as an error.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any};
use serde_json::json;

use crate::c0re::Core;
use crate::config::ForgeServer;
use crate::forge::webhook::{self, Delivery, ForgeEvent, Read, SignatureError};
use crate::store::Recorded;

/// The webhook's path on the appservice endpoint.
pub const PATH: &str = "/_hyperhive/forge/{server}";

/// The webhook's route: every method (a method but POST is refused after the server is
/// known, as the rules order it), the body capped at `forge.max_webhook_bytes`.
pub fn route(core: &Core) -> MethodRouter<Core> {
    any(webhook).layer(DefaultBodyLimit::max(core.cfg().forge.max_webhook_bytes))
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Refused with `status`, and why.
    Refuse { status: StatusCode, why: String },
    /// A good delivery of something the hive does not follow: `200`, and why.
    Ignore(String),
    /// A good delivery of a followed event: record it.
    Record {
        delivery: Delivery,
        event: Box<ForgeEvent>,
    },
}

fn refuse(status: StatusCode, why: impl Into<String>) -> Verdict {
    Verdict::Refuse {
        status,
        why: why.into(),
    }
}

/// The verdict on a request to server `name`: `server` is its configuration and webhook
/// secret (`None` when no server has that name); the rules are the module's.
pub fn judge(
    name: &str,
    method: &Method,
    server: Option<(&ForgeServer, &[u8])>,
    headers: &HeaderMap,
    body: &[u8],
) -> Verdict {
    let Some((server, secret)) = server else {
        return refuse(
            StatusCode::NOT_FOUND,
            format!("no [[forge.servers]] is named {name:?}"),
        );
    };
    if method != Method::POST {
        return refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not POST"),
        );
    }
    if let Err(e) = webhook::verify(server.kind, headers, secret, body) {
        let status = match e {
            SignatureError::Missing(_) => StatusCode::UNAUTHORIZED,
            SignatureError::NotHex(_) | SignatureError::Wrong(_) => StatusCode::FORBIDDEN,
        };
        return refuse(status, e.to_string());
    }
    let delivery = match Delivery::from_headers(server.kind, headers) {
        Ok(d) => d,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match webhook::read(server.kind, &delivery.event, body) {
        Err(e) => refuse(StatusCode::BAD_REQUEST, e.to_string()),
        Ok(Read::Ignored(why)) => Verdict::Ignore(why),
        Ok(Read::Event(event)) if !server.follows(&event.item.repo) => {
            Verdict::Ignore(format!("{} is not followed", event.item.repo))
        }
        Ok(Read::Event(event)) => Verdict::Record { delivery, event },
    }
}

/// The webhook secret in `server`'s `webhook_secret_file`, one trailing newline trimmed.
async fn read_secret(server: &ForgeServer) -> anyhow::Result<Vec<u8>> {
    let path = &server.webhook_secret_file;
    let mut bytes = tokio::fs::read(path).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot read the webhook secret file {}: {e}",
            path.display()
        )
    })?;
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    anyhow::ensure!(
        !bytes.is_empty(),
        "the webhook secret file {} is empty",
        path.display()
    );
    Ok(bytes)
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// A refusal, logged and answered.
fn refused(core: &Core, name: &str, status: StatusCode, why: &str) -> Response {
    let why = core.shown(why);
    // The name is the request's: bounded and escaped in the log.
    let logged: String = name.chars().take(64).collect();
    tracing::warn!(server = ?logged, status = status.as_u16(), why = %why, "refused a forge webhook");
    let mut resp = answer(status, json!({ "error": why }));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    resp
}

async fn webhook(State(core): State<Core>, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    // The server's name from the path (this reads no body), then (1.) the body, whole, before
    // any answer: a refusal never leaves unread bytes on the connection.
    let name = match Path::<String>::from_request_parts(&mut parts, &core).await {
        Ok(Path(name)) => Some(name),
        Err(_) => None,
    };
    let shown_name = name.as_deref().unwrap_or("?");
    let body = match Bytes::from_request(Request::from_parts(parts.clone(), body), &()).await {
        Ok(b) => b,
        Err(rejection) => {
            let status = rejection.status();
            let why = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!(
                    "the body is larger than forge.max_webhook_bytes ({} bytes)",
                    core.cfg().forge.max_webhook_bytes
                )
            } else {
                format!("the body could not be read: {rejection}")
            };
            return refused(&core, shown_name, status, &why);
        }
    };
    let Some(name) = name else {
        return refused(
            &core,
            shown_name,
            StatusCode::NOT_FOUND,
            "the path names no server",
        );
    };
    let server = core.cfg().forge.server(&name);
    let secret = match server {
        Some(s) => match read_secret(s).await {
            Ok(secret) => Some(secret),
            Err(e) => {
                tracing::error!(server = %s.name, error = %format!("{e:#}"), "cannot check a forge webhook");
                return answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({ "error": "the hive cannot check this webhook: its secret is missing (see the hive's log)" }),
                );
            }
        },
        None => None,
    };
    let verdict = judge(
        &name,
        &parts.method,
        server.zip(secret.as_deref()),
        &parts.headers,
        &body,
    );
    match verdict {
        Verdict::Refuse { status, why } => refused(&core, &name, status, &why),
        Verdict::Ignore(why) => {
            let why = core.shown(&why);
            tracing::info!(server = %name, why = %why, "ignored a forge webhook");
            answer(StatusCode::OK, json!({ "ok": true, "ignored": why }))
        }
        Verdict::Record { delivery, event } => record(&core, &name, delivery, event).await,
    }
}

/// Records a good delivery once and wakes the `forge` task.
async fn record(core: &Core, name: &str, delivery: Delivery, event: Box<ForgeEvent>) -> Response {
    let store = core.store().clone();
    let (server, d) = (name.to_owned(), delivery.clone());
    let item = event.item.to_string();
    // sqlite is quick but blocking: keep it off the async workers.
    let recorded = tokio::task::spawn_blocking(move || {
        store.record_delivery(&server, &d.id, &d.event, &event)
    })
    .await;
    match recorded {
        Ok(Ok(Recorded::New(row))) => {
            tracing::info!(server = %name, delivery = %delivery.id, event = %delivery.event, item = %item, row, "recorded a forge delivery");
            core.forge().wake.notify_one();
            answer(
                StatusCode::OK,
                json!({ "ok": true, "delivery": delivery.id }),
            )
        }
        Ok(Ok(Recorded::Duplicate)) => refused(
            core,
            name,
            StatusCode::CONFLICT,
            &format!("delivery {} was already received", delivery.id),
        ),
        Ok(Err(e)) => {
            // Not answering 2xx makes the forge send it again (or the operator redeliver).
            tracing::error!(server = %name, delivery = %delivery.id, error = %format!("{e:#}"), "could not record a forge delivery");
            answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({ "error": "could not record the delivery" }),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "recording a forge delivery failed");
            answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({ "error": "internal error" }),
            )
        }
    }
}

#[cfg(test)]
mod tests;
