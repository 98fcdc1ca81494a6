//! The YAML layer: serde_yaml reads the file into [`Topology`]; its errors (syntax,
//! types, unknown or missing keys) become [`Problem`]s with line, column and a fix.

use serde_json::Value;

use super::diagnostic::{Finding, Problem, SourceFile, did_you_mean};
use super::model::Topology;
use super::spans::{FieldPath, Part, Segment};

/// Every key of the file that the format does not have, each with a "did you mean".
///
/// serde stops at the first unknown key; this walks the whole document against the
/// JSON Schema generated from the same types, so a file's misspellings are all
/// reported at once.
pub fn unknown_keys(file: &SourceFile) -> Vec<Problem> {
    let schema =
        serde_json::to_value(schemars::schema_for!(Topology)).expect("a schema serialises");
    let mut problems = Vec::new();
    for (path, keys) in file.mappings() {
        let Some(properties) = schema_at(&schema, &path).and_then(|s| s.get("properties")) else {
            continue;
        };
        let Some(properties) = properties.as_object() else {
            continue;
        };
        for (key, span) in keys {
            if properties.contains_key(&key) {
                continue;
            }
            let allowed: Vec<&str> = properties.keys().map(String::as_str).collect();
            let finding = unknown_key(&key, &allowed);
            problems.push(file.problem_at_span(span, path.key(&key), finding));
        }
    }
    problems
}

fn unknown_key(key: &str, allowed: &[&str]) -> Finding {
    let help = match did_you_mean(key, allowed.iter().copied()) {
        Some(suggestion) => suggestion,
        None if allowed.is_empty() => "remove it".to_string(),
        None => format!("remove it; allowed here: {}", allowed.join(", ")),
    };
    Finding::new(format!("unknown key `{key}`"), "unknown key").help(help)
}

/// The schema of the value at `path`, following `$ref`s, `items`, `properties`, and
/// the `anyOf` schemars writes for optional values.
fn schema_at<'a>(root: &'a Value, path: &FieldPath) -> Option<&'a Value> {
    let mut schema = resolve(root, root)?;
    for segment in &path.0 {
        let next = match segment {
            Segment::Key(key) => schema.get("properties")?.get(key)?,
            Segment::Index(_) => schema.get("items")?,
        };
        schema = resolve(root, next)?;
    }
    Some(schema)
}

fn resolve<'a>(root: &'a Value, schema: &'a Value) -> Option<&'a Value> {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.strip_prefix("#/$defs/")?;
        return resolve(root, root.get("$defs")?.get(name)?);
    }
    if let Some(options) = schema.get("anyOf").and_then(Value::as_array) {
        return options
            .iter()
            .find(|o| o.get("type").and_then(Value::as_str) != Some("null"))
            .and_then(|o| resolve(root, o));
    }
    Some(schema)
}

/// Reads `file` into a topology, or the first problem the YAML layer found.
pub fn deserialize(file: &SourceFile) -> Result<Topology, Box<Problem>> {
    if file.text().trim().is_empty() {
        return Err(Box::new(
            file.problem_at_line(
                1,
                1,
                Finding::new("the topology file is empty", "nothing here")
                    .help("start with `version: 1` and `name: my-lab`"),
            ),
        ));
    }
    serde_yaml::from_str(file.text()).map_err(|e| Box::new(to_problem(file, &e)))
}

/// serde_yaml's message is `path: message at line L column C`; split it up.
fn split_message(error: &serde_yaml::Error) -> (Option<FieldPath>, String) {
    let text = error.to_string();
    let text = match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    };
    if let Some((head, rest)) = text.split_once(": ") {
        if let Some(path) = FieldPath::parse(head).filter(|_| !head.contains(' ')) {
            return (Some(path), rest.to_string());
        }
    }
    (None, text)
}

/// The words in backticks in `text`, as serde lists expected fields.
fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

fn to_problem(file: &SourceFile, error: &serde_yaml::Error) -> Problem {
    let (path, message) = split_message(error);
    let finding = finding_for(&message);
    let unknown_field = message.starts_with("unknown field");
    match (error.location(), path) {
        // serde_yaml places an unknown field at its key: point there.
        (Some(loc), _) if unknown_field => file.problem_at_line(loc.line(), loc.column(), finding),
        // Missing fields: point at the mapping that lacks it.
        (_, Some(path)) if message.starts_with("missing field") => {
            file.problem_at(path, Part::Value, finding)
        }
        (Some(loc), _) => file.problem_at_line(loc.line(), loc.column(), finding),
        (None, Some(path)) => file.problem_at(path, Part::Value, finding),
        (None, None) => file.problem_at_line(1, 1, finding),
    }
}

fn finding_for(message: &str) -> Finding {
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let words = backticked(rest);
        let (field, expected) = words.split_first().map_or(("", &[][..]), |(f, e)| (*f, e));
        return unknown_key(field, expected);
    }
    if message.starts_with("missing field ") {
        let field = backticked(message).first().copied().unwrap_or_default();
        return Finding::new(
            format!("missing key `{field}`"),
            format!("`{field}` is missing here"),
        )
        .help(format!("add `{field}:` to this entry"));
    }
    if message.starts_with("invalid type") || message.starts_with("invalid value") {
        return Finding::new(message.to_string(), "wrong type").help(type_help(message));
    }
    if message.contains("is not a size")
        || message.contains("unknown unit")
        || message.contains("too large")
    {
        return Finding::new(message.to_string(), "not a size")
            .help("write a number with a binary unit, like 64MiB, 1GiB or 512M");
    }
    Finding::new(message.to_string(), "here").help(
        "kvmlab reads YAML: check indentation, and that `:` follows each key and `- ` starts each list item",
    )
}

fn type_help(message: &str) -> String {
    if message.contains("expected u16") {
        "write a VLAN id as a whole number from 1 to 4094".to_string()
    } else if message.contains("expected u32") {
        "write a whole number".to_string()
    } else if message.contains("a sequence") {
        "write a list: `[a, b]` or one `- item` per line".to_string()
    } else if message.contains("a boolean") {
        "write `true` or `false`".to_string()
    } else if message.contains("struct") || message.contains("a map") {
        "write a mapping of keys to values (`key: value`)".to_string()
    } else {
        "check the type of this value against `kvmlab schema`".to_string()
    }
}
