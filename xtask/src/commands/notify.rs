//! `cargo xtask notify`: send a test message to the webhooks the manifest's `[notify]`
//! table names, to check the secrets ([`crate::report::notify`] builds and sends it).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use crate::engine::manifest::Manifest;
use crate::flags::NotifyArgs;
use crate::report::notify;
use crate::support::env::process_env;
use crate::support::exit::Exit;

/// Exit 0 when every webhook answered, 1 when one failed (the warning says why, never with
/// the URL), 2 (an error) when none is configured and set.
pub fn run(a: &NotifyArgs) -> Result<ExitCode> {
    let manifest = Manifest::load(&a.manifest)?;
    let env = &process_env;
    if !notify::any_webhook(&manifest, env) {
        anyhow::bail!(
            "no webhook to send to: name the variables in the manifest's [notify] table (`slack-webhook-env`, `discord-webhook-env`) and set them"
        );
    }
    let notice = notify::test_notice(&manifest, env);
    let timeout = Duration::from_secs(a.timeout.unwrap_or(manifest.notify.timeout).max(1));
    let lines = notify::send_all(&manifest, &notice, env, timeout);
    let failed = lines.iter().any(|l| l.starts_with("warning"));
    for l in lines {
        eprintln!("{l}");
    }
    Ok(if failed {
        Exit::Failed.into()
    } else {
        Exit::Ok.into()
    })
}
