//! The local file store against a real temporary directory.

use verdict_domain::EvidenceContentType;
use verdict_evidence::{FileStore, FileStoreError, LocalDirStore, MAX_UPLOAD_BYTES, sha256_hex};

const PNG: &[u8] = include_bytes!("fixtures/pixel.png");
const PDF: &[u8] = include_bytes!("fixtures/note.pdf");

fn store() -> (tempfile::TempDir, LocalDirStore) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = LocalDirStore::new(dir.path().join("evidence"));
    (dir, store)
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test]
async fn a_put_file_is_stored_under_its_sha256_and_read_back() {
    let (_dir, store) = store();
    let stored = store.put(PNG).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored.sha256, sha256_hex(PNG));
    assert_eq!(stored.size_bytes, PNG.len() as u64);
    assert_eq!(stored.content_type, EvidenceContentType::Png);
    assert!(store.exists(&stored.sha256).await.unwrap_or(false));
    assert_eq!(store.get(&stored.sha256).await.ok().flatten().as_deref(), Some(PNG));
    let path = store.dir().join(&stored.sha256[..2]).join(&stored.sha256);
    assert!(path.is_file());
    // No temporary file is left behind.
    assert_eq!(files_under(store.dir()), vec![path]);
}

#[tokio::test]
async fn the_same_bytes_are_stored_once() {
    let (_dir, store) = store();
    let first = store.put(PDF).await.unwrap_or_else(|e| panic!("{e}"));
    let second = store.put(PDF).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first, second);
    assert_eq!(first.content_type, EvidenceContentType::Pdf);
    assert_eq!(files_under(store.dir()).len(), 1);
}

#[tokio::test]
async fn refused_bytes_store_nothing() {
    let (_dir, store) = store();
    for bytes in [b"MZ\x90\0\x03\0\0\0".as_slice(), b"<html><body>hi</body></html>", b""] {
        assert!(matches!(
            store.put(bytes).await,
            Err(FileStoreError::UnsupportedType(_))
        ));
    }
    let huge = [b"%PDF-1.4\n".as_slice(), &vec![b' '; MAX_UPLOAD_BYTES as usize]].concat();
    assert!(matches!(store.put(&huge).await, Err(FileStoreError::TooLarge { .. })));
    assert!(files_under(store.dir()).is_empty());
}

#[tokio::test]
async fn unknown_and_malformed_keys_are_never_paths() {
    let (_dir, store) = store();
    assert_eq!(store.get(&"0".repeat(64)).await.ok(), Some(None));
    assert!(!store.exists(&"0".repeat(64)).await.unwrap_or(true));
    for bad in ["../etc/passwd", "", "ABCDEF", &format!("../{}", "a".repeat(61))] {
        assert!(matches!(store.get(bad).await, Err(FileStoreError::BadKey(_))), "{bad}");
        assert!(
            matches!(store.exists(bad).await, Err(FileStoreError::BadKey(_))),
            "{bad}"
        );
    }
}
