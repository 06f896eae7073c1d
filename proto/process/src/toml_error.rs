//! Config-file syntax errors as people read them, without quoting a line that may hold a secret.

/// A TOML error as "line L, column C: what is wrong", without toml's quote of the offending
/// line: that line may hold a token or a webhook's access_token.
pub fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim().replace('\n', " ");
    match error.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}
