//! Where each value of a YAML document is: a second pass over the file with a parser
//! that keeps marks, so that a problem found at `vms[1].nics[0].bridge` can point at
//! its line and column (serde_yaml keeps no spans for values).

use std::fmt;

use saphyr_parser::{Event, Parser, Span};

/// One step into a document: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// The value of this key of a mapping.
    Key(String),
    /// The item at this index of a sequence.
    Index(usize),
}

/// A path to a value, such as `vms[1].nics[0].bridge`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(pub Vec<Segment>);

impl FieldPath {
    /// The document's root.
    pub fn root() -> Self {
        FieldPath(Vec::new())
    }

    /// This path extended by a mapping key.
    pub fn key(&self, key: &str) -> Self {
        let mut path = self.clone();
        path.0.push(Segment::Key(key.to_string()));
        path
    }

    /// This path extended by a sequence index.
    pub fn index(&self, index: usize) -> Self {
        let mut path = self.clone();
        path.0.push(Segment::Index(index));
        path
    }

    /// Whether this path is `prefix` or leads through it.
    pub fn starts_with(&self, prefix: &FieldPath) -> bool {
        self.0.starts_with(&prefix.0)
    }

    /// The path without its last step; the root stays the root.
    pub fn parent(&self) -> FieldPath {
        let mut path = self.clone();
        path.0.pop();
        path
    }

    /// Reads the `a.b[2].c` form serde_yaml puts in front of its messages.
    pub fn parse(text: &str) -> Option<Self> {
        let mut segments = Vec::new();
        for part in text.split('.') {
            let (key, mut rest) = match part.find('[') {
                Some(at) => part.split_at(at),
                None => (part, ""),
            };
            if key.is_empty() && rest.is_empty() {
                return None;
            }
            if !key.is_empty() {
                segments.push(Segment::Key(key.to_string()));
            }
            while let Some(stripped) = rest.strip_prefix('[') {
                let end = stripped.find(']')?;
                segments.push(Segment::Index(stripped[..end].parse().ok()?));
                rest = &stripped[end + 1..];
            }
            if !rest.is_empty() {
                return None;
            }
        }
        Some(FieldPath(segments))
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => write!(f, "{key}")?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A byte range of the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSpan {
    /// Where the range starts.
    pub offset: usize,
    /// How many bytes it covers.
    pub len: usize,
}

#[derive(Debug)]
enum NodeKind {
    Scalar(String),
    Sequence(Vec<Node>),
    Mapping(Vec<(Node, Node)>),
}

#[derive(Debug)]
struct Node {
    span: ByteSpan,
    kind: NodeKind,
}

/// Deepest nesting of collections kvmlab reads. A topology needs about six levels
/// (`vms[0].nics[0].vlan_ips.10`); far deeper is no lab, and would cost time (and
/// stack) in every layer that walks the document.
pub const MAX_DEPTH: usize = 64;

/// The marks of every node of a YAML document.
#[derive(Debug)]
pub struct SpanTree {
    root: Option<Node>,
    /// Where the document first nests deeper than [`MAX_DEPTH`]; nothing past it is
    /// read.
    too_deep: Option<ByteSpan>,
}

/// Which part of a mapping entry a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The key itself (an unknown or misspelt key).
    Key,
    /// The key's value.
    Value,
}

impl SpanTree {
    /// Builds the tree; a document the marking parser cannot read gives an empty tree,
    /// whose lookups all fail (serde_yaml reports the syntax error itself).
    pub fn build(source: &str) -> Self {
        if let Some(offset) = flow_too_deep(source) {
            return SpanTree {
                root: None,
                too_deep: Some(ByteSpan { offset, len: 1 }),
            };
        }
        let offsets = CharOffsets::new(source);
        let mut builder = TreeBuilder {
            source,
            offsets: &offsets,
            stack: Vec::new(),
            root: None,
        };
        for item in Parser::new_from_str(source) {
            match item {
                Ok((event, span)) => {
                    let opens = matches!(event, Event::SequenceStart(..) | Event::MappingStart(..));
                    if opens && builder.stack.len() >= MAX_DEPTH {
                        let offset = offsets.byte(span.start.index());
                        return SpanTree {
                            root: None,
                            too_deep: Some(ByteSpan { offset, len: 1 }),
                        };
                    }
                    if builder.event(event, span) {
                        break;
                    }
                }
                Err(_) => {
                    return SpanTree {
                        root: None,
                        too_deep: None,
                    };
                }
            }
        }
        SpanTree {
            root: builder.root,
            too_deep: None,
        }
    }

    /// Where the document nests deeper than [`MAX_DEPTH`], if it does.
    pub fn too_deep(&self) -> Option<ByteSpan> {
        self.too_deep
    }

    /// The span of the value at `path` (or of its key), or of the nearest enclosing
    /// value that exists when the path leads nowhere (a missing key, say).
    pub fn locate(&self, path: &FieldPath, part: Part) -> Option<ByteSpan> {
        let mut node = self.root.as_ref()?;
        let mut key_span = None;
        for segment in &path.0 {
            let next = match (&node.kind, segment) {
                (NodeKind::Mapping(entries), Segment::Key(want)) => entries
                    .iter()
                    .find(|(key, _)| matches!(&key.kind, NodeKind::Scalar(t) if t == want))
                    .map(|(key, value)| (key, value)),
                (NodeKind::Sequence(items), Segment::Index(i)) => {
                    items.get(*i).map(|item| (item, item))
                }
                _ => None,
            };
            match next {
                Some((key, value)) => {
                    key_span = Some(key.span);
                    node = value;
                }
                None => return Some(node.span),
            }
        }
        match part {
            Part::Key => key_span.or(Some(node.span)),
            Part::Value => Some(node.span),
        }
    }

    /// Every mapping of the document: its path and its keys with their spans.
    pub fn mappings(&self) -> Vec<(FieldPath, Vec<(String, ByteSpan)>)> {
        fn walk(node: &Node, path: FieldPath, out: &mut Vec<(FieldPath, Vec<(String, ByteSpan)>)>) {
            match &node.kind {
                NodeKind::Scalar(_) => {}
                NodeKind::Sequence(items) => {
                    for (i, item) in items.iter().enumerate() {
                        walk(item, path.index(i), out);
                    }
                }
                NodeKind::Mapping(entries) => {
                    let mut keys = Vec::new();
                    for (key, value) in entries {
                        if let NodeKind::Scalar(text) = &key.kind {
                            keys.push((text.clone(), key.span));
                            walk(value, path.key(text), out);
                        }
                    }
                    out.push((path, keys));
                }
            }
        }
        let mut out = Vec::new();
        if let Some(root) = &self.root {
            walk(root, FieldPath::root(), &mut out);
        }
        // Document order, so problems are reported top to bottom.
        out.sort_by_key(|(_, keys)| keys.first().map_or(usize::MAX, |(_, span)| span.offset));
        out
    }

    /// The span of the innermost node that starts at `offset` (to widen serde_yaml's
    /// single-point locations to the whole offending token).
    pub fn node_starting_at(&self, offset: usize) -> Option<ByteSpan> {
        fn walk(node: &Node, offset: usize) -> Option<ByteSpan> {
            let inner = match &node.kind {
                NodeKind::Scalar(_) => None,
                NodeKind::Sequence(items) => items.iter().find_map(|n| walk(n, offset)),
                NodeKind::Mapping(entries) => entries
                    .iter()
                    .find_map(|(k, v)| walk(k, offset).or_else(|| walk(v, offset))),
            };
            inner.or_else(|| (node.span.offset == offset).then_some(node.span))
        }
        walk(self.root.as_ref()?, offset)
    }
}

/// Bracket nesting past which [`flow_too_deep`] refuses a file whatever the brackets
/// are in: a backstop for quoting its scan misreads. Far above any real file, and
/// low enough that the parser's cost up to it is small.
const RAW_BRACKETS_MAX: usize = 1024;

/// Where flow collections (`[...]`, `{...}`) first nest deeper than [`MAX_DEPTH`].
///
/// This must be known before the parser runs: inside a flow collection saphyr keeps a
/// possible key per level until the collection closes and checks them all at every
/// token, so `[[[[...]]]]` costs it time in the square of the depth (seconds at
/// 100,000) before it yields the first event. A linear scan that skips comments and
/// quoted text finds the depth first.
fn flow_too_deep(source: &str) -> Option<usize> {
    let bytes = source.as_bytes();
    let (mut depth, mut raw) = (0usize, 0usize);
    let mut quote: Option<u8> = None;
    let mut comment = false;
    let mut prev = b'\n';
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'[' | b'{' => {
                raw += 1;
                if raw > RAW_BRACKETS_MAX {
                    return Some(i);
                }
            }
            b']' | b'}' => raw = raw.saturating_sub(1),
            _ => {}
        }
        if comment {
            comment = b != b'\n';
        } else if let Some(q) = quote {
            if q == b'"' && b == b'\\' {
                i += 1; // an escaped character, perhaps a quote
            } else if b == q {
                quote = None;
            }
        } else {
            match b {
                b'#' if prev.is_ascii_whitespace() => comment = true,
                // A quote opens a quoted scalar only where a scalar can start; inside
                // a plain scalar (`it's`) it is text.
                b'\'' | b'"' if b" \t\r\n[{,:-?".contains(&prev) => quote = Some(b),
                b'[' | b'{' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Some(i);
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        prev = b;
        i += 1;
    }
    None
}

/// saphyr's marks count characters; miette wants bytes.
struct CharOffsets(Vec<usize>);

impl CharOffsets {
    fn new(source: &str) -> Self {
        let mut offsets: Vec<usize> = source.char_indices().map(|(b, _)| b).collect();
        offsets.push(source.len());
        CharOffsets(offsets)
    }

    fn byte(&self, char_index: usize) -> usize {
        self.0
            .get(char_index)
            .copied()
            .unwrap_or(*self.0.last().unwrap_or(&0))
    }
}

enum Open {
    Sequence(usize, Vec<Node>),
    Mapping(usize, Vec<(Node, Node)>, Option<Node>),
}

struct TreeBuilder<'a> {
    source: &'a str,
    offsets: &'a CharOffsets,
    stack: Vec<Open>,
    root: Option<Node>,
}

impl TreeBuilder<'_> {
    /// Feeds one event; true once the first document is complete.
    fn event(&mut self, event: Event<'_>, span: Span) -> bool {
        let start = self.offsets.byte(span.start.index());
        let end = self.offsets.byte(span.end.index()).max(start);
        match event {
            Event::Scalar(text, ..) => {
                let node = Node {
                    span: ByteSpan {
                        offset: start,
                        len: end - start,
                    },
                    kind: NodeKind::Scalar(text.into_owned()),
                };
                self.push(node)
            }
            Event::Alias(_) => self.push(Node {
                span: ByteSpan {
                    offset: start,
                    len: end - start,
                },
                kind: NodeKind::Scalar(String::new()),
            }),
            Event::SequenceStart(..) => {
                self.stack.push(Open::Sequence(start, Vec::new()));
                false
            }
            Event::MappingStart(..) => {
                self.stack.push(Open::Mapping(start, Vec::new(), None));
                false
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match self.stack.pop() {
                    Some(Open::Sequence(at, items)) => Node {
                        span: self.first_line(at),
                        kind: NodeKind::Sequence(items),
                    },
                    Some(Open::Mapping(at, entries, _)) => Node {
                        span: self.first_line(at),
                        kind: NodeKind::Mapping(entries),
                    },
                    None => return true,
                };
                self.push(node)
            }
            Event::DocumentEnd | Event::StreamEnd => true,
            _ => false,
        }
    }

    /// A collection is labelled by its first line only, which keeps snippets short.
    fn first_line(&self, offset: usize) -> ByteSpan {
        let rest = &self.source[offset..];
        let len = rest.find('\n').unwrap_or(rest.len());
        ByteSpan {
            offset,
            len: rest[..len].trim_end().len(),
        }
    }

    fn push(&mut self, node: Node) -> bool {
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                true
            }
            Some(Open::Sequence(_, items)) => {
                items.push(node);
                false
            }
            Some(Open::Mapping(_, entries, pending)) => {
                match pending.take() {
                    None => *pending = Some(node),
                    Some(key) => entries.push((key, node)),
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "version: 1\nname: lab\nvms:\n  - name: pc1\n    nics:\n      - { bridge: sw1, vlan: 10 }\n  - name: pc2\n";

    fn text(span: ByteSpan) -> &'static str {
        &DOC[span.offset..span.offset + span.len]
    }

    #[test]
    fn finds_values_and_keys() {
        let tree = SpanTree::build(DOC);
        let path = FieldPath::root().key("vms").index(0).key("nics").index(0);
        let bridge = tree.locate(&path.key("bridge"), Part::Value).unwrap();
        assert_eq!(text(bridge), "sw1");
        let key = tree.locate(&path.key("vlan"), Part::Key).unwrap();
        assert_eq!(text(key), "vlan");
        let name = tree
            .locate(
                &FieldPath::root().key("vms").index(1).key("name"),
                Part::Value,
            )
            .unwrap();
        assert_eq!(text(name), "pc2");
    }

    #[test]
    fn missing_paths_fall_back_to_the_enclosing_value() {
        let tree = SpanTree::build(DOC);
        let span = tree
            .locate(
                &FieldPath::root().key("vms").index(1).key("nics"),
                Part::Value,
            )
            .unwrap();
        assert_eq!(text(span), "name: pc2");
    }

    #[test]
    fn paths_round_trip_through_text() {
        let path = FieldPath::parse("vms[1].nics[0].bridge").unwrap();
        assert_eq!(path.to_string(), "vms[1].nics[0].bridge");
        assert_eq!(
            path,
            FieldPath::root()
                .key("vms")
                .index(1)
                .key("nics")
                .index(0)
                .key("bridge")
        );
        assert!(FieldPath::parse("vms[x]").is_none());
    }

    #[test]
    fn flow_depth_is_found_outside_quotes_and_comments() {
        let deep = format!(
            "a: {}{}",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(flow_too_deep(&deep), Some(3 + MAX_DEPTH));
        let quoted = format!(
            "a: \"{}\"\nb: '{}'\n# {}\n",
            "[".repeat(100),
            "{".repeat(100),
            "[".repeat(100)
        );
        assert_eq!(flow_too_deep(&quoted), None);
        let plain = format!("a: it's {}", "[]".repeat(100));
        assert_eq!(flow_too_deep(&plain), None);
        // However the quotes are read, thousands of brackets are refused.
        let hidden = format!("a: x 'y\nb: {}", "[".repeat(RAW_BRACKETS_MAX + 1));
        assert!(flow_too_deep(&hidden).is_some());
    }

    #[test]
    fn multibyte_text_maps_to_bytes() {
        let doc = "name: \"é\"\nversion: 1\n";
        let tree = SpanTree::build(doc);
        let span = tree
            .locate(&FieldPath::root().key("version"), Part::Value)
            .unwrap();
        assert_eq!(&doc[span.offset..span.offset + span.len], "1");
    }
}
