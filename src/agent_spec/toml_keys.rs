//! Where in an `agent.toml` text a serde error points: the dotted key an error names, for
//! errors that say which key is wrong (toml gives no span inside a tagged table).

/// Where the field an "unknown field `x`" message names is assigned (toml gives no span for
/// fields inside a tagged table such as `[brain]`).
pub(super) fn unknown_field_offset(text: &str, message: &str) -> Option<usize> {
    let field = message.strip_prefix("unknown field `")?.split('`').next()?;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if t.strip_prefix(field)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
        {
            return Some(offset + (line.len() - t.len()));
        }
        offset += line.len();
    }
    None
}

/// The dotted key whose table header or assignment precedes byte `offset` of a TOML text.
pub(super) fn key_at(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    let table = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').to_owned());
    let key = line.split('=').next().unwrap_or("").trim();
    match (table, key.is_empty() || line.starts_with('[')) {
        (Some(t), true) => t,
        (Some(t), false) => format!("{t}.{key}"),
        (None, false) => key.to_owned(),
        (None, true) => "-".to_owned(),
    }
}
