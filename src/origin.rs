//! [`Origin`]: where in an input something is wrong. A leaf, so that the error types of
//! config, manifest and the library's [`Error`](crate::Error) can all name it.

use std::fmt;

/// Where in an input something is wrong: `file:line:column`, as compilers print it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// A file path, or what stood in for one (`--secret`, `<config data>`).
    pub source: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl Origin {
    pub fn file(source: impl Into<String>) -> Origin {
        Origin { source: source.into(), line: None, column: None }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        Ok(())
    }
}
