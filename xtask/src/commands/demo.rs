//! `cargo xtask demo`: the sample chain run three times to show the caches at work
//! ([`crate::dev::demo`]).

use std::process::ExitCode;

use anyhow::Result;

use crate::dev::demo;
use crate::flags::DemoArgs;
use crate::support::exec::Echo;

/// Run the demo with the flags' scratch dir, cache root and echo mode.
pub fn run(a: &DemoArgs) -> Result<ExitCode> {
    demo::run(&demo::Options {
        dir: a.dir.clone(),
        cache_dir: a.cache_dir.clone(),
        echo: if a.quiet { Echo::Quiet } else { Echo::Stream },
    })
}
