//! The web console's server, end to end on a real Synapse with the real `hive c0re`: the core
//! prints a one-time login link on stderr; opening it shows a "log in" button and uses
//! nothing; the button's post (`POST /login`, the token) answers `303` with the session
//! cookie, and posting it again `403`; the session opens the live stream (`/events`) and nothing
//! opens without it; `hive console` prints a fresh link that works; after a restart of the core
//! (on another port: `listen` port 0) the session still works (the store keeps it, hashed).

mod common;

use common::TestHive;
use hyperhive::c0re::web::LINK_LABEL;
use reqwest::StatusCode;
use reqwest::header;

/// The links printed in `text`, in order.
fn links(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(LINK_LABEL))
        .map(|l| l.trim().to_owned())
        .collect()
}

/// Opens `link` (a page with the log-in button, twice: opening uses nothing), then posts its
/// token; the `hive_session=<t>` cookie it sets.
async fn log_in(http: &reqwest::Client, link: &str) -> String {
    for _ in 0..2 {
        let r = http.get(link).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{link}");
        assert!(!r.headers().contains_key(header::SET_COOKIE));
        let page = r.text().await.unwrap();
        assert!(page.contains("id=\"login\""), "{page}");
    }
    let r = common::post_login(http, link).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{link}");
    assert_eq!(r.headers()[header::LOCATION], "/");
    let set = r.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(set.split("; ").any(|a| a == attr), "{attr}: {set}");
    }
    set.split(';').next().unwrap().to_owned()
}

/// The base (`http://127.0.0.1:<port>/`) of a link.
fn base_of(link: &str) -> String {
    let u = url::Url::parse(link).unwrap();
    format!("http://{}:{}/", u.host_str().unwrap(), u.port().unwrap())
}

/// The live stream's first chunk with `cookie`, or its status when it is refused.
async fn first_event(
    http: &reqwest::Client,
    base: &str,
    cookie: Option<&str>,
) -> Result<String, StatusCode> {
    let mut req = http.get(format!("{base}events"));
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    let mut r = req.send().await.unwrap();
    if r.status() != StatusCode::OK {
        return Err(r.status());
    }
    assert_eq!(r.headers()[header::CONTENT_TYPE], "text/event-stream");
    let chunk = r.chunk().await.unwrap().expect("a first chunk");
    Ok(String::from_utf8(chunk.to_vec()).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_printed_link_logs_in_once_and_the_session_outlives_a_restart() {
    let mut hive = TestHive::with_config(&[], "[web]\nlisten = \"127.0.0.1:0\"\n").await;
    hive.start_core();
    let log = hive.core_log();
    let printed = links(&log);
    assert_eq!(printed.len(), 1, "one link at start:\n{log}");
    let link = &printed[0];
    assert!(
        log.contains("hive: console ready. Open this link in a browser on this machine (it works once, for 15 min):"),
        "{log}"
    );
    let token = link.split("token=").nth(1).expect("a token in the link");
    let base = base_of(link);
    let http = common::no_redirect_client();

    // Nothing without a session.
    assert_eq!(
        first_event(&http, &base, None).await,
        Err(StatusCode::UNAUTHORIZED)
    );
    let r = http.get(&base).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await.unwrap().contains("hive console"));
    let r = http
        .post(format!("{base}act/approve/1"))
        .body("csrf=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let cookie = log_in(&http, link).await;
    let again = common::post_login(&http, link).await;
    assert_eq!(again.status(), StatusCode::FORBIDDEN, "a link works once");
    assert!(again.text().await.unwrap().contains("already used"));
    assert_eq!(
        first_event(&http, &base, Some(&cookie)).await.unwrap(),
        "retry: 2000\n\n"
    );
    // A post with the session but without its token.
    let r = http
        .post(format!("{base}logout"))
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("csrf=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("csrf"));

    // `hive console` asks the running core for another link.
    let out = hive.hive(&["console"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let fresh = links(&stdout);
    assert_eq!(fresh.len(), 1, "{stdout}");
    assert_ne!(&fresh[0], link);
    let second = log_in(&http, &fresh[0]).await;
    assert_ne!(second, cookie, "a session of its own");

    // No token in the log but the printed line itself, none in the store.
    let core_log = hive.core_log();
    assert_eq!(core_log.matches(token).count(), 1, "{core_log}");
    let mut db = std::fs::read(hive.data.join("c0re.db")).unwrap();
    db.extend(std::fs::read(hive.data.join("c0re.db-wal")).unwrap_or_default());
    let session_token = cookie.split('=').nth(1).unwrap();
    for secret in [token, session_token] {
        assert!(
            !db.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "a token in the database"
        );
    }

    // A restarted core (on a new port) still knows the session; the used link stays used.
    hive.stop_core();
    hive.start_core();
    let relinked = links(&hive.core_log());
    assert_eq!(relinked.len(), 2, "a new link at the second start");
    let new_base = base_of(&relinked[1]);
    assert_eq!(
        first_event(&http, &new_base, Some(&cookie)).await.unwrap(),
        "retry: 2000\n\n"
    );
    let old_link_again = link.replace(&base, &new_base);
    let r = common::post_login(&http, &old_link_again).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Without a running core, `hive console` says so.
    hive.stop_core();
    let out = hive.hive(&["console"]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no hive-c0re runs"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
