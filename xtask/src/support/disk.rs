//! Free space on the filesystem holding a path, as preflight's disk check and the run
//! metrics read it. Owns nothing else; knows nothing of CI.

use std::path::{Path, PathBuf};

/// Free bytes available to unprivileged users on the filesystem holding `path` (the
/// nearest existing ancestor), with that filesystem's device id; `None` if unknown.
pub fn free_bytes(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut p = path.to_path_buf();
    while !p.exists() {
        if !p.pop() || p.as_os_str().is_empty() {
            p = PathBuf::from(".");
            break;
        }
    }
    let dev = std::fs::metadata(&p).ok()?.dev();
    Some((fs4::available_space(&p).ok()?, dev))
}
