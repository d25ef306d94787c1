use std::process::ExitCode;

use clap::Parser;
use istio_vault_wizard::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::main(cli)
}
