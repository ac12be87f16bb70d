//! Evidence files: what an analyst uploads to defend a dispute, kept by content.
//!
//! Files are addressed by the sha256 of their bytes, so the same scan uploaded twice is stored once and a
//! stored file can never change under its name. The type is sniffed from the bytes (PDF, PNG, JPEG: the formats
//! every processor accepts) and anything else is refused before it is stored. The uploader's file name is
//! metadata for people, never part of a path.
//!
//! [`FileStore`] is the seam: [`LocalDirStore`] keeps files in a directory (the default, `[evidence] dir`);
//! object storage (S3 and the like) can come later behind the same trait without touching its callers.

mod limits;
mod local;

use verdict_domain::EvidenceContentType;

pub use limits::{FileLimits, MAX_FILES_PER_DISPUTE, MAX_UPLOAD_BYTES, limits_for};
pub use local::LocalDirStore;

/// A file as stored: its key, size and sniffed type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// Lower-case hex sha256 of the bytes; the key in the store.
    pub sha256: String,
    pub size_bytes: u64,
    pub content_type: EvidenceContentType,
}

#[derive(Debug, thiserror::Error)]
pub enum FileStoreError {
    /// The bytes are not a PDF, PNG or JPEG; nothing was stored.
    #[error("only PDF, PNG and JPEG files are accepted as evidence; this file {0}")]
    UnsupportedType(String),
    /// Larger than the limit that applies; nothing was stored.
    #[error("the file is {size} bytes; at most {limit} bytes are accepted")]
    TooLarge { size: u64, limit: u64 },
    /// Not a sha256 in lower-case hex; never looked up.
    #[error("{0:?} is not a file key (64 lower-case hex digits)")]
    BadKey(String),
    #[error("evidence storage failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Where evidence files live.
#[async_trait::async_trait]
pub trait FileStore: Send + Sync + 'static {
    /// For logs: `local`.
    fn name(&self) -> &'static str;

    /// Checks the bytes ([`inspect`] with [`MAX_UPLOAD_BYTES`]), stores them under their sha256 and returns the
    /// key; storing bytes already stored changes nothing.
    async fn put(&self, bytes: &[u8]) -> Result<StoredFile, FileStoreError>;

    /// The bytes stored under `sha256`; `None` when there are none.
    async fn get(&self, sha256: &str) -> Result<Option<Vec<u8>>, FileStoreError>;

    async fn exists(&self, sha256: &str) -> Result<bool, FileStoreError>;
}

/// The evidence type of `bytes` from their first bytes, or why they are refused.
pub fn sniff(bytes: &[u8]) -> Result<EvidenceContentType, FileStoreError> {
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
    if bytes.starts_with(b"%PDF-") {
        return Ok(EvidenceContentType::Pdf);
    }
    if bytes.starts_with(PNG) {
        return Ok(EvidenceContentType::Png);
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(EvidenceContentType::Jpeg);
    }
    let head: Vec<u8> = bytes
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take(16)
        .map(u8::to_ascii_lowercase)
        .collect();
    let looks_like = if bytes.is_empty() {
        "is empty"
    } else if bytes.starts_with(b"MZ") || bytes.starts_with(b"\x7fELF") {
        "looks like a program"
    } else if head.starts_with(b"<!doctype") || head.starts_with(b"<html") || head.starts_with(b"<") {
        "looks like HTML or XML"
    } else if bytes.starts_with(b"PK\x03\x04") {
        "looks like a ZIP archive or office document"
    } else if bytes.starts_with(b"GIF8") {
        "is a GIF image"
    } else {
        "is of another type"
    };
    Err(FileStoreError::UnsupportedType(looks_like.to_owned()))
}

/// Checks `bytes` against `max_bytes` and sniffs their type; hashes them. Pure: nothing is stored.
pub fn inspect(bytes: &[u8], max_bytes: u64) -> Result<StoredFile, FileStoreError> {
    let size = bytes.len() as u64;
    if size > max_bytes {
        return Err(FileStoreError::TooLarge { size, limit: max_bytes });
    }
    let content_type = sniff(bytes)?;
    Ok(StoredFile {
        sha256: sha256_hex(bytes),
        size_bytes: size,
        content_type,
    })
}

/// Lower-case hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// `key` when it is a sha256 in lower-case hex (so it is safe as a file name), else `BadKey`.
pub fn checked_key(key: &str) -> Result<&str, FileStoreError> {
    if key.len() == 64 && key.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(key)
    } else {
        Err(FileStoreError::BadKey(key.chars().take(80).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdf_png_and_jpeg_are_recognised_by_their_bytes() {
        assert_eq!(sniff(b"%PDF-1.4\n...").ok(), Some(EvidenceContentType::Pdf));
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").ok(),
            Some(EvidenceContentType::Png)
        );
        assert_eq!(
            sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10]).ok(),
            Some(EvidenceContentType::Jpeg)
        );
    }

    #[test]
    fn anything_else_is_refused_with_what_it_looks_like() {
        let message = |bytes: &[u8]| sniff(bytes).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message(b"MZ\x90\0\x03").contains("program"));
        assert!(message(b"  <!DOCTYPE html><html>").contains("HTML"));
        assert!(message(b"").contains("empty"));
        assert!(message(b"GIF89a").contains("GIF"));
        assert!(message(b"hello").contains("another type"));
        // A PDF signature later in the file does not make it a PDF.
        assert!(sniff(b"xx%PDF-1.4").is_err());
    }

    #[test]
    fn a_file_over_the_limit_is_refused_before_sniffing() {
        let bytes = [b"%PDF-1.4".as_slice(), &[0_u8; 100]].concat();
        assert!(matches!(
            inspect(&bytes, 50),
            Err(FileStoreError::TooLarge { size: 108, limit: 50 })
        ));
        let ok = inspect(&bytes, 108).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok.size_bytes, 108);
        assert_eq!(ok.sha256, sha256_hex(&bytes));
        assert_eq!(ok.sha256.len(), 64);
    }

    #[test]
    fn only_lower_case_hex_sha256_is_a_key() {
        let good = "a".repeat(64);
        assert!(checked_key(&good).is_ok());
        assert!(checked_key(&"A".repeat(64)).is_err());
        assert!(checked_key("../../etc/passwd").is_err());
        assert!(checked_key(&format!("{}/", "a".repeat(63))).is_err());
    }
}
