//! See [`super`].

/// The session's CSRF token, put into each request's extensions by the session layer.
///
/// TEMPORARY (part B's branch only): part A defines the real one here; the integrator keeps
/// A's. The views extract it as `axum::Extension<Csrf>`.
#[derive(Debug, Clone)]
pub struct Csrf(pub String);
