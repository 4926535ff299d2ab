//! Rendering the web-server configurations in `examples/webservers/`.
//!
//! A configuration is an ordinary file for the web server with placeholders
//! written `@NAME@` (upper-case letters, digits and `_`). Rendering replaces
//! each one and fails if any is left, so a typo in a template is caught when
//! the server is started rather than by a confusing server error.

use std::io;
use std::path::PathBuf;

/// The directory that holds the configuration templates
/// (`examples/webservers/` in the repository).
pub fn templates_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("examples")
        .join("webservers")
}

/// Replaces every `@NAME@` in `template` by its value in `vars`.
///
/// An `@NAME@` with no value is an error, as is a value that contains a
/// newline (it would break the configuration's syntax).
pub fn render(template: &str, vars: &[(&str, &str)]) -> io::Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('@') {
        let (before, from_at) = rest.split_at(start);
        out.push_str(before);
        let after_at = from_at.get(1..).unwrap_or_default();
        let name_len = after_at
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(after_at.len());
        let name = after_at.get(..name_len).unwrap_or_default();
        let closed = after_at.get(name_len..).is_some_and(|s| s.starts_with('@'));
        if name.is_empty() || !closed {
            // A lone "@" (an e-mail address, say) is kept as it is.
            out.push('@');
            rest = after_at;
            continue;
        }
        let value = vars
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| invalid(format!("no value for the placeholder @{name}@")))?;
        if value.contains(['\n', '\r']) {
            return Err(invalid(format!(
                "the value of @{name}@ contains a line break"
            )));
        }
        out.push_str(value);
        rest = after_at.get(name_len + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    Ok(out)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_placeholder() {
        let out = render("a @X@ b @Y_1@@X@ c", &[("X", "1"), ("Y_1", "two")]).unwrap();
        assert_eq!(out, "a 1 b two1 c");
    }

    #[test]
    fn keeps_text_that_is_not_a_placeholder() {
        let out = render("mail root@localhost; @ @lower@ 50@", &[]).unwrap();
        assert_eq!(out, "mail root@localhost; @ @lower@ 50@");
    }

    #[test]
    fn missing_value_is_an_error() {
        let err = render("listen @PORT@;", &[]).unwrap_err();
        assert!(err.to_string().contains("@PORT@"), "{err}");
    }

    #[test]
    fn line_break_in_value_is_an_error() {
        assert!(render("x @A@", &[("A", "1\nevil")]).is_err());
    }

    #[test]
    fn shipped_cgi_templates_render() {
        let vars = [
            ("PORT", "8080"),
            ("RUNDIR", "/tmp/r"),
            ("CGI_BIN", "/usr/lib/cgi-bin/app"),
        ];
        for file in ["apache2.conf", "lighttpd.conf", "nginx-fcgiwrap.conf"] {
            let path = templates_dir().join("cgi").join(file);
            let text = std::fs::read_to_string(&path).unwrap();
            let out = render(&text, &vars).unwrap();
            assert!(out.contains("/usr/lib/cgi-bin/app"), "{file}");
            assert!(out.contains("8080"), "{file}");
            assert!(out.contains("/cgi/conformance"), "{file}");
        }
    }
}
