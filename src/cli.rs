//! The command line: argument parsing, the one user-facing `Report`, and the printers.
//! Only this module (and the TUI) writes to the terminal.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::sandbox::{self, Component, SandboxError};

mod headless;
mod wire;

/// Exit codes, documented in README and `--help`.
pub mod exit {
    /// Done (or nothing to do).
    pub const OK: u8 = 0;
    /// Failed: a step, a check or a connection failed.
    pub const FAILED: u8 = 1;
    /// Usage error: bad flags, bad config file.
    pub const USAGE: u8 = 2;
    /// A conflict needs an operator's decision.
    pub const CONFLICT: u8 = 3;
}

#[derive(Debug, Parser)]
#[command(
    name = "istio-vault-wizard",
    version,
    about = "Put Istio's plugged-in CA into Vault/OpenBao for one or many clusters, and debug the permission-denied chain",
    after_help = "Without a subcommand the terminal wizard opens.\n\nExit codes: 0 done, 1 failed, 2 usage error, 3 a conflict needs a decision."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Wizard configuration file (TOML). Without one the wizard starts on the Connect screen.
    #[arg(long, short = 'c', global = true, env = "IVW_CONFIG")]
    pub config: Option<PathBuf>,

    /// Output format of headless commands.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,

    /// Print only results and errors, no progress lines.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable text.
    Text,
    /// One JSON document on stdout.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Local demo environment: one OpenBao and two Kubernetes control planes on 127.0.0.1.
    Sandbox(SandboxArgs),
    /// Show the state of every step, the changes and the equivalent commands; change nothing.
    Plan(PlanArgs),
    /// Run the steps (prompting per step unless --yes).
    Apply(ApplyArgs),
    /// Undo, in reverse order, only what the journal says this wizard created.
    Rollback(RollbackArgs),
    /// Show the journal: what was applied, created or found.
    Status(PlanArgs),
    /// Walk the permission-denied chain per cluster and name the first broken link.
    Doctor(DoctorArgs),
    /// Generate, check and inspect Istio CA certificates.
    Certs(CertsArgs),
    /// Write runbook.sh, policies and istiod Helm values equivalent to the plan.
    Export(ExportArgs),
    /// Wire istiod to Vault (the Istio phase): install or find the Vault agent injector,
    /// give istiod the injector annotations and ROOT_CA_DIR (server-side apply or helm),
    /// and verify from its logs that it runs on the CA in Vault. Journaled like apply.
    Wire(WireArgs),
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    #[command(subcommand)]
    pub action: SandboxAction,
}

#[derive(Debug, Args, Clone)]
pub struct SandboxDirArgs {
    /// Directory that holds the sandbox's data, credentials, logs and generated configs.
    #[arg(long, default_value = ".sandbox")]
    pub state_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum SandboxAction {
    /// Start OpenBao and clusters cluster1, cluster2 (etcd, kube-apiserver, kube-controller-manager).
    Up {
        #[command(flatten)]
        dir: SandboxDirArgs,
        /// Where the server binaries are (default: the cache that tests/servers/build.sh fills).
        #[arg(long, env = "IVW_SERVERS_DIR")]
        servers_dir: Option<PathBuf>,
        /// Stop the sandbox by itself when this process id exits (used by tests).
        #[arg(long)]
        watch_pid: Option<u32>,
    },
    /// Stop every process the sandbox started and remove its state directory.
    Down {
        #[command(flatten)]
        dir: SandboxDirArgs,
    },
    /// Show what runs, where, and whether it is healthy.
    Status {
        #[command(flatten)]
        dir: SandboxDirArgs,
    },
    /// Stop one component, keeping its data (fault injection).
    Stop {
        #[command(flatten)]
        dir: SandboxDirArgs,
        /// vault, cluster1 or cluster2.
        component: Component,
    },
    /// Start one stopped component again (Vault is unsealed again).
    Start {
        #[command(flatten)]
        dir: SandboxDirArgs,
        /// vault, cluster1 or cluster2.
        component: Component,
    },
    /// Internal: waits for a pid to exit, then takes the sandbox down.
    #[command(hide = true)]
    Watchdog {
        #[command(flatten)]
        dir: SandboxDirArgs,
        #[arg(long)]
        pid: u32,
    },
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Which half of the procedure: `vault` (auth, KV, policy, role), `istio` (injector,
    /// istiod, verify) or `all`.
    #[arg(long, value_enum, default_value_t = PhaseArg::Vault)]
    pub phase: PhaseArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PhaseArg {
    Vault,
    Istio,
    All,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Apply every step without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Only these clusters (repeatable).
    #[arg(long = "cluster")]
    pub clusters: Vec<String>,
    /// Only these step ids (repeatable), e.g. `namespace`, `kv-secret`.
    #[arg(long = "step")]
    pub steps: Vec<String>,
    /// When the token Secret gets no token, fall back to the TokenRequest API.
    #[arg(long)]
    pub token_request_fallback: bool,
    /// Which half of the procedure (`--step` of the Istio phase implies it).
    #[arg(long, value_enum, default_value_t = PhaseArg::Vault)]
    pub phase: PhaseArg,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Roll back without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Only this cluster.
    #[arg(long)]
    pub cluster: Option<String>,
}

#[derive(Debug, Args)]
pub struct WireArgs {
    /// Only these clusters (repeatable).
    #[arg(long = "cluster")]
    pub clusters: Vec<String>,
    /// Only these steps (repeatable): injector, istiod, verify.
    #[arg(long = "step")]
    pub steps: Vec<String>,
    /// Apply without asking (never takes over fields set by others without --force).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// With --yes: take over istiod fields another manager set to other values.
    #[arg(long)]
    pub force: bool,
    /// Undo what the wire steps created or changed (helm releases, patched fields).
    #[arg(long)]
    pub rollback: bool,
    /// Show what would change, change nothing.
    #[arg(long)]
    pub plan: bool,
    /// Override [istio] mode: patch, helm or auto.
    #[arg(long, value_enum)]
    pub mode: Option<crate::config::WireMode>,
    /// Verify from this istiod log file instead of the pod's logs (istiod outside a
    /// cluster, or a log saved with `kubectl logs`).
    #[arg(long)]
    pub istiod_log: Option<PathBuf>,
    /// The directory istiod reads its CA from, when not the injector's /vault/secrets
    /// (istiod run outside a cluster with its own ROOT_CA_DIR).
    #[arg(long)]
    pub root_ca_dir: Option<String>,
    /// Override [istio] verify_timeout_secs.
    #[arg(long)]
    pub timeout: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Directory to write runbook.sh, policies/ and values/ into.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    #[command(subcommand)]
    pub action: crate::certs::cli::CertsAction,
}

/// The one user-facing error report: what failed, the server's own words, and a hint.
#[derive(Debug, Serialize)]
pub struct Report {
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(skip)]
    pub exit_code: u8,
}

impl Report {
    pub fn new(error: impl Into<String>, exit_code: u8) -> Self {
        Self {
            error: error.into(),
            hint: None,
            exit_code,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn usage(error: impl Into<String>) -> Self {
        Self::new(error, exit::USAGE)
    }
}

impl From<SandboxError> for Report {
    fn from(err: SandboxError) -> Self {
        let hint = err.hint();
        let code = match err {
            SandboxError::BinariesMissing { .. } | SandboxError::NotRunning(_) => exit::USAGE,
            _ => exit::FAILED,
        };
        let mut report = Report::new(err.to_string(), code);
        report.hint = hint;
        report
    }
}

/// Entry point of the binary: runs the command and turns any error into the report.
pub fn main(cli: Cli) -> ExitCode {
    let output = cli.output;
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(report) => {
            print_report(&report, output);
            ExitCode::from(report.exit_code)
        }
    }
}

pub fn print_report(report: &Report, output: Output) {
    match output {
        Output::Json => {
            let doc =
                serde_json::json!({ "ok": false, "error": report.error, "hint": report.hint });
            println!("{doc}");
        }
        Output::Text => {
            eprintln!("error: {}", report.error);
            if let Some(hint) = &report.hint {
                eprintln!("hint: {hint}");
            }
        }
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Report> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Report::new(format!("cannot start the async runtime: {e}"), exit::FAILED))
}

pub fn run(cli: Cli) -> Result<u8, Report> {
    let output = cli.output;
    let quiet = cli.quiet;
    match cli.command {
        None => crate::tui::run(cli.config).map_err(|e| Report::new(e.to_string(), exit::FAILED)),
        Some(Command::Sandbox(args)) => run_sandbox(args.action, output, quiet),
        Some(Command::Certs(args)) => crate::certs::cli::run(args.action, output),
        Some(Command::Plan(args)) => headless::plan(cli.config, args.phase, output, quiet),
        Some(Command::Apply(args)) => headless::apply(cli.config, args, output, quiet),
        Some(Command::Rollback(args)) => headless::rollback(cli.config, args, output, quiet),
        Some(Command::Status(_)) => headless::status(cli.config, output),
        Some(Command::Export(args)) => headless::export(cli.config, args, output),
        Some(Command::Wire(args)) => wire::run(cli.config, args, output, quiet),
        Some(Command::Doctor(args)) => headless::doctor(cli.config, args, output, quiet),
    }
}

fn run_sandbox(action: SandboxAction, output: Output, quiet: bool) -> Result<u8, Report> {
    let rt = runtime()?;
    let progress = move |line: &str| {
        if !quiet {
            eprintln!("{line}");
        }
    };
    match action {
        SandboxAction::Up {
            dir,
            servers_dir,
            watch_pid,
        } => {
            let bins = sandbox::ServerBinaries::locate(servers_dir.as_deref())?;
            let outcome = rt.block_on(sandbox::up(&dir.state_dir, &bins, &progress))?;
            if let Some(pid) = watch_pid {
                sandbox::spawn_watchdog(&dir.state_dir, pid)?;
            }
            match output {
                Output::Json => println!("{}", serde_json::to_string(&outcome).unwrap_or_default()),
                Output::Text => println!("{}", outcome.describe()),
            }
            Ok(exit::OK)
        }
        SandboxAction::Down { dir } => {
            let stopped = sandbox::down(&dir.state_dir)?;
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::json!({ "ok": true, "stopped_pids": stopped })
                ),
                Output::Text => println!(
                    "sandbox down: stopped {} process(es), removed {}",
                    stopped.len(),
                    dir.state_dir.display()
                ),
            }
            Ok(exit::OK)
        }
        SandboxAction::Status { dir } => {
            let status = rt.block_on(sandbox::status(&dir.state_dir))?;
            match output {
                Output::Json => println!("{}", serde_json::to_string(&status).unwrap_or_default()),
                Output::Text => println!("{}", status.describe()),
            }
            Ok(if status.all_healthy() {
                exit::OK
            } else {
                exit::FAILED
            })
        }
        SandboxAction::Stop { dir, component } => {
            sandbox::stop_component(&dir.state_dir, &component)?;
            progress(&format!("stopped {component}"));
            Ok(exit::OK)
        }
        SandboxAction::Start { dir, component } => {
            rt.block_on(sandbox::start_component(
                &dir.state_dir,
                &component,
                &progress,
            ))?;
            progress(&format!("started {component}"));
            Ok(exit::OK)
        }
        SandboxAction::Watchdog { dir, pid } => {
            sandbox::watchdog(&dir.state_dir, pid);
            Ok(exit::OK)
        }
    }
}
