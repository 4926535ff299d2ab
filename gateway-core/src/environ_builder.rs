//! An environ from the name-value pairs a web server sends, with repeated
//! request headers joined.

use std::collections::HashMap;
use std::fmt;

use bytes::Bytes;

use crate::environ::Environ;

/// Builds an [`Environ`] from the name-value pairs a web server sends
/// (FastCGI PARAMS, the SCGI header, the uwsgi variables block), in order.
///
/// A request header the client sent on several lines may arrive as several
/// `HTTP_*` pairs of one name: nginx before 1.23 (Debian 12 ships 1.22)
/// sends one pair per header line, where nginx 1.23 and later, Apache and
/// lighttpd send one pair with the values joined. The builder joins them
/// the same way, so the application sees one request whatever sent it: the
/// values in order, separated by `, ` (`; ` for `HTTP_COOKIE`, the
/// separator of RFC 6265), at the first pair's position. Any other
/// repeated name is an error ([`RepeatedName`]): two `CONTENT_LENGTH` or
/// `REQUEST_METHOD` values have no meaning, and taking either could
/// disagree with what the web server acted on.
///
/// The names are checked with a hash table, so a hostile block of many
/// pairs costs linear time; the shared buffers are kept, not copied.
///
/// ```
/// use gateway_core::EnvironBuilder;
///
/// let mut b = EnvironBuilder::new();
/// b.push("REQUEST_METHOD", "GET")?;
/// b.push("HTTP_X_DUP", "one")?;
/// b.push("HTTP_COOKIE", "a=1")?;
/// b.push("HTTP_X_DUP", "two")?;
/// b.push("HTTP_COOKIE", "b=2")?;
/// assert!(b.push("REQUEST_METHOD", "POST").is_err());
/// let env = b.build();
/// assert_eq!(env.get("HTTP_X_DUP"), Some(&b"one, two"[..]));
/// assert_eq!(env.get("HTTP_COOKIE"), Some(&b"a=1; b=2"[..]));
/// assert_eq!(env.len(), 3);
/// # Ok::<(), gateway_core::RepeatedName>(())
/// ```
#[derive(Debug, Default, Clone)]
pub struct EnvironBuilder {
    pairs: Vec<(Bytes, Bytes)>,
    /// Where each name stands in `pairs`.
    seen: HashMap<Bytes, usize>,
}

impl EnvironBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty builder with room for `n` pairs.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            pairs: Vec::with_capacity(n),
            seen: HashMap::with_capacity(n),
        }
    }

    /// The number of distinct names so far.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether no pair was pushed.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Adds a pair: a new name is appended; a repeated `HTTP_*` name has its
    /// value joined to the earlier one's.
    ///
    /// # Errors
    ///
    /// Any other name that was pushed before. The builder is unchanged.
    pub fn push(
        &mut self,
        name: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<(), RepeatedName> {
        let name = name.into();
        let value = value.into();
        let Some(&at) = self.seen.get(&name) else {
            self.seen.insert(name.clone(), self.pairs.len());
            self.pairs.push((name, value));
            return Ok(());
        };
        if !name.starts_with(b"HTTP_") {
            return Err(RepeatedName { name });
        }
        let sep: &[u8] = if name == "HTTP_COOKIE" { b"; " } else { b", " };
        if let Some((_, earlier)) = self.pairs.get_mut(at) {
            *earlier = Bytes::from([&earlier[..], sep, &value[..]].concat());
        }
        Ok(())
    }

    /// The environ, the pairs in the order their names first came.
    pub fn build(self) -> Environ {
        let mut env = Environ::new();
        // The names are distinct: the vector is taken as it is.
        env.extend_replacing(self.pairs);
        env
    }
}

/// A name other than `HTTP_*` given twice to an [`EnvironBuilder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepeatedName {
    name: Bytes,
}

impl RepeatedName {
    /// The name.
    pub fn name(&self) -> &[u8] {
        &self.name
    }
}

impl fmt::Display for RepeatedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the variable {} is given twice",
            String::from_utf8_lossy(&self.name)
        )
    }
}

impl std::error::Error for RepeatedName {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_names_keep_their_order() {
        let mut b = EnvironBuilder::with_capacity(3);
        for (n, v) in [("B", "2"), ("A", "1"), ("C", "")] {
            b.push(n, v).unwrap();
        }
        let env = b.build();
        let names: Vec<&[u8]> = env.iter().map(|(n, _)| n).collect();
        assert_eq!(names, [&b"B"[..], b"A", b"C"]);
        assert_eq!(env.get("C"), Some(&b""[..]));
    }

    #[test]
    fn repeated_headers_join_at_the_first_position() {
        let mut b = EnvironBuilder::new();
        b.push("HTTP_ACCEPT", "a").unwrap();
        b.push("HTTP_HOST", "x").unwrap();
        b.push("HTTP_ACCEPT", "b").unwrap();
        b.push("HTTP_ACCEPT", "c").unwrap();
        assert_eq!(b.len(), 2);
        let env = b.build();
        let pairs: Vec<(&[u8], &[u8])> = env.iter().collect();
        assert_eq!(
            pairs,
            [(&b"HTTP_ACCEPT"[..], &b"a, b, c"[..]), (b"HTTP_HOST", b"x")]
        );
    }

    #[test]
    fn other_repeated_names_are_refused() {
        let mut b = EnvironBuilder::new();
        b.push("CONTENT_LENGTH", "5").unwrap();
        let err = b.push("CONTENT_LENGTH", "500").unwrap_err();
        assert_eq!(err.name(), b"CONTENT_LENGTH");
        assert!(err.to_string().contains("CONTENT_LENGTH"), "{err}");
        assert_eq!(b.build().get("CONTENT_LENGTH"), Some(&b"5"[..]));
    }
}
