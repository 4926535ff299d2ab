//! Reading the process environment as raw bytes (wsgiref's
//! `read_environ`) and the IIS `PATH_INFO` fix.

use std::ffi::OsString;

use bytes::Bytes;
use gateway_core::Environ;

/// Reads the process environment into an [`Environ`], as raw bytes.
///
/// On Unix, names and values are taken byte for byte (`vars_os`), so no
/// byte a web server sent is lost or replaced, whatever the locale. On
/// Windows the values are UTF-16 and become UTF-8, which is how IIS encodes
/// paths.
pub fn read_environ() -> Environ {
    let pairs = environ_pairs(false);
    let mut env = Environ::with_capacity(pairs.len());
    for (name, value) in pairs {
        env.push(name, value);
    }
    env
}

/// The process environment as name/value pairs, each taken over from the
/// standard library's copy without another one.
///
/// With `for_process_life`, the copy is kept until the process exits and
/// the pairs are static [`Bytes`]: cloning one allocates nothing and
/// dropping one frees nothing. That is for a process that serves its one
/// request and exits, where freeing the environment piece by piece just
/// before the exit is work for nothing; each call keeps another copy.
pub(crate) fn environ_pairs(for_process_life: bool) -> Vec<(Bytes, Bytes)> {
    let vars = std::env::vars_os();
    let mut pairs = Vec::with_capacity(vars.size_hint().0);
    let bytes = if for_process_life {
        |s: OsString| Bytes::from_static(os_vec(s).leak())
    } else {
        |s: OsString| Bytes::from(os_vec(s))
    };
    pairs.extend(vars.map(|(name, value)| (bytes(name), bytes(value))));
    pairs
}

#[cfg(unix)]
fn os_vec(s: OsString) -> Vec<u8> {
    use std::os::unix::ffi::OsStringExt;
    s.into_vec()
}

#[cfg(not(unix))]
fn os_vec(s: OsString) -> Vec<u8> {
    s.to_string_lossy().into_owned().into_bytes()
}

/// Undoes IIS's CGI `PATH_INFO`: IIS repeats
/// `SCRIPT_NAME` at the start of `PATH_INFO`, so when `PATH_INFO + "/"`
/// starts with `SCRIPT_NAME + "/"`, that prefix is removed. The comparison
/// is case-sensitive, as in wsgiref. The bug cannot be detected, so a
/// genuine `PATH_INFO` that starts with the script name is stripped too:
/// use this only for IIS.
pub fn fix_iis_path_info(env: &mut Environ) {
    let sn = env.script_name();
    let Some(pi) = env.get("PATH_INFO") else {
        return;
    };
    let pi_slash = [pi, b"/"].concat();
    let sn_slash = [sn, b"/"].concat();
    if pi_slash.starts_with(&sn_slash) {
        let rest = Bytes::copy_from_slice(&pi[sn.len()..]);
        env.insert("PATH_INFO", rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(sn: Option<&str>, pi: Option<&str>) -> Option<Vec<u8>> {
        let mut env = Environ::new();
        if let Some(sn) = sn {
            env.insert("SCRIPT_NAME", sn.to_owned());
        }
        if let Some(pi) = pi {
            env.insert("PATH_INFO", pi.to_owned());
        }
        fix_iis_path_info(&mut env);
        env.get("PATH_INFO").map(<[u8]>::to_vec)
    }

    /// wsgiref's IISCGIHandler vectors.
    #[test]
    fn i1_vectors() {
        let v = |s: &str| Some(s.as_bytes().to_vec());
        assert_eq!(
            fixed(Some("/app.py"), Some("/app.py/foo/bar")),
            v("/foo/bar")
        );
        assert_eq!(fixed(Some("/app.py"), Some("/app.py")), v(""));
        assert_eq!(fixed(Some("/app.py"), Some("/app.py/")), v("/"));
        assert_eq!(fixed(Some("/app.py"), Some("/app.pyx/y")), v("/app.pyx/y"));
        assert_eq!(fixed(Some("/app.py"), Some("/foo")), v("/foo"));
        assert_eq!(fixed(Some(""), Some("/x")), v("/x"));
        assert_eq!(fixed(Some("/app.py"), None), None);
    }

    /// the comparison is case-sensitive (IIS paths are not, but wsgiref
    /// compares bytes; we keep that and document it).
    #[test]
    fn i2_case_sensitive() {
        assert_eq!(
            fixed(Some("/app.py"), Some("/App.py/x")),
            Some(b"/App.py/x".to_vec())
        );
    }

    /// a genuine PATH_INFO starting with the script name is stripped
    /// too; that is why this is a separate mode.
    #[test]
    fn i3_genuine_prefix_is_stripped() {
        assert_eq!(fixed(Some("/a"), Some("/a/b")), Some(b"/b".to_vec()));
    }

    /// the process environment arrives as raw bytes.
    #[test]
    fn g10_reads_process_environment() {
        let env = read_environ();
        let path = std::env::var_os("PATH").map(os_vec);
        assert_eq!(env.get("PATH").map(<[u8]>::to_vec), path);
    }

    /// the pairs kept for the life of the process are the same bytes.
    #[test]
    fn g10_process_life_pairs_match() {
        assert_eq!(environ_pairs(true), environ_pairs(false));
    }
}
