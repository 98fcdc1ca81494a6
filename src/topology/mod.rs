//! The topology file: its types, the values kvmlab derives from it, and validation
//! whose every error points at a line and column of the file.
//!
//! Pure: nothing here touches the host beyond reading the topology file and checking
//! that the files it names exist.

pub mod derive;
pub mod diagnostic;
pub mod model;
mod parse;
pub mod size;
pub mod spans;
pub mod validate;
mod warnings;

use std::path::{Path, PathBuf};

pub use diagnostic::{Finding, Problem, SourceFile};
pub use model::{BridgeSpec, DiskSpec, LinkSpec, NicSpec, RouteSpec, TapSpec, Topology, VmSpec};
pub use size::ByteSize;
pub use validate::Context;
pub use warnings::warnings;

/// A topology read from a file and found valid.
#[derive(Debug, Clone)]
pub struct LoadedTopology {
    /// The file's content.
    pub topology: Topology,
    /// The file it came from.
    pub path: PathBuf,
    /// The folder relative paths in the file start from.
    pub base_dir: PathBuf,
}

impl LoadedTopology {
    /// `path` from the file, resolved against the file's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.base_dir.join(path)
    }
}

/// Why a topology file could not be used.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LoadError {
    /// The file could not be read at all.
    #[error("cannot read topology file {path}: {source}")]
    #[diagnostic(
        code(kvmlab::topology::io),
        help("check the path and the file's permissions")
    )]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The file was read and has problems; all of them are listed.
    #[error("{} has {} problem{}", file, problems.len(), if problems.len() == 1 { "" } else { "s" })]
    Invalid {
        /// The file, as named on the command line.
        file: String,
        /// Every problem, in the order of the file.
        problems: Vec<Problem>,
    },
}

/// Reads and validates the topology file at `path`.
pub fn load(path: &Path) -> Result<LoadedTopology, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let name = path.display().to_string();
    let text = String::from_utf8(bytes).map_err(|e| LoadError::Invalid {
        problems: vec![not_utf8(&name, e.as_bytes(), e.utf8_error())],
        file: name.clone(),
    })?;
    let base_dir = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."));
    let base_dir = std::path::absolute(base_dir).unwrap_or_else(|_| base_dir.to_path_buf());
    let ctx = Context {
        base_dir: base_dir.clone(),
        host_memory: host_memory(),
    };
    let topology = parse_str(&name, &text, &ctx).map_err(|problems| LoadError::Invalid {
        file: name,
        problems,
    })?;
    Ok(LoadedTopology {
        topology,
        path: path.to_path_buf(),
        base_dir,
    })
}

/// Parses and validates topology `text` (from a file called `name`), returning every
/// problem found, in the order of the file. Only a YAML syntax error stops the pass.
pub fn parse_str(name: &str, text: &str, ctx: &Context) -> Result<Topology, Vec<Problem>> {
    parse::parse(&SourceFile::new(name, text), ctx)
}

/// The problem of a file that is not UTF-8, placed at its first bad byte (the text
/// before it is shown as it is, the rest with replacement characters).
fn not_utf8(name: &str, bytes: &[u8], error: std::str::Utf8Error) -> Problem {
    let offset = error.valid_up_to();
    let lossy = String::from_utf8_lossy(bytes);
    let file = SourceFile::new(name, &lossy);
    let finding = Finding::new(
        format!(
            "the file is not UTF-8: byte 0x{:02X} at byte offset {offset} is no UTF-8 character",
            bytes[offset]
        ),
        "not UTF-8",
    )
    .help("a topology file must be UTF-8 text: save it as UTF-8 (from Latin-1, say: `iconv -f latin1 -t utf-8 OLD > NEW`)");
    let span = spans::ByteSpan {
        offset,
        len: char::REPLACEMENT_CHARACTER.len_utf8(),
    };
    file.problem_at_span(span, spans::FieldPath::root(), finding)
}

/// The host's memory in bytes, from /proc/meminfo.
fn host_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
