//! Runs the plan: clusters in parallel, steps in order; for each step check → preview →
//! decide → journal(started) → apply → verify → journal(applied). Front ends see only
//! `Event`s and answer through a `Decider`; the engine never touches a terminal.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::{Mutex, mpsc};

use super::istio_steps::IstioCtx;
use super::journal::{Action, EntryStatus, Journal, JournalEntry, StateLock, now_rfc3339};
use super::steps::{ClusterCtx, Facts, Step, step_for, steps_of};
use super::{Decision, Preview, StepError, StepId, StepState};
use crate::config::Config;
use crate::kube::{KubeError, KubeTarget};
use crate::plan::certstore::CertStore;
use crate::vault::{VaultError, VaultTarget};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("cluster {cluster}: {source}")]
    Kube { cluster: String, source: KubeError },
    #[error(transparent)]
    Journal(#[from] super::journal::JournalError),
    #[error("unknown cluster {0:?} (the config defines: {1})")]
    UnknownCluster(String, String),
}

/// What the engine reports while it runs.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    Checked {
        cluster: String,
        step: StepId,
        title: String,
        state: StepState,
    },
    Progress {
        cluster: String,
        step: StepId,
        message: String,
    },
    Started {
        cluster: String,
        step: StepId,
    },
    Done {
        cluster: String,
        step: StepId,
        outcome: Outcome,
    },
    Failed {
        cluster: String,
        step: StepId,
        error: String,
        hint: Option<String>,
        conflict: bool,
    },
    RolledBack {
        cluster: String,
        step: StepId,
        resource: String,
    },
    RollbackFailed {
        cluster: String,
        step: StepId,
        error: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Applied,
    Unchanged,
    Skipped,
    /// A read-only step (verification) succeeded: nothing changed.
    Verified,
}

/// The operator's side of a confirmation.
#[async_trait]
pub trait Decider: Send + Sync {
    async fn confirm(
        &self,
        cluster: &str,
        step: StepId,
        state: &StepState,
        preview: &Preview,
    ) -> Decision;
}

/// Says yes to creating what is absent, and no to overwriting anything (`--yes`).
pub struct AssumeYes;

#[async_trait]
impl Decider for AssumeYes {
    async fn confirm(&self, _: &str, _: StepId, state: &StepState, _: &Preview) -> Decision {
        match state {
            StepState::Absent => Decision::Apply,
            _ => Decision::Skip,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub clusters: Vec<String>,
    pub steps: Vec<StepId>,
    pub token_request_fallback: bool,
    /// Also run the Istio phase (injector, istiod, verify) after the Vault steps.
    pub istio: bool,
    /// Verify from this istiod log file instead of the pod's logs.
    pub istiod_log: Option<std::path::PathBuf>,
    /// Verify expects istiod's CA in this directory instead of `/vault/secrets`.
    pub root_ca_dir: Option<String>,
}

/// One row of a plan: state, preview and commands of a step.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    pub cluster: String,
    pub step: StepId,
    pub title: String,
    pub state: StepState,
    pub preview: Preview,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    pub applied: Vec<(String, StepId)>,
    pub unchanged: Vec<(String, StepId)>,
    pub skipped: Vec<(String, StepId)>,
    /// Read-only steps that ran and passed (istiod verified).
    pub verified: Vec<(String, StepId)>,
    pub failed: Vec<(String, StepId, String)>,
    pub conflicts: Vec<(String, StepId, String)>,
    pub rolled_back: Vec<(String, StepId)>,
    pub aborted: bool,
}

impl RunReport {
    pub fn changed_nothing(&self) -> bool {
        self.applied.is_empty() && self.rolled_back.is_empty()
    }
}

pub struct Engine {
    pub config: Config,
    pub vault: VaultTarget,
    pub ctxs: Vec<Arc<ClusterCtx>>,
}

pub type Events = mpsc::UnboundedSender<Event>;

/// Records a failed step in the report and tells the front end.
async fn fail(
    report: &Mutex<RunReport>,
    events: &Option<Events>,
    cluster: &str,
    step: StepId,
    error: String,
    hint: Option<String>,
) {
    report
        .lock()
        .await
        .failed
        .push((cluster.to_string(), step, error.clone()));
    send(
        events,
        Event::Failed {
            cluster: cluster.to_string(),
            step,
            error,
            hint,
            conflict: false,
        },
    );
}

fn send(events: &Option<Events>, e: Event) {
    if let Some(tx) = events {
        let _ = tx.send(e);
    }
}

impl Engine {
    /// Connects to Vault (must be reachable, unsealed, token valid) and every cluster.
    pub async fn connect(config: Config, opts: &RunOptions) -> Result<Self, EngineError> {
        let vault = VaultTarget::connect(config.vault.clone())?;
        if config.vault.token.is_empty() {
            return Err(EngineError::Vault(VaultError::NoToken));
        }
        vault.ensure_usable().await?;
        let known: Vec<String> = config.clusters.iter().map(|c| c.name.clone()).collect();
        for c in &opts.clusters {
            if !known.contains(c) {
                return Err(EngineError::UnknownCluster(c.clone(), known.join(", ")));
            }
        }
        let certs = Arc::new(CertStore::new(&config));
        let istio = Arc::new(IstioCtx {
            settings: config.istio.clone(),
            state_dir: config.state_dir.clone(),
            vault_address: config.vault.address.clone(),
            istiod_log: opts.istiod_log.clone(),
            root_ca_dir: opts.root_ca_dir.clone(),
        });
        let wanted: Vec<_> = config
            .clusters
            .iter()
            .filter(|c| opts.clusters.is_empty() || opts.clusters.contains(&c.name))
            .cloned()
            .collect();
        let connects = wanted.iter().map(|c| async move {
            let kube = crate::kube::connect(c.kubeconfig.as_deref(), c.context.as_deref())
                .await
                .map_err(|source| EngineError::Kube {
                    cluster: c.name.clone(),
                    source,
                })?;
            kube.server_version()
                .await
                .map_err(|source| EngineError::Kube {
                    cluster: c.name.clone(),
                    source,
                })?;
            Ok::<KubeTarget, EngineError>(kube)
        });
        let kubes = futures::future::join_all(connects).await;
        let mut ctxs = Vec::new();
        for (c, kube) in wanted.into_iter().zip(kubes) {
            ctxs.push(Arc::new(ClusterCtx {
                cluster: c,
                kube: kube?,
                vault: vault.clone(),
                kv_version: config.kv_version,
                certs: certs.clone(),
                facts: Mutex::new(Facts::default()),
                token_request_fallback: opts.token_request_fallback,
                istio: istio.clone(),
            }));
        }
        Ok(Self {
            config,
            vault,
            ctxs,
        })
    }

    /// Checks every step and previews it; changes nothing.
    pub async fn plan(&self, opts: &RunOptions) -> Result<Vec<PlannedStep>, StepError> {
        let runs = self.ctxs.iter().map(|ctx| async move {
            let mut rows = Vec::new();
            for step in steps_of(opts.istio, !ctx.istio.settings.gateways.is_empty()) {
                let state = match step.check(ctx).await {
                    Ok(s) => s,
                    Err(e) => StepState::Blocked {
                        reason: e.to_string(),
                    },
                };
                if opts.steps.is_empty() || opts.steps.contains(&step.id()) {
                    rows.push(PlannedStep {
                        cluster: ctx.name().to_string(),
                        step: step.id(),
                        title: step.title(ctx),
                        preview: step.preview(ctx, &state),
                        state,
                    });
                }
            }
            rows
        });
        Ok(futures::future::join_all(runs)
            .await
            .into_iter()
            .flatten()
            .collect())
    }

    /// Runs the steps under the state-directory lock, journaling each.
    pub async fn apply(
        &self,
        opts: &RunOptions,
        decider: Arc<dyn Decider>,
        events: Option<Events>,
    ) -> Result<RunReport, EngineError> {
        let _lock = StateLock::acquire(&self.config.state_dir)?;
        let journal = Arc::new(Mutex::new(Journal::load(&self.config.state_dir)?));
        let report = Arc::new(Mutex::new(RunReport::default()));
        let abort = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let runs = self.ctxs.iter().map(|ctx| {
            let journal = journal.clone();
            let report = report.clone();
            let decider = decider.clone();
            let events = events.clone();
            let abort = abort.clone();
            async move { run_cluster(ctx, opts, decider, events, journal, report, abort).await }
        });
        futures::future::join_all(runs).await;
        let mut report = Arc::try_unwrap(report)
            .map(Mutex::into_inner)
            .unwrap_or_default();
        report.aborted = abort.load(std::sync::atomic::Ordering::SeqCst);
        Ok(report)
    }

    /// Undoes, newest first, what the journal says the wizard created or modified.
    /// `only` limits it to one cluster's step (the TUI's `u`).
    pub async fn rollback(
        &self,
        only: Option<(&str, StepId)>,
        events: Option<Events>,
    ) -> Result<RunReport, EngineError> {
        self.rollback_where(
            |e| only.is_none_or(|(c, s)| e.cluster == c && e.step == s),
            events,
        )
        .await
    }

    /// Undoes, newest first, the journal entries `keep` selects.
    pub async fn rollback_where(
        &self,
        keep: impl Fn(&JournalEntry) -> bool,
        events: Option<Events>,
    ) -> Result<RunReport, EngineError> {
        let _lock = StateLock::acquire(&self.config.state_dir)?;
        let mut journal = Journal::load(&self.config.state_dir)?;
        let mut report = RunReport::default();
        let by_name: BTreeMap<&str, &Arc<ClusterCtx>> =
            self.ctxs.iter().map(|c| (c.name(), c)).collect();
        for entry in journal.undoable() {
            if !keep(&entry) {
                continue;
            }
            let Some(ctx) = by_name.get(entry.cluster.as_str()) else {
                continue;
            };
            let step = step_for(entry.step);
            match step.rollback(ctx, &entry).await {
                Ok(()) => {
                    if let Some(e) = journal.live_mut(&entry.cluster, entry.step) {
                        e.status = EntryStatus::RolledBack;
                        e.at = now_rfc3339();
                    }
                    journal.save()?;
                    report.rolled_back.push((entry.cluster.clone(), entry.step));
                    send(
                        &events,
                        Event::RolledBack {
                            cluster: entry.cluster.clone(),
                            step: entry.step,
                            resource: entry.resource.clone(),
                        },
                    );
                }
                Err(e) => {
                    report
                        .failed
                        .push((entry.cluster.clone(), entry.step, e.to_string()));
                    send(
                        &events,
                        Event::RollbackFailed {
                            cluster: entry.cluster.clone(),
                            step: entry.step,
                            error: e.to_string(),
                        },
                    );
                }
            }
        }
        Ok(report)
    }
}

async fn record(journal: &Mutex<Journal>, entry: JournalEntry) -> Result<(), StepError> {
    let mut j = journal.lock().await;
    j.record(entry);
    j.save()?;
    Ok(())
}

async fn run_cluster(
    ctx: &Arc<ClusterCtx>,
    opts: &RunOptions,
    decider: Arc<dyn Decider>,
    events: Option<Events>,
    journal: Arc<Mutex<Journal>>,
    report: Arc<Mutex<RunReport>>,
    abort: Arc<std::sync::atomic::AtomicBool>,
) {
    let cluster = ctx.name().to_string();
    for step in steps_of(opts.istio, !ctx.istio.settings.gateways.is_empty()) {
        if abort.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let id = step.id();
        let selected = opts.steps.is_empty() || opts.steps.contains(&id);
        // Steps outside the selection still check, so later steps get their facts.
        let state = match step.check(ctx).await {
            Ok(s) => s,
            Err(e) => {
                if selected {
                    fail(
                        &report,
                        &events,
                        &cluster,
                        id,
                        format!("check: {e}"),
                        e.hint(),
                    )
                    .await;
                    return;
                }
                continue;
            }
        };
        if !selected {
            continue;
        }
        send(
            &events,
            Event::Checked {
                cluster: cluster.clone(),
                step: id,
                title: step.title(ctx),
                state: state.clone(),
            },
        );
        let preview = step.preview(ctx, &state);
        match &state {
            StepState::Matches => {
                let mut j = journal.lock().await;
                if j.live(&cluster, id).is_none() && !id.is_read_only() {
                    j.record(entry(
                        ctx,
                        &*step,
                        Action::Found,
                        EntryStatus::Applied,
                        None,
                        serde_json::Value::Null,
                    ));
                    let _ = j.save();
                } else if let Some(e) = j.live_mut(&cluster, id)
                    && e.status == EntryStatus::Started
                {
                    // Resumed after a crash: our earlier call did land.
                    e.status = EntryStatus::Applied;
                    let _ = j.save();
                }
                drop(j);
                report.lock().await.unchanged.push((cluster.clone(), id));
                send(
                    &events,
                    Event::Done {
                        cluster: cluster.clone(),
                        step: id,
                        outcome: Outcome::Unchanged,
                    },
                );
                continue;
            }
            StepState::Blocked { reason } => {
                fail(&report, &events, &cluster, id, reason.clone(), None).await;
                return;
            }
            StepState::Conflict { what } if !step.can_overwrite(ctx) => {
                // Reported without calling apply: a refused conflict must not reach the server.
                let msg = StepError::Conflict(step.refusal(ctx, what)).to_string();
                report
                    .lock()
                    .await
                    .conflicts
                    .push((cluster.clone(), id, msg.clone()));
                send(
                    &events,
                    Event::Failed {
                        cluster: cluster.clone(),
                        step: id,
                        error: msg,
                        hint: StepError::Conflict(String::new()).hint(),
                        conflict: true,
                    },
                );
                return;
            }
            _ => {}
        }
        match decider.confirm(&cluster, id, &state, &preview).await {
            Decision::Apply => {}
            Decision::Skip => {
                if let StepState::Conflict { what } = &state {
                    report
                        .lock()
                        .await
                        .conflicts
                        .push((cluster.clone(), id, what.clone()));
                    send(
                        &events,
                        Event::Failed {
                            cluster: cluster.clone(),
                            step: id,
                            error: format!("conflict left for a decision: {what}"),
                            hint: None,
                            conflict: true,
                        },
                    );
                    return;
                }
                report.lock().await.skipped.push((cluster.clone(), id));
                send(
                    &events,
                    Event::Done {
                        cluster: cluster.clone(),
                        step: id,
                        outcome: Outcome::Skipped,
                    },
                );
                continue;
            }
            Decision::Abort => {
                abort.store(true, std::sync::atomic::Ordering::SeqCst);
                return;
            }
        }
        send(
            &events,
            Event::Started {
                cluster: cluster.clone(),
                step: id,
            },
        );
        let action = if matches!(state, StepState::Conflict { .. }) {
            Action::Modified
        } else {
            Action::Created
        };
        if !id.is_read_only()
            && let Err(e) = record(
                &journal,
                entry(
                    ctx,
                    &*step,
                    action,
                    EntryStatus::Started,
                    None,
                    serde_json::Value::Null,
                ),
            )
            .await
        {
            fail(&report, &events, &cluster, id, e.to_string(), None).await;
            return;
        }
        let progress_events = events.clone();
        let progress_cluster = cluster.clone();
        let progress = move |message: String| {
            send(
                &progress_events,
                Event::Progress {
                    cluster: progress_cluster.clone(),
                    step: id,
                    message,
                },
            );
        };
        let result = match step.apply(ctx, &state, &progress).await {
            Ok(applied) => step.verify(ctx).await.map(|_| applied),
            Err(e) => Err(e),
        };
        match result {
            Ok(applied) => {
                if !id.is_read_only() {
                    let action = if applied.modified {
                        Action::Modified
                    } else {
                        action
                    };
                    let _ = record(
                        &journal,
                        entry(
                            ctx,
                            &*step,
                            action,
                            EntryStatus::Applied,
                            applied.fingerprint,
                            applied.previous,
                        ),
                    )
                    .await;
                }
                let outcome = if id.is_read_only() {
                    report.lock().await.verified.push((cluster.clone(), id));
                    Outcome::Verified
                } else {
                    report.lock().await.applied.push((cluster.clone(), id));
                    Outcome::Applied
                };
                send(
                    &events,
                    Event::Done {
                        cluster: cluster.clone(),
                        step: id,
                        outcome,
                    },
                );
            }
            Err(e) => {
                let conflict = matches!(e, StepError::Conflict(_));
                let hint = e.hint();
                let mut r = report.lock().await;
                if conflict {
                    r.conflicts.push((cluster.clone(), id, e.to_string()));
                } else {
                    r.failed.push((cluster.clone(), id, e.to_string()));
                }
                drop(r);
                send(
                    &events,
                    Event::Failed {
                        cluster: cluster.clone(),
                        step: id,
                        error: e.to_string(),
                        hint,
                        conflict,
                    },
                );
                return;
            }
        }
    }
}

fn entry(
    ctx: &ClusterCtx,
    step: &dyn Step,
    action: Action,
    status: EntryStatus,
    fingerprint: Option<String>,
    previous: serde_json::Value,
) -> JournalEntry {
    JournalEntry {
        cluster: ctx.name().to_string(),
        step: step.id(),
        resource: step.resource(ctx),
        action,
        status,
        fingerprint,
        previous,
        at: now_rfc3339(),
    }
}
