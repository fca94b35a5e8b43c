//! The `client_payload` a chain dispatch carries, and GitHub's limits on a dispatch.
//!
//! The limits come from the REST docs of "Create a repository dispatch event"
//! (`POST /repos/{owner}/{repo}/dispatches`,
//! <https://docs.github.com/en/rest/repos/repos#create-a-repository-dispatch-event>):
//! `event_type` is 1 to 100 characters, and `client_payload` has at most 10 top-level
//! properties and is less than 64 KB of JSON. They are checked here, before anything is
//! sent, so a bad payload fails locally with a clear message instead of a 422.

use serde::{Deserialize, Serialize};

use super::DispatchError;

/// Longest `event_type` GitHub accepts, in characters.
pub const MAX_EVENT_TYPE_CHARS: usize = 100;
/// Most top-level properties `client_payload` may have.
pub const MAX_TOP_LEVEL_PROPERTIES: usize = 10;
/// `client_payload` must serialize to fewer than this many bytes (64 KB).
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// What a downstream repo is told when it is dispatched (9 or 10 top-level properties).
///
/// A triggered workflow reads it as `github.event.client_payload`; [`crate::github::events`]
/// reads it back to continue the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainPayload {
    /// The repo (manifest name) whose run sends this dispatch.
    pub source: String,
    /// Commit of the source repo the run built (`GITHUB_SHA` or `--sha`), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha: Option<String>,
    /// Git ref of the source run (`GITHUB_REF` or `--ref`), if known.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// Version of the source repo (its package named like the repo, else its first
    /// member), or for a release the version the target is to be released at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The trigger that started the chain (`push`, `release`, ...), kept across hops.
    pub event: String,
    /// Correlation id of the whole chain run, the same on every hop: GitHub returns no
    /// run id for a dispatch, so this is how a triggered run is found.
    pub chain_id: String,
    /// Hops from the repo that started the chain (1 for its direct dependents).
    pub hop: u32,
    /// The repos the chain went through to get here, source last: the loop guard never
    /// dispatches to one of them.
    pub path: Vec<String>,
    /// `<chain_id>:<hop>:<target>`, the same on every retry of one dispatch, so a
    /// receiver can drop a duplicate when a retried POST had in fact gone through.
    pub dispatch_id: String,
    /// The release set being propagated (`cargo xtask chain --release`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_set: Option<String>,
}

/// Check `event_type` and `payload` against GitHub's limits (see the module docs).
///
/// Errors: [`DispatchError::Invalid`] naming `repo` and the rule that failed.
pub fn validate(
    repo: &str,
    event_type: &str,
    payload: &serde_json::Value,
) -> Result<(), DispatchError> {
    let invalid = |reason: String| DispatchError::Invalid {
        repo: repo.to_owned(),
        reason,
    };
    let chars = event_type.chars().count();
    if chars == 0 || chars > MAX_EVENT_TYPE_CHARS {
        return Err(invalid(format!(
            "event_type must be 1 to {MAX_EVENT_TYPE_CHARS} characters, `{}` has {chars}: shorten it in [chain.event-types] or --event-type",
            event_type.chars().take(40).collect::<String>()
        )));
    }
    let Some(obj) = payload.as_object() else {
        return Err(invalid("client_payload must be a JSON object".into()));
    };
    if obj.len() > MAX_TOP_LEVEL_PROPERTIES {
        return Err(invalid(format!(
            "client_payload has {} top-level properties, GitHub allows at most {MAX_TOP_LEVEL_PROPERTIES}: nest the extra ones",
            obj.len()
        )));
    }
    let bytes = serde_json::to_vec(payload)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if bytes >= MAX_PAYLOAD_BYTES {
        return Err(invalid(format!(
            "client_payload is {bytes} bytes, GitHub requires less than {MAX_PAYLOAD_BYTES}: send less"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> ChainPayload {
        ChainPayload {
            source: "bllvm-consensus".into(),
            sha: Some("abc".into()),
            git_ref: Some("refs/heads/main".into()),
            version: Some("0.1.0".into()),
            event: "push".into(),
            chain_id: "c1".into(),
            hop: 1,
            path: vec!["bllvm-consensus".into()],
            dispatch_id: "c1:1:bllvm-protocol".into(),
            release_set: Some("0.1.0".into()),
        }
    }

    #[test]
    fn full_payload_fits_the_limits() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v.as_object().unwrap().len(), MAX_TOP_LEVEL_PROPERTIES);
        assert_eq!(v["ref"], "refs/heads/main");
        validate("r", "bllvm-upstream-push", &v).unwrap();
    }

    #[test]
    fn event_type_length() {
        let p = json!({});
        validate("r", &"x".repeat(100), &p).unwrap();
        for bad in [String::new(), "x".repeat(101)] {
            let e = validate("r", &bad, &p).unwrap_err();
            assert!(e.to_string().contains("1 to 100 characters"), "{e}");
            assert_eq!(e.exit_code().code(), 5);
        }
    }

    #[test]
    fn property_count_and_size() {
        let eleven: serde_json::Map<_, _> = (0..11).map(|i| (format!("k{i}"), json!(i))).collect();
        let e = validate("r", "t", &serde_json::Value::Object(eleven)).unwrap_err();
        assert!(e.to_string().contains("11 top-level properties"), "{e}");
        let big = json!({ "blob": "x".repeat(MAX_PAYLOAD_BYTES) });
        let e = validate("r", "t", &big).unwrap_err();
        assert!(e.to_string().contains("less than 65536"), "{e}");
        let e = validate("r", "t", &json!([1])).unwrap_err();
        assert!(e.to_string().contains("JSON object"), "{e}");
    }
}
