//! The secrets hive-c0re guards: every one it knows, gathered at start for the filter
//! ([`crate::secrets::SecretFilter`]) that nothing posted may pass unless clean.

pub use crate::secrets::SecretFilter;

/// Every secret the hive knows, labelled: the appservice tokens, the homeserver's registration
/// secret, the operator's password, every provider's key or token file, `secrets.files`. Files
/// are read bounded (a regular file of at most 64 KiB); one that cannot be read is logged and
/// not guarded. (`_specs`: keys are no longer per agent, they are hive.toml's providers'.)
pub fn known(
    cfg: &crate::config::Config,
    data_dir: &std::path::Path,
    tokens: &super::registration::Tokens,
) -> Vec<(String, String)> {
    let mut known = vec![
        (
            "the appservice's as_token".to_owned(),
            tokens.as_token.clone(),
        ),
        (
            "the appservice's hs_token".to_owned(),
            tokens.hs_token.clone(),
        ),
    ];
    if let Ok(s) = crate::homeserver::Layout::new(data_dir).shared_secret() {
        known.push(("the homeserver's registration secret".into(), s));
    }
    if let Ok(Some(op)) = crate::homeserver::OperatorCredentials::load(data_dir) {
        known.push(("the operator's password".into(), op.password));
    }
    // Made by `prepare_data_dir`, before the core starts.
    if let Ok(k) = std::fs::read_to_string(super::web::session::Key::path(data_dir)) {
        known.push(("the web console's key".into(), k.trim().to_owned()));
    }
    // The web console's operator tokens (`web/actions/operator.rs`); one minted later in this
    // run is still a Matrix access token, which the patterns catch.
    known.extend(super::web::actions::operator::known_tokens(data_dir));
    let mut files: Vec<(String, std::path::PathBuf)> = cfg
        .secret_files
        .iter()
        .map(|p| (format!("a secret from {}", p.display()), p.clone()))
        .collect();
    for p in cfg.providers.values() {
        use crate::config::Credential;
        match &p.credential {
            Credential::ApiKey(f) => {
                files.push((format!("[providers.{}]'s API key", p.name), f.clone()))
            }
            Credential::OauthToken(f) => {
                files.push((format!("[providers.{}]'s OAuth token", p.name), f.clone()))
            }
            Credential::None => {}
        }
    }
    for (label, path) in files {
        match crate::fsutil::read_bounded(&path, crate::config::MAX_KEY_FILE).and_then(|b| {
            String::from_utf8(b)
                .map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", path.display()))
        }) {
            Ok(v) => known.push((label, v)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read a secret file; it is not guarded")
            }
        }
    }
    known
}
