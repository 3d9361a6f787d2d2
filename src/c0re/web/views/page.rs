//! What every page shares: the shell (`<head>`, the stream's address, the toasts, the confirm
//! dialog, `<noscript>`), the fixed header with its tabs, and the action forms (pure, maud:
//! every value is escaped; nothing here is `PreEscaped` but the doctype).

use maud::{DOCTYPE, Markup, html};

use super::model::Header;

/// Which page is drawn: the header's links and the stream differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page<'a> {
    Main,
    Agent(&'a str),
}

impl Page<'_> {
    /// The live stream the page's script opens (`data-stream` on `<body>`).
    pub fn stream(self) -> String {
        match self {
            Page::Main => "/events".to_owned(),
            Page::Agent(name) => format!("/events?agent={name}"),
        }
    }
}

/// The tabs of the main page: (anchor, label).
pub const TABS: [(&str, &str); 5] = [
    ("swarm", "swarm"),
    ("waiting", "waiting on you"),
    ("schedules", "schedules"),
    ("peers", "peers"),
    ("audit", "audit"),
];

/// A whole page around `body`: the head (title, the CSRF token for the script, the stylesheet
/// and the deferred script), the toasts' region and the confirm dialog the script drives.
pub fn shell(page: Page<'_>, title: &str, csrf: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="csrf-token" content=(csrf);
                title { (title) }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body data-stream=(page.stream()) {
                (body)
                noscript {
                    p.noscript {
                        "this console updates itself and posts its forms with a small script: "
                        "without it, reload the page to see what changed."
                    }
                }
                div #toasts aria-live="polite" {}
                dialog #confirm {
                    p #confirm-text {}
                    div.dialog-buttons {
                        button #confirm-no type="button" { "no" }
                        button #confirm-yes type="button" { "yes" }
                    }
                }
            }
        }
    }
}

/// The fixed header's pane `top` (its counts change): the hive's name, how many agents, how
/// many think, how much waits on the operator; the tabs. The same for every session (no CSRF
/// token in it), so one render serves every stream of the page.
pub fn header(h: &Header, page: Page<'_>) -> Markup {
    let base = match page {
        Page::Main => "",
        Page::Agent(_) => "/",
    };
    html! {
        div #top data-pane="top" {
            a.brand href="/" { span.glyph { "⬢" } " " (h.hive) }
            span.counts {
                span.count { (h.agents) (if h.agents == 1 { " agent" } else { " agents" }) }
                " · "
                span class=(if h.thinking > 0 { "count thinking" } else { "count" }) {
                    (h.thinking) " thinking"
                }
                " · "
                a class=(if h.waiting > 0 { "count waiting hot" } else { "count waiting" })
                    href={ (base) "#waiting" } {
                    (h.waiting) " waiting on you"
                }
            }
            nav #tabs {
                @for (anchor, label) in TABS {
                    a href={ (base) "#" (anchor) } { (label) }
                }
            }
        }
    }
}

/// The fixed bar: the `top` pane, then the log-out form. That form is a plain post (the
/// browser follows its redirect), so it carries the session's CSRF token as a field; it sits
/// outside the pane, rendered per request, and no live update sends the token.
pub fn bar(top: Markup, csrf: &str) -> Markup {
    html! {
        header.bar {
            (top)
            form.logout method="post" action="/logout" {
                input type="hidden" name="csrf" value=(csrf);
                button type="submit" name="logout" { "log out" }
            }
        }
    }
}

/// A section header framed in glyphs: `── ◆ swarm ──`.
pub fn frame(title: &str) -> Markup {
    html! { h2.frame { span.rule { "── ◆ " } (title) span.rule { " ──" } } }
}

/// An action a form posts (the button's `name`, and the path under `/act/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Approve,
    Deny,
    Purge,
    Answer,
    Say,
    Stop,
    Start,
    Restart,
    Cancel,
    Compact,
    NewSession,
    Destroy,
}

impl Verb {
    pub const ALL: [Verb; 12] = [
        Verb::Approve,
        Verb::Deny,
        Verb::Purge,
        Verb::Answer,
        Verb::Say,
        Verb::Stop,
        Verb::Start,
        Verb::Restart,
        Verb::Cancel,
        Verb::Compact,
        Verb::NewSession,
        Verb::Destroy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Approve => "approve",
            Verb::Deny => "deny",
            Verb::Purge => "purge",
            Verb::Answer => "answer",
            Verb::Say => "say",
            Verb::Stop => "stop",
            Verb::Start => "start",
            Verb::Restart => "restart",
            Verb::Cancel => "cancel",
            Verb::Compact => "compact",
            Verb::NewSession => "new-session",
            Verb::Destroy => "destroy",
        }
    }

    /// Whether the page asks once more before posting it: the destructive ones (deny, stop,
    /// destroy, purge) do; the rest are undone by their opposite, or only talk.
    pub fn confirms(self) -> bool {
        matches!(self, Verb::Deny | Verb::Stop | Verb::Destroy | Verb::Purge)
    }

    /// The style of its button.
    fn class(self) -> &'static str {
        match self {
            Verb::Approve | Verb::Start => "go",
            Verb::Deny | Verb::Stop | Verb::Destroy | Verb::Purge => "danger",
            _ => "plain",
        }
    }
}

/// One action form: what it acts on (`target`, an id or an agent's name), the button's label,
/// the question asked first (for the verbs that [`Verb::confirms`]), hidden fields, and text
/// fields (name, placeholder) the operator fills in.
pub struct Act<'a> {
    pub verb: Verb,
    pub target: &'a str,
    pub label: &'a str,
    pub confirm: &'a str,
    pub hidden: &'a [(&'a str, &'a str)],
    pub inputs: &'a [(&'a str, &'a str)],
}

/// `<form class="act" …>` as the page's script submits it (the button named by its verb,
/// `data-confirm` only on the destructive verbs). No CSRF field: the script sends the page's
/// token (`<meta name="csrf-token">`) as `X-CSRF-Token`, so a pane is the same for every
/// session.
pub fn act(a: &Act<'_>) -> Markup {
    form(a, a.verb.confirms())
}

/// [`act`], asking [`Act::confirm`] first whatever its verb: the approve of a request whose
/// effect is hard to undo ([`super::model::approve_asks`]).
pub fn act_asking(a: &Act<'_>) -> Markup {
    form(a, true)
}

fn form(a: &Act<'_>, asks: bool) -> Markup {
    let confirm = asks.then_some(a.confirm);
    html! {
        form.act method="post" action={ "/act/" (a.verb.as_str()) "/" (a.target) }
            data-confirm=[confirm] {
            @for (name, value) in a.hidden {
                input type="hidden" name=(name) value=(value);
            }
            @for (name, placeholder) in a.inputs {
                input type="text" name=(name) placeholder=(placeholder) aria-label=(placeholder)
                    autocomplete="off";
            }
            button type="submit" name=(a.verb.as_str()) class=(a.verb.class()) { (a.label) }
        }
    }
}

/// A small page that only says something (an unknown agent, an error), with a way back.
pub fn notice(title: &str, text: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) }
                link rel="stylesheet" href="/assets/console.css";
            }
            body.notice-page {
                main {
                    (frame(title))
                    p { (text) }
                    p { a href="/" { "back to the hive" } }
                }
            }
        }
    }
}
