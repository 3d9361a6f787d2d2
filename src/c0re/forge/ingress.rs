//! `POST /_hyperhive/forge/{server}` on the appservice endpoint: a forge's webhook deliveries
//! into the hive (docs/forge.md). Decide-then-act: [`judge`] is pure over the request and the
//! server's configuration; the handler reads the body and the secret, and records.
//!
//! Rules, in this order (every answer is JSON):
//! 0. at most [`IN_FLIGHT`] requests are served at once (the route shares the appservice's
//!    listener, and each may buffer up to `forge.max_webhook_bytes`): one more is `503`, its
//!    body unread;
//! 1. the body is read in full, at most `forge.max_webhook_bytes`: beyond, `413`;
//! 2. `{server}` not a `[[forge.servers]]` name: `404`; a method but POST: `405`;
//! 3. the signature ([`webhook::verify`]) under the server's webhook secret: missing `401`,
//!    wrong or not hex `403`. Nothing else is looked at before it holds;
//! 4. the delivery id and event name ([`Delivery::from_headers`]): missing or bad `400`;
//! 5. the payload ([`webhook::read`]): malformed `400` naming what; an event the hive does not
//!    follow, or a repository the server does not follow: `200 {"ok":true,"ignored":"<why>"}`;
//! 6. recorded once ([`Store::record_signed_delivery`](crate::store::Store::record_signed_delivery)):
//!    a delivery id the server sent before, or a body it sent before under any id (the id
//!    header is not signed: a captured body could come back under a fresh one), is `409`,
//!    nothing recorded; a new one `200 {"ok":true,"delivery":"<id>"}` and the `forge` task
//!    woken.
//!
//! Logging: a refusal before the signature holds (0–3) can be sent by anyone, so each is
//! logged at `debug` and they are said at `warn` at most once a minute per server (one bucket
//! for every name that is no server: [`Refusals`]); a refusal after it (4–6) is logged at
//! `warn`. Never the body or the secret.
//!
//! The webhook secret is read from `webhook_secret_file` on each delivery, bounded and
//! trimmed like every key file ([`read_key_file`]): a secret rotated on disk holds at once,
//! and deliveries are rare. An unreadable or empty secret file is the hive's fault: `500`,
//! logged as an error.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any};
use serde_json::json;

use crate::c0re::Core;
use crate::config::{ForgeServer, read_key_file};
use crate::forge::webhook::{self, Delivery, ForgeEvent, Read, SignatureError};
use crate::store::Recorded;

/// The webhook's path on the appservice endpoint.
pub const PATH: &str = "/_hyperhive/forge/{server}";

/// How many webhook requests are served at once; one more is `503`. A forge sends one
/// delivery at a time per hook, so this is room for several forges and redeliveries.
pub const IN_FLIGHT: usize = 8;

/// How often a server's refusals before the signature holds are said at `warn`.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

/// The webhook's route: every method (a method but POST is refused after the server is
/// known, as the rules order it), the body capped at `forge.max_webhook_bytes`.
pub fn route(core: &Core) -> MethodRouter<Core> {
    any(webhook).layer(DefaultBodyLimit::max(core.cfg().forge.max_webhook_bytes))
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Refused with `status`, and why; `trust` says whether the signature held first.
    Refuse {
        status: StatusCode,
        why: String,
        trust: Trust,
    },
    /// A good delivery of something the hive does not follow: `200`, and why.
    Ignore(String),
    /// A good delivery of a followed event: record it, with its body's lowercase hex SHA-256.
    Record {
        delivery: Delivery,
        event: Box<ForgeEvent>,
        body_sha256: String,
    },
}

/// Who a refusal can come from: anyone, or someone holding the server's webhook secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Before the signature holds: logged at `debug`, said at `warn` once a minute.
    Unsigned,
    /// The signature held: logged at `warn`.
    Signed,
}

fn refuse(status: StatusCode, why: impl Into<String>) -> Verdict {
    Verdict::Refuse {
        status,
        why: why.into(),
        trust: Trust::Unsigned,
    }
}

fn refuse_signed(status: StatusCode, why: impl Into<String>) -> Verdict {
    Verdict::Refuse {
        status,
        why: why.into(),
        trust: Trust::Signed,
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
        Err(e) => return refuse_signed(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match webhook::read(server.kind, &delivery.event, body) {
        Err(e) => refuse_signed(StatusCode::BAD_REQUEST, e.to_string()),
        Ok(Read::Ignored(why)) => Verdict::Ignore(why),
        Ok(Read::Event(event)) if !server.follows(&event.item.repo) => {
            Verdict::Ignore(format!("{} is not followed", event.item.repo))
        }
        Ok(Read::Event(event)) => Verdict::Record {
            delivery,
            event,
            body_sha256: sha256_hex(body),
        },
    }
}

/// The lowercase hex SHA-256 of `body`.
fn sha256_hex(body: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The webhook's refusals before a signature holds, per server: `Some(name)` for a
/// `[[forge.servers]]` name, `None` for every name that is none (so the map is bounded by the
/// configuration, whatever paths are sent).
#[derive(Debug, Default)]
pub struct Refusals {
    by_server: HashMap<Option<String>, Tally>,
}

#[derive(Debug)]
struct Tally {
    /// When this server's refusals were last said at `warn`.
    said: Instant,
    /// The refusals since then, not yet said.
    unsaid: u64,
}

impl Refusals {
    /// Counts one refusal for `server` at `now`. `Some(n)`: say at `warn` that `n` were
    /// refused (this one included) since they were last said — the first ever at once, then
    /// at most once per [`WARN_EVERY`]; `None`: only counted.
    pub fn count(&mut self, server: Option<&str>, now: Instant) -> Option<u64> {
        let key = server.map(str::to_owned);
        match self.by_server.get_mut(&key) {
            None => {
                self.by_server.insert(
                    key,
                    Tally {
                        said: now,
                        unsaid: 0,
                    },
                );
                Some(1)
            }
            Some(t) => {
                t.unsaid += 1;
                if now.saturating_duration_since(t.said) < WARN_EVERY {
                    return None;
                }
                let n = t.unsaid;
                t.said = now;
                t.unsaid = 0;
                Some(n)
            }
        }
    }
}

/// The webhook secret in `server`'s `webhook_secret_file`: bounded, trimmed, not empty.
async fn read_secret(server: &ForgeServer) -> anyhow::Result<Vec<u8>> {
    let path = server.webhook_secret_file.clone();
    let secret = tokio::task::spawn_blocking(move || read_key_file(&path)).await??;
    Ok(secret.into_bytes())
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// A refusal, logged and answered.
fn refused(core: &Core, trust: Trust, name: &str, status: StatusCode, why: &str) -> Response {
    let why = core.shown(why);
    // The name is the request's: bounded and escaped in the log.
    let logged: String = name.chars().take(64).collect();
    match trust {
        Trust::Signed => {
            tracing::warn!(server = ?logged, status = status.as_u16(), why = %why, "refused a forge webhook")
        }
        Trust::Unsigned => {
            // Why may quote the request's path: bounded too.
            let why: String = why.chars().take(200).collect();
            tracing::debug!(server = ?logged, status = status.as_u16(), why = %why, "refused a forge webhook");
            let known = core.cfg().forge.server(name).map(|s| s.name.as_str());
            let n = core
                .forge()
                .refusals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .count(known, Instant::now());
            if let Some(n) = n {
                let server = known.unwrap_or("(no such server)");
                tracing::warn!(
                    server,
                    refused = n,
                    "{n} forge webhook requests refused before a signature held since this was last said (at most once a minute); the latest: {status} {why}",
                    status = status.as_u16()
                );
            }
        }
    }
    let mut resp = answer(status, json!({ "error": why }));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

async fn webhook(State(core): State<Core>, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    // The server's name from the path (this reads no body).
    let name = match Path::<String>::from_request_parts(&mut parts, &core).await {
        Ok(Path(name)) => Some(name),
        Err(_) => None,
    };
    let shown_name = name.as_deref().unwrap_or("?");
    // (0.) A slot, held to the answer; none free: refused with the body unread.
    let Ok(_slot) = core.forge().webhook_slots.try_acquire() else {
        return refused(
            &core,
            Trust::Unsigned,
            shown_name,
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("{IN_FLIGHT} webhook requests are being served already"),
        );
    };
    // (1.) The body, whole, before any other answer: a refusal never leaves unread bytes on
    // the connection.
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
            return refused(&core, Trust::Unsigned, shown_name, status, &why);
        }
    };
    let Some(name) = name else {
        return refused(
            &core,
            Trust::Unsigned,
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
        Verdict::Refuse { status, why, trust } => refused(&core, trust, &name, status, &why),
        Verdict::Ignore(why) => {
            let why = core.shown(&why);
            tracing::info!(server = %name, why = %why, "ignored a forge webhook");
            answer(StatusCode::OK, json!({ "ok": true, "ignored": why }))
        }
        Verdict::Record {
            delivery,
            event,
            body_sha256,
        } => record(&core, &name, delivery, event, body_sha256).await,
    }
}

/// Records a good delivery once (by its id and by its body) and wakes the `forge` task.
async fn record(
    core: &Core,
    name: &str,
    delivery: Delivery,
    event: Box<ForgeEvent>,
    body_sha256: String,
) -> Response {
    let store = core.store().clone();
    let (server, d) = (name.to_owned(), delivery.clone());
    let item = event.item.to_string();
    // sqlite is quick but blocking: keep it off the async workers.
    let recorded = tokio::task::spawn_blocking(move || {
        store.record_signed_delivery(&server, &d.id, &d.event, &body_sha256, &event)
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
            Trust::Signed,
            name,
            StatusCode::CONFLICT,
            &format!("delivery {} was already received", delivery.id),
        ),
        Ok(Ok(Recorded::Replayed { as_delivery })) => refused(
            core,
            Trust::Signed,
            name,
            StatusCode::CONFLICT,
            &format!("this payload was already received as delivery {as_delivery}"),
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
