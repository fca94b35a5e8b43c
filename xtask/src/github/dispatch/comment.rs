//! The pull request comment `cargo xtask ci --comment` keeps up to date: one comment per
//! pull request, found again by a hidden marker and edited in place, so a PR that is
//! pushed ten times has one summary, not ten.
//!
//! REST endpoints (GitHub docs, "Issue comments"): `GET
//! /repos/{owner}/{repo}/issues/{number}/comments` (paged, 100 a page), `PATCH
//! /repos/{owner}/{repo}/issues/comments/{id}`, `POST
//! /repos/{owner}/{repo}/issues/{number}/comments`. They go through octocrab's generic
//! `get`/`patch`/`post`, with only the two fields read here (`id`, `body`), so a change
//! in the rest of GitHub's comment shape cannot break the summary. The token needs
//! `pull-requests: write` (the workflow's own `GITHUB_TOKEN` with that permission).

use serde::Deserialize;

use super::client::Client;

/// Hidden first line that marks the comment as ours.
pub const MARKER: &str = "<!-- bllvm-chain-ci summary -->";

/// Pages of comments looked through for our marker (100 comments a page).
const MAX_PAGES: u32 = 10;

#[derive(Deserialize)]
struct CommentRef {
    id: u64,
    #[serde(default)]
    body: Option<String>,
}

/// What [`upsert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A new comment was posted.
    Created(u64),
    /// Our earlier comment was edited.
    Updated(u64),
}

/// The comment text: the marker, a title, and `summary` in a code block; in GitHub
/// Actions, paths under the run dir made relative to the run's artifact and a link to
/// the run and its artifacts (`github/workflows/gather.rs`), not runner paths.
pub fn body(summary: &str) -> String {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let summary = crate::github::workflows::gather::relative_to_run_dir(summary, &env);
    let link = crate::github::workflows::gather::run_link(&env)
        .map_or(String::new(), |l| format!("\n{l}\n"));
    format!(
        "{MARKER}\n### bllvm chain CI\n\n```\n{}\n```\n{link}",
        summary.trim_end().replace("```", "'''")
    )
}

/// Post the summary on pull request `number` of `github` (`owner/name`), or edit our
/// earlier comment there.
///
/// Errors: any non-2xx answer, with its status and what permission is needed.
pub async fn upsert(
    client: &Client,
    github: &str,
    number: u64,
    summary: &str,
) -> anyhow::Result<Action> {
    let octo = client.octocrab();
    let text = body(summary);
    let explain = |what: &str, e: octocrab::Error| -> anyhow::Error {
        let detail = match &e {
            octocrab::Error::GitHub { source, .. } => {
                format!("{}: {}", source.status_code.as_u16(), source.message)
            }
            other => other.to_string(),
        };
        anyhow::anyhow!(
            "{what} on {github}#{number}: {detail}: the token needs `pull-requests: write` on {github} (forks' pull requests get a read-only token)"
        )
    };
    let mut existing = None;
    for page in 1..=MAX_PAGES {
        let route = format!("/repos/{github}/issues/{number}/comments?per_page=100&page={page}");
        let comments: Vec<CommentRef> = octo
            .get(route, None::<&()>)
            .await
            .map_err(|e| explain("list the comments", e))?;
        if let Some(c) = comments
            .iter()
            .find(|c| c.body.as_deref().is_some_and(|b| b.starts_with(MARKER)))
        {
            existing = Some(c.id);
            break;
        }
        if comments.len() < 100 {
            break;
        }
    }
    let payload = serde_json::json!({ "body": text });
    match existing {
        Some(id) => {
            let _: serde_json::Value = octo
                .patch(
                    format!("/repos/{github}/issues/comments/{id}"),
                    Some(&payload),
                )
                .await
                .map_err(|e| explain("edit the summary comment", e))?;
            Ok(Action::Updated(id))
        }
        None => {
            let c: CommentRef = octo
                .post(
                    format!("/repos/{github}/issues/{number}/comments"),
                    Some(&payload),
                )
                .await
                .map_err(|e| explain("post the summary comment", e))?;
            Ok(Action::Created(c.id))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_starts_with_the_marker_and_cannot_close_the_block() {
        let b = body("ok  a\n``` x\n");
        assert!(b.starts_with(MARKER));
        assert_eq!(b.matches("```").count(), 2, "{b}");
    }
}
