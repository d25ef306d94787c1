//! `certs` subcommand.

use clap::Subcommand;

use crate::cli::{Output, Report};

#[derive(Debug, Subcommand)]
pub enum CertsAction {
    /// Generate a root CA and one intermediate per cluster.
    Generate,
}

pub fn run(_action: CertsAction, _output: Output) -> Result<u8, Report> {
    Err(Report::new(
        "certs: not available yet",
        crate::cli::exit::FAILED,
    ))
}
