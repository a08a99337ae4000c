//! The `ovpn` command-line tool: links, peers, keys and notifications of
//! `ovpn` devices in the kernel or in `ovpnd`, a netlink decoder, and a demo.
//! Errors go to stderr as `ovpn: <command>: <reason>` with exit status 1.
#![forbid(unsafe_code)]

mod cli;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::args::Cli::parse();
    match cli::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A detached holder's stderr may be a closed pipe: never panic here.
            let _ = writeln!(std::io::stderr(), "ovpn: {}: {e}", cli::command_name(&args));
            ExitCode::FAILURE
        }
    }
}
