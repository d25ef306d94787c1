//! `wire`: the Istio phase on the same engine and journal as `apply` — the Vault agent
//! injector, istiod's annotations and ROOT_CA_DIR (server-side apply or helm), and the
//! verification from istiod's logs. `--plan` previews, `--rollback` undoes only what these
//! steps created or changed.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use super::headless::{
    TakeOverIstiod, load_config, print_plan, prompt_decider, run_apply, run_options, run_rollback,
};
use super::{Output, PhaseArg, Report, WireArgs};
use crate::plan::engine::{AssumeYes, Decider};
use crate::plan::{Phase, StepId};

pub fn run(
    config: Option<PathBuf>,
    args: WireArgs,
    output: Output,
    quiet: bool,
) -> Result<u8, Report> {
    let mut config = load_config(config)?;
    if let Some(m) = args.mode {
        config.istio.mode = m;
    }
    if let Some(t) = args.timeout {
        if t == 0 {
            return Err(Report::usage("--timeout must be at least 1 second"));
        }
        config.istio.verify_timeout_secs = t;
    }
    if let Some(f) = &args.istiod_log
        && !f.is_file()
    {
        return Err(Report::usage(format!(
            "--istiod-log {}: no such file",
            f.display()
        )));
    }
    for s in &args.steps {
        if StepId::parse(s).is_some_and(|id| id.phase() != Phase::Istio) {
            return Err(Report::usage(format!(
                "step {s:?} belongs to `apply`; wire runs: {}",
                StepId::ISTIO.map(StepId::as_str).join(", ")
            )));
        }
    }
    if args.rollback {
        return run_rollback(config, Some(Phase::Istio), args.yes, output, quiet);
    }
    let mut opts = run_options(args.clusters, &args.steps, false, PhaseArg::Istio)?;
    opts.istiod_log = args.istiod_log;
    opts.root_ca_dir = args.root_ca_dir;
    if args.plan {
        return print_plan(config, opts, output);
    }
    let decider: Arc<dyn Decider> = match (args.yes, args.force) {
        (true, true) => Arc::new(TakeOverIstiod),
        (true, false) => Arc::new(AssumeYes),
        (false, _) if std::io::stdin().is_terminal() => prompt_decider(),
        (false, _) => {
            return Err(Report::usage(
                "wire asks before every change and no terminal is attached: pass --yes",
            ));
        }
    };
    run_apply(config, opts, decider, output, quiet)
}
