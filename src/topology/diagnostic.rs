//! Problems found in a topology file, as miette diagnostics that point at the line
//! and column of the offending value, with a label and a help line with the fix.

use std::fmt;
use std::sync::{Arc, OnceLock};

use miette::{
    Diagnostic, LabeledSpan, MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents,
};

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
    name: String,
    text: Arc<str>,
    /// The few lines miette shows, cut to a readable width; built when first shown,
    /// as a file with thousands of problems shows only the first few.
    excerpt: OnceLock<Excerpt>,
}

/// The file a problem is reported against: its name and text, shared by its problems.
#[derive(Debug, Clone)]
pub struct SourceFile {
    name: String,
    text: Arc<str>,
    tree: Arc<SpanTree>,
    /// Where each line starts, so that a position costs a search, not a scan.
    line_starts: Arc<Vec<usize>>,
}

impl SourceFile {
    /// Wraps `text`, read from the file called `name`.
    pub fn new(name: impl Into<String>, text: &str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceFile {
            name: name.into(),
            text: Arc::from(text),
            tree: Arc::new(SpanTree::build(text)),
            line_starts: Arc::new(line_starts),
        }
    }

    /// The file's name, as given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The marks of the file's nodes.
    pub fn tree(&self) -> &SpanTree {
        &self.tree
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
        // Checks quote the user's text; a huge value must not make a huge message.
        Problem {
            message: clip_to(finding.message, MESSAGE_MAX),
            path,
            label: clip_to(finding.label, MESSAGE_MAX),
            help: finding.help.map(|help| clip_to(help, MESSAGE_MAX)),
            line,
            column,
            span,
            name: self.name.clone(),
            text: Arc::clone(&self.text),
            excerpt: OnceLock::new(),
        }
    }

    fn offset_of(&self, line: usize, column: usize) -> usize {
        let Some(&line_start) = self.line_starts.get(line.saturating_sub(1)) else {
            return self.text.len();
        };
        let rest = &self.text[line_start..];
        rest.char_indices()
            .nth(column.saturating_sub(1))
            .map_or(self.text.len(), |(b, _)| line_start + b)
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(&self.text, offset);
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let line_start = self.line_starts[line - 1];
        (line, self.text[line_start..offset].chars().count() + 1)
    }
}

/// The largest char boundary of `text` at or before `offset`.
fn floor_char_boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// Widest stretch of one line shown in a snippet, in bytes; a longer line is cut to a
/// window around the problem.
const LINE_MAX: usize = 160;
/// How much of a long line is kept before the problem.
const LEAD: usize = 40;

/// The lines around a problem, each cut to [`LINE_MAX`], as a small source of its own
/// that still reports the file's own line and column numbers.
#[derive(Debug, Clone)]
struct Excerpt {
    name: String,
    text: String,
    /// 0-based line of the file where the excerpt starts.
    first_line: usize,
    /// The problem's line within the excerpt, and how many bytes of that line were
    /// cut from its start (less the marker that stands for them).
    problem_line: usize,
    shift: usize,
    /// The problem's span, in the excerpt.
    span: ByteSpan,
}

impl Excerpt {
    fn new(name: &str, text: &str, span: ByteSpan) -> Self {
        let start = floor_char_boundary(text, span.offset);
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        // A span over several lines is shown at its first.
        let end = floor_char_boundary(text, (span.offset + span.len).min(line_end)).max(start);
        let first_line = text[..line_start].matches('\n').count();
        let mut excerpt = String::new();
        let mut problem_line = 0;
        // One line of context on each side, as miette shows by default.
        let before = line_start
            .checked_sub(1)
            .map(|end| (text[..end].rfind('\n').map_or(0, |i| i + 1), end));
        if let Some((from, to)) = before {
            excerpt.push_str(&cut(&text[from..to], 0).0);
            excerpt.push('\n');
            problem_line = 1;
        }
        let (line, shift) = cut(&text[line_start..line_end], start - line_start);
        let span_start = excerpt.len() + (start - line_start) - shift;
        let span_len = (end - start).min(line.len().saturating_sub(span_start - excerpt.len()));
        excerpt.push_str(&line);
        if line_end < text.len() {
            let from = line_end + 1;
            let to = text[from..].find('\n').map_or(text.len(), |i| from + i);
            excerpt.push('\n');
            excerpt.push_str(&cut(&text[from..to], 0).0);
        }
        Excerpt {
            name: name.to_string(),
            text: excerpt,
            first_line: first_line - usize::from(before.is_some()),
            problem_line,
            shift,
            span: ByteSpan {
                offset: span_start,
                len: span_len,
            },
        }
    }
}

/// `line` cut to about [`LINE_MAX`] bytes around byte `at`, with `…` where text was
/// left out; and how many bytes the kept text moved left.
fn cut(line: &str, at: usize) -> (String, usize) {
    if line.len() <= LINE_MAX {
        return (line.to_string(), 0);
    }
    let from = floor_char_boundary(line, at.saturating_sub(LEAD));
    // The marker must stand for at least as many bytes as it takes.
    let from = if from <= '…'.len_utf8() { 0 } else { from };
    let to = floor_char_boundary(line, from + LINE_MAX);
    let mut kept = String::with_capacity(LINE_MAX + 8);
    let mut shift = from;
    if from > 0 {
        kept.push('…');
        shift -= '…'.len_utf8();
    }
    kept.push_str(&line[from..to]);
    if to < line.len() {
        kept.push('…');
    }
    (kept, shift)
}

impl SourceCode for Excerpt {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let inner =
            self.text
                .as_str()
                .read_span(span, context_lines_before, context_lines_after)?;
        let column = if inner.line() == self.problem_line {
            inner.column() + self.shift
        } else {
            inner.column()
        };
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            *inner.span(),
            inner.line() + self.first_line,
            column,
            inner.line_count(),
        )))
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

impl Problem {
    fn excerpt(&self) -> &Excerpt {
        self.excerpt
            .get_or_init(|| Excerpt::new(&self.name, &self.text, self.span))
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
        Some(self.excerpt())
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = self.excerpt().span;
        Some(Box::new(std::iter::once(
            LabeledSpan::new_primary_with_span(Some(self.label.clone()), (span.offset, span.len)),
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

/// Longest message, label or help line, in bytes.
const MESSAGE_MAX: usize = 400;

/// `text` cut to about `max` bytes, with a note of what was left out.
fn clip_to(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let end = floor_char_boundary(&text, max);
    format!("{}… ({} more bytes)", &text[..end], text.len() - end)
}

/// "did you mean `x`?" when some of `candidates` are close to `word`: the closest
/// ones, all of them when several are equally close (`sw3` for `sw1` and `sw2`).
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let closest: Vec<String> = closest(word, candidates)
        .into_iter()
        .map(|c| format!("`{c}`"))
        .collect();
    if closest.is_empty() {
        return None;
    }
    Some(format!("did you mean {}?", closest.join(" or ")))
}

/// The candidates closest to `word` (a third of its length or less away), all of
/// them when several are equally close; none when nothing is close.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let length = word.chars().count();
    let limit = (length / 3).max(1);
    let scored: Vec<(usize, &str)> = candidates
        .into_iter()
        // Words whose lengths differ by more than the limit are further apart than
        // it; skipping them keeps a megabyte-long word from costing seconds.
        .filter(|c| c.chars().count().abs_diff(length) <= limit)
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(distance, _)| *distance <= limit)
        .collect();
    let Some(best) = scored.iter().map(|(d, _)| *d).min() else {
        return Vec::new();
    };
    scored
        .into_iter()
        .filter(|(d, _)| *d == best)
        .map(|(_, c)| c)
        .collect()
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

    fn render(problem: &Problem) -> String {
        let mut out = String::new();
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .render_report(&mut out, problem)
            .unwrap();
        out
    }

    #[test]
    fn a_long_line_is_shown_as_a_window_at_the_file_s_position() {
        let text = format!(
            "a: 1\nb: {}bad{}\nc: 2\n",
            "x".repeat(5000),
            "y".repeat(5000)
        );
        let file = SourceFile::new("lab.yaml", &text);
        let span = ByteSpan {
            offset: 8 + 5000,
            len: 3,
        };
        let problem = file.problem_at_span(span, FieldPath::root(), Finding::new("bad", "here"));
        assert_eq!((problem.line, problem.column), (2, 5004));
        let out = render(&problem);
        assert!(out.contains("[lab.yaml:2:5004]"), "{out}");
        assert!(out.contains("xbady"), "{out}");
        assert!(out.contains(" 3 │ c: 2"), "{out}");
        assert!(out.len() < 2000, "{out}");
    }

    #[test]
    fn the_excerpt_labels_the_same_text_wherever_the_line_is_cut() {
        let line: String = (0..400)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let text = format!("x: 1\ny: {line}\nz: 2\n");
        for at in (5..text.len() - 8).step_by(7) {
            let span = ByteSpan { offset: at, len: 3 };
            let excerpt = Excerpt::new("lab.yaml", &text, span);
            let shown = &excerpt.text[excerpt.span.offset..excerpt.span.offset + excerpt.span.len];
            assert_eq!(shown, &text[at..at + 3], "at {at}: {}", excerpt.text);
        }
    }

    #[test]
    fn a_label_over_a_huge_span_is_cut_to_the_window() {
        let text = format!("{}: 1\n", "k".repeat(1_000_000));
        let file = SourceFile::new("lab.yaml", &text);
        let span = ByteSpan {
            offset: 0,
            len: 1_000_000,
        };
        let problem = file.problem_at_span(span, FieldPath::root(), Finding::new("long", "key"));
        let out = render(&problem);
        assert!(out.contains("[lab.yaml:1:1]"), "{out}");
        assert!(out.len() < 4000, "{out}");
    }

    #[test]
    fn positions_are_one_based_characters() {
        let file = SourceFile::new("lab.yaml", "name: \"é\"\nversion: x1\n");
        let p = file.problem_at_line(2, 10, Finding::new("bad", "here"));
        assert_eq!((p.line, p.column), (2, 10));
        assert_eq!(p.span.len, 2);
    }
}
