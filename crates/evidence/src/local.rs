//! Evidence files in a local directory: `<dir>/<first two hex digits>/<sha256>`, written atomically.

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use crate::{FileStore, FileStoreError, MAX_UPLOAD_BYTES, StoredFile, checked_key, inspect};

/// Files under one directory. Paths are built only from checked sha256 keys, never from a name a person gave.
#[derive(Debug, Clone)]
pub struct LocalDirStore {
    dir: PathBuf,
}

impl LocalDirStore {
    /// Keeps files under `dir`, created on first write.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, FileStoreError> {
        let key = checked_key(key)?;
        Ok(self.dir.join(&key[..2]).join(key))
    }
}

#[async_trait::async_trait]
impl FileStore for LocalDirStore {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn put(&self, bytes: &[u8]) -> Result<StoredFile, FileStoreError> {
        let stored = inspect(bytes, MAX_UPLOAD_BYTES)?;
        let path = self.path_of(&stored.sha256)?;
        if tokio::fs::try_exists(&path).await? {
            return Ok(stored);
        }
        let shard = path.parent().unwrap_or(&self.dir).to_path_buf();
        tokio::fs::create_dir_all(&shard).await?;
        // Written beside its final place and renamed: a reader sees the whole file or none, and a crash leaves
        // only a `.part` file that no key ever names.
        let temp = shard.join(format!(".{}.{}.part", stored.sha256, uuid::Uuid::now_v7().simple()));
        let written = async {
            let mut file = tokio::fs::File::create(&temp).await?;
            file.write_all(bytes).await?;
            file.sync_all().await?;
            drop(file);
            tokio::fs::rename(&temp, &path).await
        }
        .await;
        if let Err(err) = written {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(err.into());
        }
        Ok(stored)
    }

    async fn get(&self, sha256: &str) -> Result<Option<Vec<u8>>, FileStoreError> {
        let path = self.path_of(sha256)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    async fn exists(&self, sha256: &str) -> Result<bool, FileStoreError> {
        Ok(tokio::fs::try_exists(self.path_of(sha256)?).await?)
    }
}
