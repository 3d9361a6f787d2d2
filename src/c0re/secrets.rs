//! The secrets hive-c0re guards: every one it knows, gathered at start for the filter
//! ([`crate::secrets::SecretFilter`]) that nothing posted may pass unless clean.

pub use crate::secrets::SecretFilter;

/// Every secret the hive knows, labelled: the appservice tokens, the homeserver's registration
/// secret, the operator's password, every provider's key or token file, every forge server's
/// token and webhook secret files, `secrets.files`. Files
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
    // The forge tokens and webhook secrets (`[[forge.servers]]`): the core's alone.
    for s in &cfg.forge.servers {
        files.push((
            format!("[[forge.servers]] {}'s token", s.name),
            s.token_file.clone(),
        ));
        files.push((
            format!("[[forge.servers]] {}'s webhook secret", s.name),
            s.webhook_secret_file.clone(),
        ));
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::config::{Config, ForgeServer};
    use crate::forge::ForgeKind;

    #[test]
    fn forge_tokens_and_webhook_secrets_are_guarded() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let tokens =
            crate::c0re::registration::Tokens::load_or_create(dir.path()).expect("tokens are made");
        let token = dir.path().join("forge-token");
        let hook = dir.path().join("forge-hook");
        std::fs::write(&token, "f0rge-t0ken-planted-4711\n").expect("written");
        std::fs::write(&hook, "w3bhook-s3cret-planted-0815\n").expect("written");
        let mut cfg = Config::load(None).expect("the built-in configuration");
        cfg.forge.servers.push(ForgeServer {
            name: "home".into(),
            kind: ForgeKind::Forgejo,
            url: url::Url::parse("http://127.0.0.1:3000/").expect("a url"),
            token_file: token,
            webhook_secret_file: hook,
            login: None,
            repos: vec![],
        });
        cfg.forge.servers.push(ForgeServer {
            name: "gone".into(),
            kind: ForgeKind::Github,
            url: url::Url::parse("https://api.github.com").expect("a url"),
            token_file: PathBuf::from("/nonexistent/token"),
            webhook_secret_file: PathBuf::from("/nonexistent/hook"),
            login: None,
            repos: vec![],
        });
        let filter = super::SecretFilter::new(super::known(&cfg, dir.path(), &tokens));
        let said = filter.redact(
            "the token is f0rge-t0ken-planted-4711 and the hook w3bhook-s3cret-planted-0815",
        );
        assert!(
            !said.contains("f0rge-t0ken-planted-4711")
                && !said.contains("w3bhook-s3cret-planted-0815"),
            "{said}"
        );
        let found = filter
            .find_in_content(&serde_json::json!({"body": "here: f0rge-t0ken-planted-4711"}))
            .expect("the token is found in a body");
        assert!(found.contains("home's token"), "{found}");
    }
}
