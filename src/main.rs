//! kubepki: the command-line front end. Policy (what to print, exit codes) lives here; the PKI
//! model and operations live in the `kubepki-pki` crate. Flags are parsed in `cli`, resolved
//! once (flag over `--config` over default) in `settings`, and carried out in `cmd`.

// Every message goes through `out::outln!`/`out::errln!`, which cannot panic (see out.rs).
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod out;

mod cli;
mod cmd;
mod detect;
mod restart;
mod settings;
mod signals;

use std::process::ExitCode;

use clap::Parser;

use crate::out::errln;
use crate::settings::{Command, Settings};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // `audit --fail-on` exits 1 for findings, so an audit that cannot be made says 2.
    let failure = match cli.command {
        cli::Command::Audit(_) => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    };
    match settings::Settings::resolve(cli).and_then(run) {
        Ok(code) => code,
        Err(e) => {
            errln!("error: {}", error_chain(&e));
            failure
        }
    }
}

fn run(s: Settings) -> anyhow::Result<ExitCode> {
    let now = s.now;
    match s.command {
        Command::Init(c) => cmd::init::run(&c, now),
        Command::CheckExpiration(c) => cmd::certs::check_expiration(&c, now),
        Command::Renew(c) => cmd::renew::run(&c, now),
        Command::Restore(c) => cmd::renew::restore(&c, now),
        Command::Recover(c) => cmd::certs::recover(&c),
        Command::GenerateCsr(c) => cmd::external::generate_csr(&c),
        Command::Import(c) => cmd::external::import(&c, now),
        Command::KubeconfigUser(c) => cmd::kubeconfig::user(&c, now),
        Command::KubeconfigKubelet(c) => cmd::kubeconfig::kubelet(&c, now),
        Command::Controller(c) => cmd::controller::run(c),
        Command::CsrList(c) => cmd::csr::list(&c),
        Command::CsrApprove(c) => cmd::csr::approve(&c),
        Command::Rotate(c) => cmd::rotate::run(&c, now),
        Command::RotateStatus(c) => cmd::rotate::status(&c),
        Command::RotateKubelet(c) => cmd::rotate::kubelet(&c, now),
        Command::RotateTokens(c) => cmd::rotate::tokens(&c),
        Command::Agent(c) => cmd::agent::run(c),
        Command::Audit(c) => cmd::audit::run(&c, now),
        Command::Completion(shell) => cmd::docs::completion(shell),
        Command::Man(dir) => cmd::docs::man(dir.as_deref()),
    }
}

/// The error and its causes, "a: b: c", leaving out a cause whose text the message already
/// carries (many library errors print their source in their own message too).
pub(crate) fn error_chain(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}
