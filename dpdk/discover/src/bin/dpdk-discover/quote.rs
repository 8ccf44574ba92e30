//! Words for a POSIX shell and lines for a log.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// Bytes a word may hold and still need no quotes in any POSIX shell.
fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_./,:=@%+-".contains(&b)
}

/// `word` as a shell reads it back: unchanged when it is made of plain bytes
/// only, else in single quotes, each `'` written as `'\''`. An empty word is
/// `''`. A newline stays a newline inside the quotes, which every shell
/// accepts.
pub fn quote(word: &OsStr) -> OsString {
    let bytes = word.as_bytes();
    if !bytes.is_empty() && bytes.iter().copied().all(is_plain) {
        return word.to_owned();
    }
    let mut out = Vec::with_capacity(bytes.len() + 2);
    out.push(b'\'');
    for &b in bytes {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    OsString::from_vec(out)
}

/// The words quoted and joined with single spaces: `eval "set -- $line"`
/// gives them back.
pub fn quote_line<S: AsRef<OsStr>>(words: &[S]) -> OsString {
    let mut line = OsString::new();
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            line.push(" ");
        }
        line.push(quote(w.as_ref()));
    }
    line
}

/// `text` with control characters (newlines, escapes) written as Rust escapes,
/// so one message stays one log line and cannot drive a terminal.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> String {
        quote(OsStr::new(s)).into_string().unwrap()
    }

    #[test]
    fn plain_words_stay_as_they_are() {
        for w in [
            "-a",
            "0000:01:10.0",
            "--socket-mem",
            "0,256",
            "/dev/hugepages",
            "net_af_packet_net1,iface=net1",
            "a+b%c@d=e",
        ] {
            assert_eq!(q(w), w);
        }
    }

    #[test]
    fn other_words_are_single_quoted() {
        assert_eq!(q(""), "''");
        assert_eq!(q("huge pages"), "'huge pages'");
        assert_eq!(q("$HOME"), "'$HOME'");
        assert_eq!(q("a*b"), "'a*b'");
        assert_eq!(q("it's"), r"'it'\''s'");
        assert_eq!(q("x\ny"), "'x\ny'");
        assert_eq!(q("é"), "'é'");
    }

    #[test]
    fn non_utf8_bytes_are_kept() {
        let w = OsStr::from_bytes(b"a\xffb");
        assert_eq!(quote(w).as_bytes(), b"'a\xffb'");
    }

    #[test]
    fn a_line_is_words_joined_by_spaces() {
        let line = quote_line(&["-l", "0-3", "--huge-dir", "/mnt/huge pages", ""]);
        assert_eq!(line, "-l 0-3 --huge-dir '/mnt/huge pages' ''");
        assert_eq!(quote_line::<&str>(&[]), "");
    }

    #[test]
    fn a_shell_reads_the_words_back() {
        let words = [
            "-a",
            "it's a \"test\"",
            "$(false)",
            "`x`",
            "back\\slash",
            "",
            "two\nlines",
        ];
        let line = quote_line(&words);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(r#"eval "set -- $1"; for a in "$@"; do printf '%s\0' "$a"; done"#)
            .arg("sh")
            .arg(&line)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let got: Vec<&[u8]> = out.stdout.split(|&b| b == 0).collect();
        let want: Vec<&[u8]> = words
            .iter()
            .map(|w| w.as_bytes())
            .chain([&b""[..]])
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn log_text_has_no_control_characters() {
        assert_eq!(printable("a\nb\x1b[31m"), "a\\nb\\u{1b}[31m");
        assert_eq!(printable("plain é"), "plain é");
    }
}
