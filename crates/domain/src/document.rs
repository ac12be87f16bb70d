//! Documents generated for a dispute (the defense sent to the processor, the case file kept for people), as
//! the event log names them: which one, which version, and the hash of what was rendered.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::DomainError;

/// Which document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    /// The cover letter, evidence index and timeline sent to the processor.
    Defense,
    /// One page of the dispute's facts, evidence, decisions and timeline, for people.
    CaseFile,
}

impl DocumentKind {
    pub const ALL: [DocumentKind; 2] = [DocumentKind::Defense, DocumentKind::CaseFile];

    pub fn as_str(&self) -> &'static str {
        match self {
            DocumentKind::Defense => "defense",
            DocumentKind::CaseFile => "case_file",
        }
    }
}

impl fmt::Display for DocumentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DocumentKind {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DocumentKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| DomainError::invalid(format!("unknown document kind `{s}`")))
    }
}

/// A generated document as the event log names it: never its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentRef {
    pub document_id: Uuid,
    pub kind: DocumentKind,
    /// 1 for the dispute's first document of this kind, then +1 each.
    pub version: i32,
    /// Lower-case hex SHA-256 of the PDF.
    pub sha256: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_back_from_their_names() {
        for kind in DocumentKind::ALL {
            assert_eq!(kind.as_str().parse::<DocumentKind>(), Ok(kind));
        }
        assert!("letter".parse::<DocumentKind>().is_err());
    }
}
