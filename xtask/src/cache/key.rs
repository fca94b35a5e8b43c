//! Cache keys: sha256 over explicitly listed inputs plus [`KEY_VERSION`].
//!
//! Every input is kept next to the key (`CacheKey::inputs`) so that `-v` and `cache key`
//! can print exactly what went into it, and a miss can be explained.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::support::fs::sha256_hex;

/// Version of the key derivation. Change it whenever the inputs of any key change (a new
/// input, a different hashing of one), so old entries are never mistaken for new ones.
pub const KEY_VERSION: &str = "1";

/// A cache stage: a kind of directory that is cached, with its own keys and retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// `$CARGO_HOME/registry` (index cache and downloaded `.crate` files), chain-wide.
    Registry,
    /// `$CARGO_HOME/git/db` (bare clones of git dependencies), chain-wide.
    Git,
    /// One repo's cargo target dir.
    Target,
    /// One repo's success record (`record.json` and its step logs), exchanged with the
    /// remote store only, so a success recorded on one runner makes the repo `cached` on
    /// every runner sharing the bucket. Locally the engine keeps its own result store
    /// (`engine/results.rs`): no `entries/result/` exists, and [`Stage::ALL`] leaves it out.
    Result,
}

impl Stage {
    /// The stages of the local cache root, in restore order ([`Stage::Result`] is remote
    /// only).
    pub const ALL: [Stage; 3] = [Stage::Registry, Stage::Git, Stage::Target];

    /// Directory name and display name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Registry => "registry",
            Stage::Git => "git",
            Stage::Target => "target",
            Stage::Result => "result",
        }
    }

    /// The stage named `s` (`registry`, `git`, `target`), `None` for any other text:
    /// stage names read back from disk become directory names only through this.
    pub fn parse(s: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// A cache key read back from disk (`entry.json`, a remote marker), checked by
/// [`check_key`] when it is parsed: a value of this type is always one safe directory
/// name. Compares equal to the `String` keys of [`CacheKey`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EntryKey(String);

impl EntryKey {
    /// `key`, checked.
    ///
    /// Errors: as [`check_key`].
    pub fn new(key: &str) -> anyhow::Result<EntryKey> {
        check_key(key)?;
        Ok(EntryKey(key.to_owned()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EntryKey {
    type Error = String;
    fn try_from(s: String) -> Result<EntryKey, String> {
        check_key(&s).map_err(|e| e.to_string())?;
        Ok(EntryKey(s))
    }
}

impl From<EntryKey> for String {
    fn from(k: EntryKey) -> String {
        k.0
    }
}

impl std::ops::Deref for EntryKey {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EntryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<String> for EntryKey {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl PartialEq<str> for EntryKey {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for EntryKey {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<EntryKey> for String {
    fn eq(&self, other: &EntryKey) -> bool {
        *self == other.0
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A cache key with the inputs it was derived from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheKey {
    /// Which stage the key is for.
    pub stage: Stage,
    /// The key: `<prefix>-<hash>`, safe as a file name.
    pub key: String,
    /// `(name, value)` of every input, in hashing order.
    pub inputs: Vec<(String, String)>,
}

impl CacheKey {
    /// Derive a key: `prefix` (readable, e.g. `blvm-node-base`), then 16 hex chars of the
    /// environment hash (everything but the lockfile), then 16 of the lockfile hash. Keys
    /// that share `prefix-envhash-` differ only in their lockfile: that prefix is the
    /// restore key for a partial hit.
    pub fn derive(
        stage: Stage,
        prefix: &str,
        env_inputs: Vec<(String, String)>,
        lock_hash: &str,
    ) -> CacheKey {
        let mut inputs = vec![
            ("key-version".to_owned(), KEY_VERSION.to_owned()),
            ("stage".to_owned(), stage.as_str().to_owned()),
        ];
        inputs.extend(env_inputs);
        let env_hash = hash_inputs(&inputs);
        inputs.push(("lockfile-sha256".to_owned(), lock_hash.to_owned()));
        CacheKey {
            stage,
            key: format!(
                "{prefix}-{}-{}",
                &env_hash[..16],
                &lock_hash[..16.min(lock_hash.len())]
            ),
            inputs,
        }
    }

    /// The restore-key prefix: the key without its lockfile hash.
    pub fn restore_prefix(&self) -> &str {
        let cut = self.key.rfind('-').map_or(self.key.len(), |i| i + 1);
        &self.key[..cut]
    }
}

/// Check that `key` names one directory under its stage: 1 to 200 letters, digits, `-`,
/// `_` and `.`, not starting with `.`. Keys become paths (`entries/<stage>/<key>`), so a
/// key with `/`, `..` or an absolute path would read or write outside the cache root
/// (found by the issue 8 hostile-input suite: `cache put --key ../../x` wrote there).
///
/// Errors: the key is not of that form, with what to do.
pub fn check_key(key: &str) -> anyhow::Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 200
        && !key.starts_with('.')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    anyhow::ensure!(
        ok,
        "cache key `{key}` may only use letters, digits, `-`, `_` and `.` (1 to 200, not starting with `.`): keys name a directory under the cache root"
    );
    Ok(())
}

/// sha256 of inputs, each as `name=value` with its length, so that no two different input
/// lists hash alike by concatenation.
pub fn hash_inputs(inputs: &[(String, String)]) -> String {
    let mut s = String::new();
    for (k, v) in inputs {
        s.push_str(&format!("{}:{k}={}:{v}\n", k.len(), v.len()));
    }
    sha256_hex(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_changes_the_key() {
        let base = || {
            vec![
                ("rustc".to_owned(), "1.95".to_owned()),
                ("features".to_owned(), "".to_owned()),
            ]
        };
        let lock = sha256_hex("lock");
        let k = CacheKey::derive(Stage::Target, "r-base", base(), &lock);
        assert_eq!(k, CacheKey::derive(Stage::Target, "r-base", base(), &lock));
        let mut other = base();
        other[0].1 = "1.96".into();
        assert_ne!(
            k.key,
            CacheKey::derive(Stage::Target, "r-base", other, &lock).key
        );
        let k2 = CacheKey::derive(Stage::Target, "r-base", base(), &sha256_hex("lock2"));
        assert_ne!(k.key, k2.key);
        assert_eq!(k.restore_prefix(), k2.restore_prefix());
        assert_ne!(
            k.key,
            CacheKey::derive(Stage::Git, "r-base", base(), &lock).key
        );
        assert!(k.key.starts_with("r-base-"));
        check_key(&k.key).unwrap();
    }

    #[test]
    fn keys_that_leave_their_directory_are_refused() {
        for bad in ["", "..", ".hidden", "../../x", "/abs", "a/b", "a\\b", "a b"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        check_key("bllvm-node-base-0123456789abcdef-fedcba9876543210").unwrap();
    }

    #[test]
    fn entry_keys_read_back_are_checked_and_compare_as_their_text() {
        let k: EntryKey = serde_json::from_str("\"r-base-0123-4567\"").unwrap();
        for bad in ["\"a.1.0/../../victim\"", "\"..\"", "\"\"", "\"/abs\""] {
            assert!(serde_json::from_str::<EntryKey>(bad).is_err(), "{bad}");
        }
        assert!(EntryKey::new("../x").is_err());
        assert_eq!(EntryKey::new("r-base-0123-4567").unwrap(), k);
        let text = String::from("r-base-0123-4567");
        assert_eq!(k, text);
        assert_eq!(text, k);
        assert_ne!(k, String::from("r-base-0123-4568"));
        assert!(k == *"r-base-0123-4567" && k == "r-base-0123-4567");
        assert!(k != *"other" && k != "other");
        assert_eq!(k.as_str(), "r-base-0123-4567");
        assert_eq!(&*k, "r-base-0123-4567");
        assert_eq!(k.to_string(), "r-base-0123-4567");
        assert_eq!(serde_json::to_string(&k).unwrap(), "\"r-base-0123-4567\"");
        assert_eq!(String::from(k), text);
        // Stages read back: only the three names.
        assert_eq!(Stage::parse("target"), Some(Stage::Target));
        assert_eq!(Stage::parse("git"), Some(Stage::Git));
        assert_eq!(Stage::parse("registry"), Some(Stage::Registry));
        assert_eq!(Stage::parse("../target"), None);
        assert_eq!(
            serde_json::from_str::<Stage>("\"git\"").unwrap(),
            Stage::Git
        );
        assert!(serde_json::from_str::<Stage>("\"../x\"").is_err());
    }
}
