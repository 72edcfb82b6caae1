//! kubepki: the command-line front end. Policy (what to print, exit codes) lives here; the PKI
//! model and operations live in the `kubepki-pki` crate.

// Every message goes through `out::outln!`/`out::errln!`, which cannot panic (see out.rs).
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod out;

mod cli;
mod cmd;
mod detect;
mod restart;
mod signals;

use std::process::ExitCode;

use clap::Parser;

use crate::out::errln;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // Full precision: kubeadm computes residual time from the current instant, so a
    // certificate issued a moment ago has 364d left, not 365d. Issued certificates carry
    // whole seconds (X.509 times have no fraction).
    let now = cli.now.unwrap_or_else(time::OffsetDateTime::now_utc);
    let result = match cli.command {
        cli::Command::Init(args) => cmd::init::run(&args, now),
        cli::Command::Certs(cli::CertsCommand::CheckExpiration(args)) => {
            cmd::certs::check_expiration(&args, now)
        }
        cli::Command::Certs(cli::CertsCommand::Renew(args)) => cmd::renew::run(&args, now),
        cli::Command::Certs(cli::CertsCommand::Restore(args)) => cmd::renew::restore(&args, now),
        cli::Command::Certs(cli::CertsCommand::Recover(args)) => cmd::certs::recover(&args),
        cli::Command::Certs(cli::CertsCommand::GenerateCsr(args)) => {
            cmd::external::generate_csr(&args)
        }
        cli::Command::Certs(cli::CertsCommand::Import(args)) => cmd::external::import(&args, now),
        cli::Command::Kubeconfig(cli::KubeconfigCommand::User(args)) => {
            cmd::kubeconfig::user(&args, now)
        }
        cli::Command::Kubeconfig(cli::KubeconfigCommand::Kubelet(args)) => {
            cmd::kubeconfig::kubelet(&args, now)
        }
        cli::Command::Controller(args) => cmd::controller::run(&args, now),
        cli::Command::Csr(cli::CsrCommand::List(args)) => cmd::csr::list(&args),
        cli::Command::Csr(cli::CsrCommand::Approve(args)) => cmd::csr::approve(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            errln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, "a: b: c", leaving out a cause whose text the message already
/// carries (many library errors print their source in their own message too).
fn error_chain(e: &anyhow::Error) -> String {
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
