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
