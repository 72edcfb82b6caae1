//! `kubepki agent`: logging, then the agent with the `Config` the settings made.

use std::process::ExitCode;

use anyhow::Result;

use super::csr::{client, runtime};
use crate::settings::agent::Agent;

pub fn run(args: Agent) -> Result<ExitCode> {
    super::controller::init_logging(args.log_format);
    runtime()?.block_on(async {
        let client = match &args.client {
            Some(c) => Some(client(c).await?),
            None => None,
        };
        kubepki_agent::run::run(client, args.config).await
    })?;
    Ok(ExitCode::SUCCESS)
}
