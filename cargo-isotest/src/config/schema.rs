//! The JSON Schema of the config file, for editors (Taplo, Even Better TOML) and for
//! the book's reference, checked in at `cargo-isotest/config.schema.json`.

use super::settings::ConfigFile;

/// The schema, as checked in.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(ConfigFile);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config.schema.json");

    #[test]
    fn the_checked_in_schema_is_the_generated_one() {
        let generated = json_schema();
        if std::env::var_os("ISOTEST_BLESS_SCHEMA").is_some() {
            std::fs::write(CHECKED_IN, &generated).unwrap();
        }
        let checked_in = std::fs::read_to_string(CHECKED_IN).unwrap_or_default();
        assert!(
            checked_in == generated,
            "{CHECKED_IN} is not the schema the code generates; regenerate it with\n  \
             ISOTEST_BLESS_SCHEMA=1 cargo test -p cargo-isotest --bins -- config::schema\n\
             and commit it"
        );
    }

    /// Every property name anywhere in the schema.
    fn properties(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Object(props)) = map.get("properties") {
                    out.extend(props.keys().cloned());
                }
                map.values().for_each(|v| properties(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| properties(v, out)),
            _ => {}
        }
    }

    /// Every `required` list, by the definition (a PascalCase name) that has it.
    fn required(value: &serde_json::Value, name: &str, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Array(keys)) = map.get("required") {
                    let keys: Vec<&str> = keys.iter().filter_map(|k| k.as_str()).collect();
                    out.push(format!("{name}: {}", keys.join(", ")));
                }
                for (key, v) in map {
                    let definition = key.starts_with(char::is_uppercase);
                    required(v, if definition { key } else { name }, out);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| required(v, name, out)),
            _ => {}
        }
    }

    #[test]
    fn only_what_has_no_default_is_required() {
        let schema: serde_json::Value = serde_json::from_str(&json_schema()).unwrap();
        let mut found = Vec::new();
        required(&schema, "", &mut found);
        found.sort();
        assert_eq!(
            found,
            [
                "FailFast: max-fail",
                "OverrideTable: filter",
                "RetryPolicy: backoff, count",
                "SlowTimeout: period",
                "TestGroupTable: max-threads",
            ]
        );
    }

    #[test]
    fn the_book_documents_every_key() {
        let book = Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/src/configuration.md");
        let page = std::fs::read_to_string(&book).unwrap();
        let schema: serde_json::Value = serde_json::from_str(&json_schema()).unwrap();
        let mut keys = Vec::new();
        properties(&schema, &mut keys);
        keys.sort();
        keys.dedup();
        let missing: Vec<&String> = keys
            .iter()
            .filter(|k| !page.contains(&format!("`{k}`")))
            .collect();
        assert!(missing.is_empty(), "{} lacks {missing:?}", book.display());
    }
}
