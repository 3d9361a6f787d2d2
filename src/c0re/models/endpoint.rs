//! Where a provider's model endpoint is: its `base_url` and the API's path.

use crate::config::{Provider, ProviderKind};

/// The URL of `provider`'s model endpoint: its `base_url` with the API's path appended as path
/// segments (`…/v1` → `…/v1/chat/completions`), never by string concatenation, so nothing in
/// the base can swallow or reroute the path.
pub fn endpoint(provider: &Provider) -> anyhow::Result<url::Url> {
    let segments: &[&str] = match provider.kind {
        ProviderKind::Openai => &["chat", "completions"],
        ProviderKind::Anthropic => &["v1", "messages"],
    };
    append_segments(&provider.base_url, segments)
}

/// `base` with `segments` appended to its path (a trailing `/` of `base` is dropped first).
pub(super) fn append_segments(base: &url::Url, segments: &[&str]) -> anyhow::Result<url::Url> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("{base} cannot take a path"))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}
