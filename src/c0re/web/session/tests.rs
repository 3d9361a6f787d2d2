use super::*;

#[test]
fn tokens_are_long_random_and_url_safe() {
    let a = mint_token().unwrap();
    let b = mint_token().unwrap();
    assert_ne!(a, b);
    assert_eq!(a.len(), 43, "32 bytes in base64url: {a}");
    assert!(
        a.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "{a}"
    );
}

#[test]
fn digests_differ_by_purpose_and_key() {
    let k = Key::from_bytes(&[7; 32]);
    let other = Key::from_bytes(&[8; 32]);
    let t = "tok";
    assert_ne!(k.link_digest(t), k.session_digest(t));
    assert_ne!(k.link_digest(t), other.link_digest(t));
    assert_eq!(k.link_digest(t), k.link_digest(t), "stable");
    assert!(!k.link_digest(t).contains(t));
    assert_ne!(k.csrf("s1"), k.csrf("s2"));
    assert_eq!(format!("{k:?}"), "Key(<redacted>)");
    let csrf = k.csrf("s1");
    assert_eq!(format!("{csrf:?}"), "Csrf(<redacted>)");
    let opened = LoginResult::Opened {
        session: "the-session-token".into(),
    };
    assert!(!format!("{opened:?}").contains("the-session-token"));
    assert_eq!(
        format!("{:?}", LoginResult::Refused(Login::Used)),
        "Refused(Used)"
    );
}

#[test]
fn the_key_is_made_once_and_kept_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let a = Key::load_or_create(dir.path()).unwrap();
    let b = Key::load_or_create(dir.path()).unwrap();
    assert_eq!(a.link_digest("x"), b.link_digest("x"));
    let mode = std::fs::metadata(Key::path(dir.path()))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // A key file others can read is made 0600 again, and still works.
    std::fs::set_permissions(
        Key::path(dir.path()),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let c = Key::load_or_create(dir.path()).unwrap();
    assert_eq!(a.link_digest("x"), c.link_digest("x"));
    let mode = std::fs::metadata(Key::path(dir.path()))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "tightened");
    std::fs::write(Key::path(dir.path()), "short").unwrap();
    assert!(Key::load_or_create(dir.path()).is_err());
}

#[test]
fn login_table() {
    struct Case {
        name: &'static str,
        link: Option<WebLink>,
        now: i64,
        want: Login,
    }
    let link = |used: Option<i64>| WebLink {
        created_us: 100,
        expires_us: 200,
        used_us: used,
    };
    let cases = [
        Case {
            name: "fresh",
            link: Some(link(None)),
            now: 150,
            want: Login::Granted,
        },
        Case {
            name: "used",
            link: Some(link(Some(120))),
            now: 150,
            want: Login::Used,
        },
        Case {
            name: "used and expired: still used",
            link: Some(link(Some(120))),
            now: 500,
            want: Login::Used,
        },
        Case {
            name: "at its expiry",
            link: Some(link(None)),
            now: 200,
            want: Login::Expired,
        },
        Case {
            name: "never made",
            link: None,
            now: 150,
            want: Login::Unknown,
        },
    ];
    for c in cases {
        assert_eq!(decide_login(c.link.as_ref(), c.now), c.want, "{}", c.name);
    }
}

#[test]
fn session_table() {
    let s = WebSession {
        created_us: 0,
        expires_us: 100,
    };
    for (name, row, now, want) in [
        ("open", Some(s), 99, true),
        ("at its expiry", Some(s), 100, false),
        ("none", None, 0, false),
    ] {
        assert_eq!(session_valid(row.as_ref(), now), want, "{name}");
    }
}

#[test]
fn post_table() {
    struct Case {
        name: &'static str,
        header: Option<&'static str>,
        field: Option<&'static str>,
        want: Verdict,
    }
    let expected = Csrf("right".into());
    let cases = [
        Case {
            name: "header",
            header: Some("right"),
            field: None,
            want: Verdict::Accepted,
        },
        Case {
            name: "field",
            header: None,
            field: Some("right"),
            want: Verdict::Accepted,
        },
        Case {
            name: "both",
            header: Some("right"),
            field: Some("right"),
            want: Verdict::Accepted,
        },
        Case {
            name: "none",
            header: None,
            field: None,
            want: Verdict::Missing,
        },
        Case {
            name: "wrong header",
            header: Some("wrong"),
            field: None,
            want: Verdict::Wrong,
        },
        Case {
            name: "a right field does not cover a wrong header",
            header: Some("wrong"),
            field: Some("right"),
            want: Verdict::Wrong,
        },
        Case {
            name: "empty",
            header: None,
            field: Some(""),
            want: Verdict::Wrong,
        },
        Case {
            name: "a prefix",
            header: Some("righ"),
            field: None,
            want: Verdict::Wrong,
        },
    ];
    for c in cases {
        assert_eq!(
            check_post(&expected, c.header, c.field),
            c.want,
            "{}",
            c.name
        );
    }
}

#[test]
fn host_and_origin_table() {
    struct Case {
        name: &'static str,
        base: &'static str,
        bound: &'static str,
        host: Option<&'static str>,
        origin: Option<&'static str>,
        host_ok: bool,
        origin_ok: bool,
    }
    let cases = [
        Case {
            name: "the default",
            base: "http://127.0.0.1:8787/",
            bound: "127.0.0.1:8787",
            host: Some("127.0.0.1:8787"),
            origin: Some("http://127.0.0.1:8787"),
            host_ok: true,
            origin_ok: true,
        },
        Case {
            name: "localhost for 127.0.0.1",
            base: "http://127.0.0.1:8787/",
            bound: "127.0.0.1:8787",
            host: Some("LOCALHOST:8787"),
            origin: Some("http://localhost:8787"),
            host_ok: true,
            origin_ok: true,
        },
        Case {
            name: "dns rebinding",
            base: "http://127.0.0.1:8787/",
            bound: "127.0.0.1:8787",
            host: Some("evil.example.com:8787"),
            origin: Some("http://evil.example.com:8787"),
            host_ok: false,
            origin_ok: false,
        },
        Case {
            name: "another port",
            base: "http://127.0.0.1:8787/",
            bound: "127.0.0.1:8787",
            host: Some("127.0.0.1:9999"),
            origin: Some("http://127.0.0.1:9999"),
            host_ok: false,
            origin_ok: false,
        },
        Case {
            name: "no host, no origin",
            base: "http://127.0.0.1:8787/",
            bound: "127.0.0.1:8787",
            host: None,
            origin: None,
            host_ok: false,
            origin_ok: true,
        },
        Case {
            name: "an opaque origin",
            base: "http://127.0.0.1:8787/",
            bound: "127.0.0.1:8787",
            host: Some("127.0.0.1:8787"),
            origin: Some("null"),
            host_ok: true,
            origin_ok: false,
        },
        Case {
            name: "behind https on its default port",
            base: "https://hive.example.org/",
            bound: "10.0.0.5:8787",
            host: Some("hive.example.org"),
            origin: Some("https://hive.example.org"),
            host_ok: true,
            origin_ok: true,
        },
        Case {
            name: "behind https: plain http is another origin",
            base: "https://hive.example.org/",
            bound: "10.0.0.5:8787",
            host: Some("10.0.0.5:8787"),
            origin: Some("http://hive.example.org"),
            host_ok: false,
            origin_ok: false,
        },
    ];
    for c in cases {
        let site = Site::new(&Url::parse(c.base).unwrap(), c.bound.parse().unwrap());
        assert_eq!(site.host_ok(c.host), c.host_ok, "{}: host", c.name);
        assert_eq!(site.origin_ok(c.origin), c.origin_ok, "{}: origin", c.name);
    }
}

#[test]
fn cookies() {
    assert_eq!(
        set_cookie("abc", false, 60),
        "hive_session=abc; HttpOnly; SameSite=Strict; Path=/; Max-Age=60"
    );
    let https = set_cookie("abc", true, 60);
    assert!(https.ends_with("; Secure"), "{https}");
    assert!(
        https.starts_with("__Host-hive_session=abc;"),
        "over https the cookie is __Host- prefixed: {https}"
    );
    assert_eq!(cookie_name(false), "hive_session");
    assert_eq!(
        cookie(
            ["hive_session=t0; __Host-hive_session=t9"],
            cookie_name(true)
        ),
        Some("t9")
    );
    assert!(clear_cookie(true).starts_with("__Host-hive_session=;"));
    assert!(clear_cookie(false).contains("Max-Age=0"));
    for (name, headers, want) in [
        ("alone", vec!["hive_session=t1"], Some("t1")),
        (
            "among others",
            vec!["a=1; hive_session=t2; b=3"],
            Some("t2"),
        ),
        (
            "in a second header",
            vec!["a=1", "hive_session=t3"],
            Some("t3"),
        ),
        ("a longer name", vec!["hive_session_x=t4"], None),
        ("empty", vec!["hive_session="], None),
        ("none", vec![], None),
    ] {
        assert_eq!(cookie(headers, COOKIE), want, "{name}");
    }
}

#[test]
fn human_spans() {
    for (secs, want) in [
        (45, "45 s"),
        (90, "1 min 30 s"),
        (900, "15 min"),
        (7_200, "2 h"),
        (86_400, "1 day"),
        (604_800, "7 days"),
    ] {
        assert_eq!(human_secs(secs), want);
    }
}

#[test]
fn the_login_url_carries_the_token() {
    let site = Site::new(
        &Url::parse("http://127.0.0.1:8787/").unwrap(),
        "127.0.0.1:8787".parse().unwrap(),
    );
    assert_eq!(
        site.login_url("a-b_c").as_str(),
        "http://127.0.0.1:8787/login?token=a-b_c"
    );
}

#[test]
fn sessions_open_once_per_link_and_close() {
    let sessions = Sessions::new(
        Key::from_bytes(&[1; 32]),
        Store::open_in_memory().unwrap(),
        900,
        3_600,
    );
    let link = sessions.mint_link(0).unwrap();
    let LoginResult::Opened { session } = sessions.login(&link, 1_000).unwrap() else {
        panic!("the link should log in");
    };
    assert!(matches!(
        sessions.login(&link, 2_000).unwrap(),
        LoginResult::Refused(Login::Used)
    ));
    let late = sessions.mint_link(0).unwrap();
    assert!(matches!(
        sessions.login(&late, 900_000_000).unwrap(),
        LoginResult::Refused(Login::Expired)
    ));
    let csrf = sessions.session(&session, 2_000).unwrap().expect("open");
    assert_eq!(csrf, Key::from_bytes(&[1; 32]).csrf(&session));
    assert_eq!(sessions.session(&session, 3_601_000_000).unwrap(), None);
    assert_eq!(sessions.session("forged", 2_000).unwrap(), None);
    assert!(sessions.logout(&session).unwrap());
    assert_eq!(sessions.session(&session, 2_000).unwrap(), None);
}

#[test]
fn the_secret_filter_knows_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = crate::c0re::registration::Tokens::load_or_create(dir.path()).unwrap();
    let cfg = crate::config::Config::load(None).unwrap();
    Key::load_or_create(dir.path()).unwrap();
    let text = std::fs::read_to_string(Key::path(dir.path())).unwrap();
    let known = crate::c0re::secrets::known(&cfg, dir.path(), &tokens);
    assert!(
        known
            .iter()
            .any(|(label, s)| label == "the web console's key" && s == text.trim()),
        "{:?}",
        known.iter().map(|(l, _)| l).collect::<Vec<_>>()
    );
}
