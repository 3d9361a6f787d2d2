//! A destroy, revive or purge request as the operator reads it in `#hive-approvals`: what it
//! does to which agent, the summary (shown as text, like every request's), the config the agent
//! is on, and how to decide. A purge says that a second confirmation follows the ✓.

use super::{LINE_MAX, Msg, Part, Rendered, escape, heading, inline, summary};
use crate::store::ApprovalKind;

/// What a kept-state request shows.
#[derive(Debug, Clone, Copy)]
pub struct KeptView<'a> {
    pub id: i64,
    pub kind: ApprovalKind,
    pub requester: &'a str,
    pub agent: &'a str,
    pub summary: &'a str,
    /// The applied config at filing.
    pub sha: &'a str,
    pub required: u32,
    pub expires_us: i64,
}

/// Renders a destroy, revive or purge request.
pub fn render_kept(v: &KeptView) -> Rendered {
    let mut m = Msg::default();
    let requester = inline(v.requester, LINE_MAX);
    let agent = inline(v.agent, LINE_MAX);
    let (what, effect) = match v.kind {
        ApprovalKind::Destroy => (
            "to destroy",
            "It stops, its identity leaves the hive's rooms, and its state and config history are kept on disk (a revive brings it back; a purge removes them).",
        ),
        ApprovalKind::Revive => (
            "to revive",
            "It comes back on its last applied config: its identity rejoins its rooms and its harness starts.",
        ),
        ApprovalKind::Purge => (
            "to purge",
            "Its kept state (config history, state, log) is removed for good. After the ✅ the core asks for a second confirmation in this thread.",
        ),
        ApprovalKind::ApplyCommit | ApprovalKind::InitConfig => ("to change", ""),
    };
    heading(&mut m, v.id, &requester, what, &agent);
    summary(&mut m, v.summary);
    let sha = inline(v.sha, LINE_MAX);
    m.push(&Part {
        body: format!("{effect}\nconfig {sha}\n\n"),
        html: format!(
            "<p>{}</p>\n<p>config <code>{}</code></p>\n",
            escape(effect),
            escape(&sha)
        ),
    });
    let need = if v.required > 1 {
        format!(" ({} operators must approve)", v.required)
    } else {
        String::new()
    };
    let tail = format!(
        "React ✅ to approve{need} or ❌ to deny. Expires at {} (the core's clock).",
        crate::store::utc(v.expires_us)
    );
    m.push(&Part {
        body: tail.clone(),
        html: format!("<p>{}</p>", escape(&tail)),
    });
    Rendered {
        body: m.body,
        html: m.html,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(kind: ApprovalKind, summary: &'static str) -> KeptView<'static> {
        KeptView {
            id: 7,
            kind,
            requester: "hm1nd",
            agent: "echo",
            summary,
            sha: "0123456789abcdef0123456789abcdef01234567",
            required: 1,
            expires_us: 1_700_000_000_000_000,
        }
    }

    #[test]
    fn kept_requests_read_as_they_should() {
        for (name, kind) in [
            ("destroy", ApprovalKind::Destroy),
            ("revive", ApprovalKind::Revive),
            ("purge", ApprovalKind::Purge),
        ] {
            let r = render_kept(&view(kind, "echo is not needed\nany more"));
            insta::assert_snapshot!(format!("kept_{name}_body"), r.body);
            insta::assert_snapshot!(format!("kept_{name}_html"), r.html);
        }
    }

    #[test]
    fn agent_text_stays_text() {
        let r = render_kept(&view(ApprovalKind::Purge, "<b>x</b> **y**\u{202e}"));
        assert!(!r.html.contains("<b>x"), "{}", r.html);
        assert!(r.html.contains("&lt;b&gt;"), "{}", r.html);
        assert!(!r.body.contains('\u{202e}'), "{}", r.body);
    }
}
