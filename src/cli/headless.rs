//! Headless commands on the engine: plan, apply, rollback, status, export, doctor.
//! Text goes to the terminal (progress on stderr, results on stdout); `--output json`
//! prints one JSON document on stdout.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Mutex;

use super::{
    ApplyArgs, DoctorArgs, ExportArgs, Output, PhaseArg, Report, RollbackArgs, exit, runtime,
};
use crate::config::{self, Config};
use crate::plan::engine::{
    AssumeYes, Decider, Engine, EngineError, Event, Outcome, RunOptions, RunReport,
};
use crate::plan::journal::Journal;
use crate::plan::{Decision, Preview, StepId, StepState};

/// The config named by --config / IVW_CONFIG; any problem with it is a usage error.
pub(super) fn load_config(path: Option<PathBuf>) -> Result<Config, Report> {
    let path =
        path.ok_or_else(|| Report::usage("--config FILE is required (or set IVW_CONFIG)"))?;
    config::load(&path).map_err(|e| Report::usage(e.to_string()))
}

impl From<EngineError> for Report {
    fn from(e: EngineError) -> Self {
        let hint = match &e {
            EngineError::Vault(crate::vault::VaultError::Sealed(_)) => {
                Some("unseal Vault and run again".to_string())
            }
            EngineError::Vault(crate::vault::VaultError::Unreachable { .. }) => Some(
                "check the address (VAULT_ADDR / [vault] address) and that Vault is running".into(),
            ),
            EngineError::Vault(crate::vault::VaultError::Api { status: 403, .. }) => {
                Some("the Vault token is invalid or expired: check VAULT_TOKEN / token_file".into())
            }
            EngineError::Vault(crate::vault::VaultError::NoToken) => None,
            EngineError::Kube {
                source: crate::kube::KubeError::UnknownContext { .. },
                ..
            } => Some("set [[cluster]] context to one of the listed contexts".into()),
            EngineError::Journal(crate::plan::journal::JournalError::Locked(_)) => {
                Some("another apply or rollback is running on this state directory".into())
            }
            _ => None,
        };
        let mut r = Report::new(e.to_string(), exit::FAILED);
        r.hint = hint;
        r
    }
}

fn progress_printer(
    quiet: bool,
    output: Output,
) -> (
    crate::plan::engine::Events,
    tokio::task::JoinHandle<Vec<Event>>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let handle = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(ev) = rx.recv().await {
            if !quiet
                && output == Output::Text
                && let Some(line) = describe_event(&ev)
            {
                eprintln!("{line}");
            }
            all.push(ev);
        }
        all
    });
    (tx, handle)
}

pub fn describe_event(ev: &Event) -> Option<String> {
    Some(match ev {
        Event::Checked { .. } => return None,
        Event::Started { cluster, step } => format!("[{cluster}] {step}: applying"),
        Event::Progress {
            cluster,
            step,
            message,
        } => format!("[{cluster}] {step}: {message}"),
        Event::Done {
            cluster,
            step,
            outcome,
        } => match outcome {
            Outcome::Applied => format!("[{cluster}] {step}: done"),
            Outcome::Unchanged => format!("[{cluster}] {step}: present, unchanged"),
            Outcome::Skipped => format!("[{cluster}] {step}: skipped"),
            Outcome::Verified => format!("[{cluster}] {step}: verified"),
        },
        Event::Failed {
            cluster,
            step,
            error,
            hint,
            conflict,
        } => {
            let kind = if *conflict { "CONFLICT" } else { "FAILED" };
            match hint {
                Some(h) => format!("[{cluster}] {step}: {kind}: {error}\n    hint: {h}"),
                None => format!("[{cluster}] {step}: {kind}: {error}"),
            }
        }
        Event::RolledBack {
            cluster,
            step,
            resource,
        } => format!("[{cluster}] {step}: rolled back ({resource})"),
        Event::RollbackFailed {
            cluster,
            step,
            error,
        } => format!("[{cluster}] {step}: rollback FAILED: {error}"),
    })
}

/// Asks on the terminal, one question at a time; the default answer is the safe one (no).
struct PromptDecider {
    gate: Mutex<()>,
}

#[async_trait]
impl Decider for PromptDecider {
    async fn confirm(
        &self,
        cluster: &str,
        step: StepId,
        state: &StepState,
        preview: &Preview,
    ) -> Decision {
        let _g = self.gate.lock().await;
        let mut text = format!("\n[{cluster}] {step}: {}\n", preview.summary);
        for c in &preview.changes {
            text.push_str(&format!("  {c}\n"));
        }
        if let Some(d) = &preview.diff {
            text.push_str(&format!("{d}\n"));
        }
        text.push_str("  equivalent:\n");
        for c in &preview.commands {
            for line in c.lines() {
                text.push_str(&format!("    {line}\n"));
            }
        }
        let question = if matches!(state, StepState::Conflict { .. }) {
            "Overwrite the existing object? [y/N/q] "
        } else {
            "Apply? [y/N/q] "
        };
        text.push_str(question);
        let answer = tokio::task::spawn_blocking(move || {
            eprint!("{text}");
            let _ = std::io::stderr().flush();
            let mut line = String::new();
            match std::io::stdin().lock().read_line(&mut line) {
                Ok(0) | Err(_) => "q".to_string(),
                Ok(_) => line.trim().to_lowercase(),
            }
        })
        .await
        .unwrap_or_else(|_| "q".into());
        match answer.as_str() {
            "y" | "yes" => Decision::Apply,
            "q" | "quit" => Decision::Abort,
            _ => Decision::Skip,
        }
    }
}

pub(super) fn run_options(
    clusters: Vec<String>,
    steps: &[String],
    fallback: bool,
    phase: PhaseArg,
) -> Result<RunOptions, Report> {
    let mut ids = Vec::new();
    for s in steps {
        ids.push(StepId::parse(s).ok_or_else(|| {
            Report::usage(format!(
                "unknown step {s:?}; steps are: {}",
                StepId::ALL
                    .iter()
                    .map(|i| i.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?);
    }
    if ids.is_empty() && phase == PhaseArg::Istio {
        ids = StepId::ISTIO.to_vec();
    }
    if ids.is_empty() && phase == PhaseArg::Vault {
        ids = StepId::ALL
            .into_iter()
            .filter(|s| s.phase() == crate::plan::Phase::Vault)
            .collect();
    }
    Ok(RunOptions {
        clusters,
        istio: phase != PhaseArg::Vault
            || ids.iter().any(|s| s.phase() == crate::plan::Phase::Istio),
        steps: ids,
        token_request_fallback: fallback,
        istiod_log: None,
        root_ca_dir: None,
    })
}

pub fn plan(
    config: Option<PathBuf>,
    phase: PhaseArg,
    output: Output,
    _quiet: bool,
) -> Result<u8, Report> {
    let config = load_config(config)?;
    let opts = run_options(Vec::new(), &[], false, phase)?;
    print_plan(config, opts, output)
}

pub(super) fn print_plan(config: Config, opts: RunOptions, output: Output) -> Result<u8, Report> {
    let rt = runtime()?;
    rt.block_on(async {
        let engine = Engine::connect(config, &opts).await?;
        let rows = engine
            .plan(&opts)
            .await
            .map_err(|e| Report::new(e.to_string(), exit::FAILED))?;
        match output {
            Output::Json => println!("{}", serde_json::json!({ "ok": true, "steps": rows })),
            Output::Text => {
                let mut current = String::new();
                for r in &rows {
                    if r.cluster != current {
                        println!("cluster {}", r.cluster);
                        current = r.cluster.clone();
                    }
                    println!(
                        "  [{:<8}] {:<17} {}",
                        r.state.label(),
                        r.step.as_str(),
                        r.preview.summary
                    );
                    for c in &r.preview.changes {
                        println!("               {c}");
                    }
                    if !matches!(r.state, StepState::Matches) {
                        for c in &r.preview.commands {
                            for line in c.lines() {
                                println!("               $ {line}");
                            }
                        }
                    }
                }
                let todo = rows
                    .iter()
                    .filter(|r| !matches!(r.state, StepState::Matches))
                    .count();
                if todo == 0 {
                    println!("everything is present and matching: nothing to do");
                } else {
                    println!("{todo} step(s) to apply or decide; nothing was changed");
                }
            }
        }
        let conflicts = rows
            .iter()
            .any(|r| matches!(r.state, StepState::Conflict { .. }));
        Ok(if conflicts { exit::CONFLICT } else { exit::OK })
    })
}

fn report_exit(report: &RunReport) -> u8 {
    if !report.failed.is_empty() {
        exit::FAILED
    } else if !report.conflicts.is_empty() {
        exit::CONFLICT
    } else if report.aborted {
        exit::FAILED
    } else {
        exit::OK
    }
}

pub fn apply(
    config: Option<PathBuf>,
    args: ApplyArgs,
    output: Output,
    quiet: bool,
) -> Result<u8, Report> {
    let config = load_config(config)?;
    let opts = run_options(
        args.clusters,
        &args.steps,
        args.token_request_fallback,
        args.phase,
    )?;
    if !args.yes && !std::io::stdin().is_terminal() {
        return Err(Report::usage(
            "apply asks before every step and no terminal is attached: pass --yes to apply without asking",
        ));
    }
    let decider: Arc<dyn Decider> = if args.yes {
        Arc::new(AssumeYes)
    } else {
        Arc::new(PromptDecider {
            gate: Mutex::new(()),
        })
    };
    run_apply(config, opts, decider, output, quiet)
}

/// Says yes to what is absent, and to taking over istiod's fields (`wire --yes --force`).
pub(super) struct TakeOverIstiod;

#[async_trait]
impl Decider for TakeOverIstiod {
    async fn confirm(&self, _: &str, step: StepId, state: &StepState, _: &Preview) -> Decision {
        match state {
            StepState::Absent => Decision::Apply,
            StepState::Conflict { .. } if step == StepId::Istiod => Decision::Apply,
            _ => Decision::Skip,
        }
    }
}

pub(super) fn prompt_decider() -> Arc<dyn Decider> {
    Arc::new(PromptDecider {
        gate: Mutex::new(()),
    })
}

/// Runs the engine with `opts` and prints the report (text or one JSON document).
pub(super) fn run_apply(
    config: Config,
    opts: RunOptions,
    decider: Arc<dyn Decider>,
    output: Output,
    quiet: bool,
) -> Result<u8, Report> {
    let rt = runtime()?;
    rt.block_on(async {
        let engine = Engine::connect(config, &opts).await?;
        let (tx, printer) = progress_printer(quiet, output);
        let report = engine.apply(&opts, decider, Some(tx)).await?;
        let events = printer.await.unwrap_or_default();
        let code = report_exit(&report);
        match output {
            Output::Json => println!(
                "{}",
                serde_json::json!({ "ok": code == exit::OK, "changed": !report.changed_nothing(), "report": report, "events": events })
            ),
            Output::Text => {
                if code == exit::OK && report.changed_nothing() && report.skipped.is_empty() && report.verified.is_empty() {
                    println!("nothing to do: every step is present and matching, nothing was changed");
                } else {
                    println!(
                        "applied {}, unchanged {}, verified {}, skipped {}, conflicts {}, failed {}",
                        report.applied.len(),
                        report.unchanged.len(),
                        report.verified.len(),
                        report.skipped.len(),
                        report.conflicts.len(),
                        report.failed.len()
                    );
                    for (c, s, e) in &report.conflicts {
                        println!("conflict [{c}] {s}: {e}");
                    }
                    for (c, s, e) in &report.failed {
                        println!("failed [{c}] {s}: {e}");
                    }
                    if code == exit::CONFLICT {
                        println!("a conflict needs your decision: run again without --yes to answer it, or change the names in the config");
                    }
                }
            }
        }
        Ok(code)
    })
}

pub fn rollback(
    config: Option<PathBuf>,
    args: RollbackArgs,
    output: Output,
    quiet: bool,
) -> Result<u8, Report> {
    let config = load_config(config)?;
    run_rollback(config, None, args.yes, output, quiet)
}

/// Undoes the journal's entries (of one phase, or all), newest first, after a confirmation.
pub(super) fn run_rollback(
    config: Config,
    phase: Option<crate::plan::Phase>,
    yes: bool,
    output: Output,
    quiet: bool,
) -> Result<u8, Report> {
    let journal =
        Journal::load(&config.state_dir).map_err(|e| Report::new(e.to_string(), exit::FAILED))?;
    let todo: Vec<_> = journal
        .undoable()
        .into_iter()
        .filter(|e| phase.is_none_or(|p| e.step.phase() == p))
        .collect();
    if todo.is_empty() {
        match output {
            Output::Json => println!("{}", serde_json::json!({ "ok": true, "rolled_back": [] })),
            Output::Text => {
                println!("nothing to roll back: the journal records nothing the wizard created")
            }
        }
        return Ok(exit::OK);
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(Report::usage(
                "rollback asks for confirmation and no terminal is attached: pass --yes",
            ));
        }
        eprintln!("rollback will undo, in this order:");
        for e in &todo {
            eprintln!("  [{}] {} {:?} {}", e.cluster, e.step, e.action, e.resource);
        }
        eprint!("Proceed? [y/N] ");
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        if !matches!(line.trim(), "y" | "yes") {
            eprintln!("rollback cancelled, nothing changed");
            return Ok(exit::OK);
        }
    }
    let rt = runtime()?;
    rt.block_on(async {
        let engine = Engine::connect(config, &RunOptions::default()).await?;
        let (tx, printer) = progress_printer(quiet, output);
        let report = engine
            .rollback_where(|e| phase.is_none_or(|p| e.step.phase() == p), Some(tx))
            .await?;
        let events = printer.await.unwrap_or_default();
        let code = report_exit(&report);
        match output {
            Output::Json => println!(
                "{}",
                serde_json::json!({ "ok": code == exit::OK, "report": report, "events": events })
            ),
            Output::Text => println!(
                "rolled back {}, failed {}",
                report.rolled_back.len(),
                report.failed.len()
            ),
        }
        Ok(code)
    })
}

pub fn status(config: Option<PathBuf>, output: Output) -> Result<u8, Report> {
    let config = load_config(config)?;
    let journal =
        Journal::load(&config.state_dir).map_err(|e| Report::new(e.to_string(), exit::FAILED))?;
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({ "ok": true, "journal": journal.path(), "entries": journal.entries })
        ),
        Output::Text => {
            println!("journal {}", journal.path().display());
            if journal.entries.is_empty() {
                println!("  (empty: nothing applied yet)");
            }
            for e in &journal.entries {
                println!(
                    "  {} [{}] {:<17} {:<9} {:<11} {}",
                    e.at,
                    e.cluster,
                    e.step.as_str(),
                    format!("{:?}", e.action).to_lowercase(),
                    format!("{:?}", e.status).to_lowercase(),
                    e.resource
                );
            }
        }
    }
    Ok(exit::OK)
}

pub fn export(config: Option<PathBuf>, args: ExportArgs, output: Output) -> Result<u8, Report> {
    let config = load_config(config)?;
    let files = crate::plan::export::export(&config, &args.out).map_err(|e| {
        Report::new(
            format!("export to {}: {e}", args.out.display()),
            exit::FAILED,
        )
    })?;
    match output {
        Output::Json => println!("{}", serde_json::json!({ "ok": true, "files": files })),
        Output::Text => {
            println!("wrote {}", files.runbook.display());
            println!("wrote {}", files.wire.display());
            for p in files.policies.iter().chain(&files.values) {
                println!("wrote {}", p.display());
            }
        }
    }
    Ok(exit::OK)
}

pub fn doctor(
    config: Option<PathBuf>,
    args: DoctorArgs,
    output: Output,
    quiet: bool,
) -> Result<u8, Report> {
    let config = load_config(config)?;
    crate::doctor::cli::run(config, args.cluster, output, quiet)
}
