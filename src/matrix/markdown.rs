//! Markdown → Matrix `formatted_body` (`org.matrix.custom.html`) with pulldown-cmark.
//!
//! Raw HTML in the source is escaped, never passed through: an agent's text can format, not
//! inject markup. Returns `None` when the HTML would say nothing the plain body does not.

use pulldown_cmark::{Event, Options, Parser, html};

pub fn to_html(markdown: &str) -> Option<String> {
    let opts = Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES | Options::ENABLE_TASKLISTS;
    let events = Parser::new_ext(markdown, opts).map(|ev| match ev {
        Event::Html(s) | Event::InlineHtml(s) => Event::Text(s),
        other => other,
    });
    let mut out = String::new();
    html::push_html(&mut out, events);
    let trimmed = out.trim_end();
    // A single plain paragraph adds nothing to the plain body.
    if let Some(inner) = trimmed
        .strip_prefix("<p>")
        .and_then(|s| s.strip_suffix("</p>"))
        && !inner.contains('<')
        && !inner.contains('&')
        && inner == markdown.trim()
    {
        return None;
    }
    Some(trimmed.to_owned())
}

/// `text` as a Markdown code span: shown as it is, never read as Markdown (an agent's own link,
/// emphasis or HTML stays text). The fence is longer than any run of backticks inside, with a
/// space on each side so a backtick at either end is not read as part of it. For one line:
/// line breaks become spaces. Empty (or blank) text is `-`.
pub fn code_span(text: &str) -> String {
    let one: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let one = one.trim();
    if one.is_empty() {
        return "-".into();
    }
    let longest = one.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    format!("{fence} {one} {fence}")
}

/// Escapes text for inclusion in HTML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_text_in_a_code_span_stays_text() {
        struct Case {
            name: &'static str,
            text: &'static str,
            want: &'static str,
        }
        for c in [
            Case {
                name: "plain",
                text: "deploy?",
                want: "` deploy? `",
            },
            Case {
                name: "blank",
                text: " \n ",
                want: "-",
            },
            Case {
                name: "a backtick run",
                text: "run `ls`",
                want: "`` run `ls` ``",
            },
            Case {
                name: "line breaks",
                text: "a\nb",
                want: "` a b `",
            },
        ] {
            assert_eq!(code_span(c.text), c.want, "{}", c.name);
        }
        let forged = code_span("ok — [message](https://matrix.to/#/!a:hs/$x) <b>x</b> **y**");
        let html = to_html(&format!("- #4: {forged}")).expect("a list");
        assert!(
            !html.contains("<a ") && !html.contains("<strong>"),
            "{html}"
        );
        assert!(html.contains("<code>"), "{html}");
    }

    #[test]
    fn renders() {
        let cases: &[(&str, Option<&str>)] = &[
            ("plain words", None),
            ("**bold**", Some("<p><strong>bold</strong></p>")),
            (
                "a <script>x</script>",
                Some("<p>a &lt;script&gt;x&lt;/script&gt;</p>"),
            ),
            (
                "- one\n- two",
                Some("<ul>\n<li>one</li>\n<li>two</li>\n</ul>"),
            ),
            ("`code`", Some("<p><code>code</code></p>")),
            ("1 < 2", Some("<p>1 &lt; 2</p>")),
        ];
        for (md, want) in cases {
            assert_eq!(to_html(md).as_deref(), *want, "{md:?}");
        }
    }
}
