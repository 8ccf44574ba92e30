//! Comparing what the plugin did with what the data expects: a JSON part
//! matched against the whole (objects by key, arrays element by element),
//! each mismatch named by its path.

use serde_json::Value;

/// One expectation that did not hold: where, expected, got.
#[derive(Debug, Clone)]
pub struct Miss {
    pub path: String,
    pub want: String,
    pub got: String,
}

impl std::fmt::Display for Miss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: expected {}, got {}", self.path, self.want, self.got)
    }
}

/// Every place `part` is not found in `whole`. Objects: each key of
/// `part` must be in `whole` with a matching value (`null` means absent);
/// arrays: the same length, element by element; anything else: equal,
/// strings with `"<netns>"` replaced by `netns` first.
pub fn part_of(part: &Value, whole: &Value, path: &str, netns: &str, out: &mut Vec<Miss>) {
    match (part, whole) {
        (Value::Object(p), Value::Object(w)) => {
            for (k, pv) in p {
                let sub = format!("{path}.{k}");
                match (pv, w.get(k)) {
                    (Value::Null, None) => {}
                    (Value::Null, Some(g)) => out.push(Miss {
                        path: sub,
                        want: "no such key".into(),
                        got: g.to_string(),
                    }),
                    (_, None) => out.push(Miss {
                        path: sub,
                        want: pv.to_string(),
                        got: "nothing".into(),
                    }),
                    (_, Some(g)) => part_of(pv, g, &sub, netns, out),
                }
            }
        }
        (Value::Array(p), Value::Array(w)) => {
            if p.len() != w.len() {
                out.push(Miss {
                    path: path.into(),
                    want: format!("{} elements {}", p.len(), part),
                    got: format!("{} elements {}", w.len(), whole),
                });
                return;
            }
            for (i, (pv, wv)) in p.iter().zip(w).enumerate() {
                part_of(pv, wv, &format!("{path}.{i}"), netns, out);
            }
        }
        (Value::String(p), Value::String(w)) if p.replace("<netns>", netns) == *w => {}
        (p, w) if p == w => {}
        (p, w) => out.push(Miss {
            path: path.into(),
            want: p.to_string(),
            got: w.to_string(),
        }),
    }
}

/// Splits misses into failures and the run's known open differences; an
/// open path that now matches is a failure too (the data must drop it).
pub fn sort_out(
    misses: Vec<Miss>,
    open: &[String],
    checked: &[String],
) -> (Vec<String>, Vec<String>) {
    let mut fail = Vec::new();
    let mut known = Vec::new();
    for m in &misses {
        if open.contains(&m.path) {
            known.push(m.to_string());
        } else {
            fail.push(m.to_string());
        }
    }
    for o in open {
        let still_differs = misses.iter().any(|m| m.path == *o);
        let was_checked = checked.iter().any(|c| o.starts_with(c.as_str()));
        if was_checked && !still_differs {
            fail.push(format!(
                "{o} is listed as open but now matches upstream: remove it from \"open\""
            ));
        }
    }
    (fail, known)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parts_and_paths() {
        let mut out = Vec::new();
        part_of(
            &json!({"a": [{"b": 1, "c": null}], "n": "<netns>"}),
            &json!({"a": [{"b": 2, "c": 3, "d": 4}], "n": "/run/netns/x"}),
            "result",
            "/run/netns/x",
            &mut out,
        );
        let paths: Vec<_> = out.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(paths, ["result.a.0.b", "result.a.0.c"]);
    }
}
