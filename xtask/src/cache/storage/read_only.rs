//! [`ReadOnly`]: a store that reads through to another and never writes. A run that may
//! not save (an untrusted event, `--no-save`, `read-only = true`) gets its remote wrapped
//! in it, so no code path of that run can upload, whatever the caller checks.
//!
//! Owns nothing but the refusal; every read is the inner store's.

use std::path::Path;

use anyhow::Result;

use super::{Put, Storage, Transfer};
use crate::cache::CacheKey;

/// `S`, read-only: `put` answers [`Put::ReadOnly`] without calling `S`.
#[derive(Debug, Clone)]
pub struct ReadOnly<S> {
    inner: S,
}

impl<S: Storage> ReadOnly<S> {
    /// `inner`, never written through this wrapper.
    pub fn new(inner: S) -> ReadOnly<S> {
        ReadOnly { inner }
    }
}

impl<S: Storage> Storage for ReadOnly<S> {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn is_read_only(&self) -> bool {
        true
    }

    fn probe(&self) -> Result<()> {
        self.inner.probe()
    }

    fn redact(&self, text: &str) -> String {
        self.inner.redact(text)
    }

    fn contains(&self, key: &CacheKey) -> Result<bool> {
        self.inner.contains(key)
    }

    fn get(&self, key: &CacheKey, into: &Path) -> Result<Option<Transfer>> {
        self.inner.get(key, into)
    }

    fn put(&self, _key: &CacheKey, _entry: &Path) -> Result<Put> {
        Ok(Put::ReadOnly)
    }
}
