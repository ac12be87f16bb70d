//! Identifiers: UUID v7, so that ids sort by creation time and index well.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::DomainError;

/// The id of a dispute inside Verdict (never the processor's id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DisputeId(Uuid);

impl DisputeId {
    /// A new time-ordered id; the caller supplies the randomness source through `Uuid::now_v7`.
    pub fn new_v7() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl FromStr for DisputeId {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim())
            .map(Self)
            .map_err(|_| DomainError::invalid(format!("{s:?} is not a dispute id (expected a UUID)")))
    }
}

impl fmt::Display for DisputeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_id_is_rejected() {
        assert!(matches!(
            "not-a-uuid".parse::<DisputeId>(),
            Err(DomainError::InvalidInput(_))
        ));
    }

    #[test]
    fn new_ids_are_version_seven_and_round_trip() {
        let id = DisputeId::new_v7();
        assert_eq!(id.as_uuid().get_version_num(), 7);
        assert_eq!(id.to_string().parse::<DisputeId>(), Ok(id));
    }
}
