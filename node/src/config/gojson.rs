//! Reading the upstream plugin's JSON the way its Go decoder does, so a
//! file that loads there loads here with the same meaning:
//!
//! - an object key names a field whatever its case (`IsRdma`, `isrdma` and
//!   `isRdma` are one field; an exact match wins over a folded one). The
//!   SR-IOV network operator renders `"IsRdma"`: the Go struct field has no
//!   JSON tag, so its encoder writes the field's own name;
//! - `null` leaves a field at its default (the operator renders
//!   `"resourceList": null` for a node without policies);
//! - a key that names no field is ignored.
//!
//! Map keys (`additionalInfo`'s) are data, not fields: they keep their case.

use serde_json::{Map, Value};

/// Renames the keys of `obj` that match one of `fields` ignoring ASCII case
/// to that field's name, and drops keys whose value is `null`.
pub(crate) fn fold_keys(obj: &mut Map<String, Value>, fields: &[&str]) {
    let keys: Vec<String> = obj.keys().cloned().collect();
    for key in keys {
        if obj.get(&key).is_some_and(Value::is_null) {
            obj.remove(&key);
            continue;
        }
        if fields.contains(&key.as_str()) {
            continue;
        }
        let Some(field) = fields.iter().find(|f| f.eq_ignore_ascii_case(&key)) else {
            continue;
        };
        let value = obj.remove(&key).unwrap_or(Value::Null);
        // The exact spelling, when the file has it too, wins.
        obj.entry(field.to_string()).or_insert(value);
    }
}

/// `fold_keys` on `v` when it is an object; on each element when it is a
/// list of objects.
pub(crate) fn fold_object_or_list(v: &mut Value, fields: &[&str]) {
    match v {
        Value::Object(o) => fold_keys(o, fields),
        Value::Array(items) => {
            for item in items {
                if let Value::Object(o) = item {
                    fold_keys(o, fields);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_fold_to_fields_and_nulls_drop() {
        let mut v = json!({"IsRdma": true, "PFNAMES": ["p"], "vendors": null, "other": 1});
        fold_keys(
            v.as_object_mut().unwrap(),
            &["isRdma", "pfNames", "vendors"],
        );
        assert_eq!(v, json!({"isRdma": true, "pfNames": ["p"], "other": 1}));
    }

    #[test]
    fn exact_spelling_wins() {
        let mut v = json!({"isRdma": false, "IsRdma": true});
        fold_keys(v.as_object_mut().unwrap(), &["isRdma"]);
        assert_eq!(v, json!({"isRdma": false}));
    }

    #[test]
    fn lists_fold_each_object() {
        let mut v = json!([{"Drivers": ["a"]}, "not an object", {"drivers": ["b"]}]);
        fold_object_or_list(&mut v, &["drivers"]);
        assert_eq!(
            v,
            json!([{"drivers": ["a"]}, "not an object", {"drivers": ["b"]}])
        );
    }
}
