//! Problems found in a topology file, as miette diagnostics that point at the line
//! and column of the offending value, with a label and a help line with the fix.

use std::fmt;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};

use super::spans::{ByteSpan, FieldPath, Part, SpanTree};

/// One problem in a topology file.
#[derive(Debug, Clone)]
pub struct Problem {
    /// What is wrong, in one sentence.
    pub message: String,
    /// Where, as a path into the document (`vms[1].nics[0].bridge`), when known.
    pub path: Option<FieldPath>,
    /// A short note shown under the offending text.
    pub label: String,
    /// How to fix it.
    pub help: Option<String>,
    /// 1-based line of the offending text.
    pub line: usize,
    /// 1-based column (in characters) of the offending text.
    pub column: usize,
    span: ByteSpan,
    source: NamedSource<Arc<str>>,
}

/// The file a problem is reported against: its name and text, shared by its problems.
#[derive(Debug, Clone)]
pub struct SourceFile {
    name: String,
    text: Arc<str>,
    tree: Arc<SpanTree>,
}

impl SourceFile {
    /// Wraps `text`, read from the file called `name`.
    pub fn new(name: impl Into<String>, text: &str) -> Self {
        SourceFile {
            name: name.into(),
            text: Arc::from(text),
            tree: Arc::new(SpanTree::build(text)),
        }
    }

    /// The file's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// A problem at the value (or key) that `path` leads to.
    pub fn problem_at(&self, path: FieldPath, part: Part, finding: Finding) -> Problem {
        let span = self
            .tree
            .locate(&path, part)
            .unwrap_or(ByteSpan { offset: 0, len: 0 });
        self.problem(span, Some(path), finding)
    }

    /// Every mapping of the file with its keys (see [`SpanTree::mappings`]).
    pub fn mappings(&self) -> Vec<(FieldPath, Vec<(String, ByteSpan)>)> {
        self.tree.mappings()
    }

    /// A problem at a span of the file.
    pub fn problem_at_span(&self, span: ByteSpan, path: FieldPath, finding: Finding) -> Problem {
        self.problem(span, Some(path), finding)
    }

    /// A problem at a 1-based line and column, widened to the token that starts there.
    pub fn problem_at_line(&self, line: usize, column: usize, finding: Finding) -> Problem {
        let offset = self.offset_of(line, column);
        let span = self.tree.node_starting_at(offset).unwrap_or(ByteSpan {
            offset,
            len: self.text[offset..]
                .find(|c: char| c.is_whitespace() || c == ',' || c == '}' || c == ']')
                .unwrap_or(self.text.len() - offset),
        });
        self.problem(span, None, finding)
    }

    fn problem(&self, span: ByteSpan, path: Option<FieldPath>, finding: Finding) -> Problem {
        let (line, column) = self.line_column(span.offset);
        Problem {
            message: finding.message,
            path,
            label: finding.label,
            help: finding.help,
            line,
            column,
            span,
            source: NamedSource::new(self.name.clone(), Arc::clone(&self.text)),
        }
    }

    fn offset_of(&self, line: usize, column: usize) -> usize {
        let line_start = self
            .text
            .split_inclusive('\n')
            .take(line.saturating_sub(1))
            .map(str::len)
            .sum::<usize>()
            .min(self.text.len());
        let rest = &self.text[line_start..];
        rest.char_indices()
            .nth(column.saturating_sub(1))
            .map_or(self.text.len(), |(b, _)| line_start + b)
    }

    fn line_column(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }
}

/// What a check found, before it is placed in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The headline: what is wrong.
    pub message: String,
    /// The label under the offending text.
    pub label: String,
    /// How to fix it, when there is something to say.
    pub help: Option<String>,
}

impl Finding {
    /// A finding with a message and a label, and no help yet.
    pub fn new(message: impl Into<String>, label: impl Into<String>) -> Self {
        Finding {
            message: message.into(),
            label: label.into(),
            help: None,
        }
    }

    /// Adds the help line that says how to fix it.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Problem {}

impl Diagnostic for Problem {
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(
            LabeledSpan::new_primary_with_span(
                Some(self.label.clone()),
                (self.span.offset, self.span.len),
            ),
        )))
    }
}

/// Longest piece of the user's text quoted in a message, in characters.
const QUOTE_MAX: usize = 60;

/// `text` as quoted in a message: cut to [`QUOTE_MAX`] characters with a note of the
/// rest, so that a megabyte-long key or value makes a line of output, not a megabyte.
pub fn clip(text: &str) -> String {
    match text.char_indices().nth(QUOTE_MAX) {
        None => text.to_string(),
        Some((end, _)) => format!(
            "{}… ({} more characters)",
            &text[..end],
            text[end..].chars().count()
        ),
    }
}

/// "did you mean `x`?" when some of `candidates` are close to `word`: the closest
/// ones, all of them when several are equally close (`sw3` for `sw1` and `sw2`).
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let limit = (word.chars().count() / 3).max(1);
    let scored: Vec<(usize, &str)> = candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(distance, _)| *distance <= limit)
        .collect();
    let best = scored.iter().map(|(d, _)| *d).min()?;
    let closest: Vec<String> = scored
        .iter()
        .filter(|(d, _)| *d == best)
        .map(|(_, c)| format!("`{c}`"))
        .collect();
    Some(format!("did you mean {}?", closest.join(" or ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        let known = ["bridge", "vlan", "trunk", "mac", "ip"];
        assert_eq!(
            did_you_mean("bridg", known).unwrap(),
            "did you mean `bridge`?"
        );
        assert_eq!(did_you_mean("valn", known).unwrap(), "did you mean `vlan`?");
        assert_eq!(did_you_mean("colour", known), None);
        assert_eq!(
            did_you_mean("sw3", ["sw1", "sw2", "core"]).unwrap(),
            "did you mean `sw1` or `sw2`?"
        );
    }

    #[test]
    fn positions_are_one_based_characters() {
        let file = SourceFile::new("lab.yaml", "name: \"é\"\nversion: x1\n");
        let p = file.problem_at_line(2, 10, Finding::new("bad", "here"));
        assert_eq!((p.line, p.column), (2, 10));
        assert_eq!(p.span.len, 2);
    }
}
