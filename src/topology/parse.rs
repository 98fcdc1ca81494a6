//! The YAML layer and the pass over a whole file: serde_yaml reads the file into
//! [`Topology`]; its errors (syntax, types, unknown or missing keys) become
//! [`Problem`]s with line, column and a fix, and all but syntax errors are read past,
//! so that the semantic checks of [`super::validate`] still run.

use serde_json::Value as Json;
use serde_yaml::Value;

use super::diagnostic::{Finding, Problem, SourceFile, clip, closest, did_you_mean};
use super::model::Topology;
use super::spans::{FieldPath, MAX_DEPTH, Part, Segment};
use super::validate::{self, Context};

/// Most problems of the typed layer (types, missing keys) read before it stops; each
/// costs one more pass over the document.
const TYPED_MAX: usize = 64;

/// Reads `file` into a topology and checks it, reporting every problem in one pass.
///
/// Only what stops YAML itself stops the pass: a syntax error, an empty file, absurd
/// nesting. Past that, unknown keys are reported and left out (or read as the key they
/// misspell, when that is plain), values of the wrong type are reported and replaced
/// by their defaults, and the semantic checks run on what is left, quiet about the
/// values already reported.
pub fn parse(file: &SourceFile, ctx: &Context) -> Result<Topology, Vec<Problem>> {
    if let Some(span) = file.tree().too_deep() {
        return Err(vec![file.problem_at_span(
            span,
            FieldPath::root(),
            Finding::new(
                format!("the document nests deeper than {MAX_DEPTH} levels"),
                "too deep",
            )
            .help("a topology needs a handful of levels: check for runaway brackets or indentation"),
        )]);
    }
    if file.text().trim().is_empty() {
        return Err(vec![
            file.problem_at_line(
                1,
                1,
                Finding::new("the topology file is empty", "nothing here")
                    .help("start with `version: 1` and `name: my-lab`"),
            ),
        ]);
    }
    let value: Value = serde_yaml::from_str(file.text()).map_err(|e| vec![to_problem(file, &e)])?;
    let mut problems = Vec::new();
    let mut recovery = Recovery::default();
    let value = recovery.unknown_keys(file, value, &mut problems);
    match recovery.typed(file, value, &mut problems) {
        Some(topology) => {
            for located in validate::validate_recovered(&topology, ctx, &recovery.poisoned) {
                if recovery
                    .poisoned
                    .iter()
                    .any(|p| located.path.starts_with(p))
                {
                    continue; // that value was reported as unreadable already
                }
                let written = recovery.written(&located.path);
                problems.push(file.problem_at(written, located.part, located.finding));
            }
            if problems.is_empty() {
                return Ok(topology);
            }
        }
        // Recovery stopped without a word: let serde say what it finds in the file.
        None if problems.is_empty() => match serde_yaml::from_str::<Topology>(file.text()) {
            Err(error) => problems.push(to_problem(file, &error)),
            Ok(_) => problems.push(
                file.problem_at_line(
                    1,
                    1,
                    Finding::new("kvmlab could not read this file", "here")
                        .help("check it against `kvmlab schema`"),
                ),
            ),
        },
        None => {}
    }
    // In the order of the file, as a reader goes through it.
    problems.sort_by_key(|p| (p.line, p.column));
    Err(problems)
}

/// What reading the file past its problems changed, so that later checks neither
/// repeat a problem nor lose its place.
#[derive(Default)]
struct Recovery {
    /// Values that were unreadable and replaced by a default or a placeholder.
    poisoned: Vec<FieldPath>,
    /// Keys read as the key they misspell: (the path as meant, the path as written).
    renamed: Vec<(FieldPath, FieldPath)>,
}

impl Recovery {
    /// `path` as written in the file, through any key read under another name.
    fn written(&self, path: &FieldPath) -> FieldPath {
        for (meant, written) in &self.renamed {
            if path.starts_with(meant) {
                let mut path = path.clone();
                path.0.splice(..meant.0.len(), written.0.iter().cloned());
                return path;
            }
        }
        path.clone()
    }

    /// Reports every key the format does not have, each with a "did you mean", and
    /// takes it out of `value`; a key that plainly misspells one the mapping lacks is
    /// read as that key, so that `bridg: sw1` still names a bridge to check.
    ///
    /// This walks the whole document against the JSON Schema generated from the same
    /// types, so a file's misspellings are all reported at once.
    fn unknown_keys(
        &mut self,
        file: &SourceFile,
        mut value: Value,
        problems: &mut Vec<Problem>,
    ) -> Value {
        let schema =
            serde_json::to_value(schemars::schema_for!(Topology)).expect("a schema serialises");
        for (path, keys) in file.mappings() {
            let Some(properties) = schema_at(&schema, &path).and_then(|s| s.get("properties"))
            else {
                continue;
            };
            let Some(properties) = properties.as_object() else {
                continue;
            };
            let allowed: Vec<&str> = properties.keys().map(String::as_str).collect();
            let present: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
            let mut taken: Vec<&str> = Vec::new();
            for (key, span) in &keys {
                if properties.contains_key(key) {
                    continue;
                }
                problems.push(file.problem_at_span(
                    *span,
                    path.key(key),
                    unknown_key(key, &allowed),
                ));
                let meant = match closest(key, allowed.iter().copied())[..] {
                    [only] if !present.contains(&only) && !taken.contains(&only) => Some(only),
                    _ => None,
                };
                let Some(Value::Mapping(mapping)) = value_at(&mut value, &path) else {
                    continue;
                };
                let Some(entry) = find_key(mapping, key) else {
                    continue;
                };
                let Some(item) = mapping.shift_remove(&entry) else {
                    continue;
                };
                if let Some(meant) = meant {
                    mapping.insert(Value::String(meant.to_string()), item);
                    self.renamed.push((path.key(meant), path.key(key)));
                    taken.push(meant);
                }
            }
        }
        value
    }

    /// Deserialises `value`; each value of the wrong type (or missing key) is reported
    /// and replaced, and the reading tried again, up to [`TYPED_MAX`] problems.
    fn typed(
        &mut self,
        file: &SourceFile,
        mut value: Value,
        problems: &mut Vec<Problem>,
    ) -> Option<Topology> {
        for _ in 0..TYPED_MAX {
            // Through text, not `from_value`: only the text deserialiser says where
            // (`vms[0].vcpus`) a problem is.
            let yaml = serde_yaml::to_string(&value).ok()?;
            let error = match serde_yaml::from_str::<Topology>(&yaml) {
                Ok(topology) => return Some(topology),
                Err(error) => error,
            };
            let (path, message) = split_message(&error);
            let path = path.unwrap_or_default();
            if let Some(field) = message.strip_prefix("missing field ") {
                let field = backticked(field)
                    .first()
                    .copied()
                    .unwrap_or_default()
                    .to_string();
                let missing = path.key(&field);
                // A key dropped as unreadable (or an entry that was no mapping) is
                // missing now: it was reported already.
                if !self.poisoned.iter().any(|p| missing.starts_with(p)) {
                    let finding = finding_for(&message);
                    problems.push(file.problem_at(self.written(&path), Part::Value, finding));
                }
                let Some(Value::Mapping(mapping)) = value_at(&mut value, &path) else {
                    return None;
                };
                // Every key the format requires is text, but `version`.
                let placeholder = if field == "version" {
                    Value::Number(1.into())
                } else {
                    Value::String(String::new())
                };
                mapping.insert(Value::String(field), placeholder);
                self.poisoned.push(missing);
                continue;
            }
            problems.push(file.problem_at(self.written(&path), Part::Value, finding_for(&message)));
            let poisoned = drop_value(&mut value, &path, &message)?;
            self.poisoned.push(poisoned);
        }
        // Say that the list is cut short, where the reader will look last.
        let end = file.text().len();
        let (line, column) = file.line_column(end);
        problems.push(
            file.problem_at_line(
                line,
                column,
                Finding::new(
                    format!("kvmlab stopped reading after {TYPED_MAX} values of the wrong type"),
                    "stopped here",
                )
                .help("fix these and run `kvmlab validate` again to see the rest"),
            ),
        );
        None
    }
}

/// Takes the unreadable value at `path` out of `value`, returning the path of what
/// was taken: an entry of a list of mappings becomes an empty mapping (its keys are
/// then reported missing), a whole list goes when one of its items is bad (its
/// default is empty), and a mapping key goes (its default takes its place).
fn drop_value(value: &mut Value, path: &FieldPath, message: &str) -> Option<FieldPath> {
    let (last, parent) = (path.0.last()?.clone(), path.parent());
    match last {
        Segment::Index(i) if message.contains("expected struct") => {
            let Some(Value::Sequence(items)) = value_at(value, &parent) else {
                return None;
            };
            *items.get_mut(i)? = Value::Mapping(Default::default());
            Some(path.clone())
        }
        Segment::Index(_) => drop_value(value, &parent, message),
        Segment::Key(key) => {
            let Some(Value::Mapping(mapping)) = value_at(value, &parent) else {
                return None;
            };
            let entry = find_key(mapping, &key)?;
            mapping.shift_remove(&entry)?;
            Some(path.clone())
        }
    }
}

/// The value at `path`, if the document has one there.
fn value_at<'a>(value: &'a mut Value, path: &FieldPath) -> Option<&'a mut Value> {
    let mut value = value;
    for segment in &path.0 {
        value = match (value, segment) {
            (Value::Mapping(mapping), Segment::Key(key)) => {
                let entry = find_key(mapping, key)?;
                mapping.get_mut(&entry)?
            }
            (Value::Sequence(items), Segment::Index(i)) => items.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(value)
}

/// The key of `mapping` written as `text` (keys such as VLAN ids are numbers).
fn find_key(mapping: &serde_yaml::Mapping, text: &str) -> Option<Value> {
    mapping
        .keys()
        .find(|k| match k {
            Value::String(s) => s == text,
            Value::Number(n) => n.to_string() == text,
            Value::Bool(b) => b.to_string() == text,
            _ => false,
        })
        .cloned()
}

fn unknown_key(key: &str, allowed: &[&str]) -> Finding {
    let help = match did_you_mean(key, allowed.iter().copied()) {
        Some(suggestion) => suggestion,
        None if allowed.is_empty() => "remove it".to_string(),
        None => format!("remove it; allowed here: {}", allowed.join(", ")),
    };
    Finding::new(format!("unknown key `{}`", clip(key)), "unknown key").help(help)
}

/// The schema of the value at `path`, following `$ref`s, `items`, `properties`, and
/// the `anyOf` schemars writes for optional values.
fn schema_at<'a>(root: &'a Json, path: &FieldPath) -> Option<&'a Json> {
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

fn resolve<'a>(root: &'a Json, schema: &'a Json) -> Option<&'a Json> {
    if let Some(reference) = schema.get("$ref").and_then(Json::as_str) {
        let name = reference.strip_prefix("#/$defs/")?;
        return resolve(root, root.get("$defs")?.get(name)?);
    }
    if let Some(options) = schema.get("anyOf").and_then(Json::as_array) {
        return options
            .iter()
            .find(|o| o.get("type").and_then(Json::as_str) != Some("null"))
            .and_then(|o| resolve(root, o));
    }
    Some(schema)
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
    if message.contains("while scanning a simple key") {
        return Finding::new(message.to_string(), "here").help(
            "a key ends with `:` on its own line, at most 1024 characters from its start; check for a missing `:`",
        );
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
