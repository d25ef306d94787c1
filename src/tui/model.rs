//! The state of the wizard as plain data, the one `Msg` enum, the `Effect`s, and
//! `update(&mut Model, Msg) -> Vec<Effect>`. Nothing here does I/O.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use tokio::sync::oneshot;

use super::certinfo::CertRow;
use super::connect::{ConnectForm, FieldKind, Prefill};
use super::keymap::{Action, Keymap, Scope};
use super::logs::{LogLine, LogsView};
use crate::config::Config;
use crate::doctor::{Diagnosis, LinkStatus};
use crate::plan::engine::{Engine, Event, Outcome, PlannedStep, RunOptions, RunReport};
use crate::plan::{Decision, Phase, Preview, StepId, StepState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Connect,
    Steps,
    Live,
    Logs,
    Doctor,
}

impl Screen {
    pub const ALL: [Screen; 5] = [
        Screen::Connect,
        Screen::Steps,
        Screen::Live,
        Screen::Logs,
        Screen::Doctor,
    ];
    pub fn title(self) -> &'static str {
        match self {
            Screen::Connect => "Connect",
            Screen::Steps => "Steps",
            Screen::Live => "Live state",
            Screen::Logs => "Logs",
            Screen::Doctor => "Doctor",
        }
    }
    pub fn scope(self) -> Scope {
        match self {
            Screen::Connect => Scope::Connect,
            Screen::Steps => Scope::Steps,
            Screen::Live => Scope::Live,
            Screen::Logs => Scope::Logs,
            Screen::Doctor => Scope::Doctor,
        }
    }
}

/// A step row's state, from the plan and then from the engine's events.
#[derive(Debug, Clone, PartialEq)]
pub enum RowState {
    Absent,
    Present,
    Conflict(String),
    Blocked(String),
    Running,
    Done,
    Skipped,
    Failed { error: String, hint: Option<String> },
    RolledBack,
}

impl RowState {
    pub fn label(&self) -> &'static str {
        match self {
            RowState::Absent => "absent",
            RowState::Present => "present",
            RowState::Conflict(_) => "conflict",
            RowState::Blocked(_) => "blocked",
            RowState::Running => "running",
            RowState::Done => "done",
            RowState::Skipped => "skipped",
            RowState::Failed { .. } => "failed",
            RowState::RolledBack => "rolled back",
        }
    }
    pub fn from_plan(s: &StepState) -> RowState {
        match s {
            StepState::Absent => RowState::Absent,
            StepState::Matches => RowState::Present,
            StepState::Conflict { what } => RowState::Conflict(what.clone()),
            StepState::Blocked { reason } => RowState::Blocked(reason.clone()),
        }
    }
    /// Still something to do for "apply all remaining".
    pub fn remaining(&self) -> bool {
        matches!(
            self,
            RowState::Absent | RowState::Failed { .. } | RowState::RolledBack | RowState::Skipped
        )
    }
}

#[derive(Debug, Clone)]
pub struct StepRow {
    pub cluster: String,
    pub step: StepId,
    pub title: String,
    pub state: RowState,
    pub preview: Preview,
    pub progress: Option<String>,
    pub started: Option<Instant>,
    pub took: Option<Duration>,
}

impl StepRow {
    pub fn from_planned(p: PlannedStep) -> StepRow {
        StepRow {
            state: RowState::from_plan(&p.state),
            cluster: p.cluster,
            step: p.step,
            title: p.title,
            preview: p.preview,
            progress: None,
            started: None,
            took: None,
        }
    }
}

/// A handle to the connected engine, carried by effects. `detached()` has no engine
/// behind it (for tests of `update`): the runner ignores effects that carry it.
#[derive(Clone)]
pub struct EngineHandle(Option<Arc<Engine>>);

impl EngineHandle {
    pub fn new(e: Engine) -> Self {
        Self(Some(Arc::new(e)))
    }
    pub fn detached() -> Self {
        Self(None)
    }
    pub fn get(&self) -> Option<&Arc<Engine>> {
        self.0.as_ref()
    }
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EngineHandle")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct VaultInfo {
    pub address: String,
    pub version: String,
    pub sealed: bool,
    pub initialized: bool,
    /// display name of the token and its policies, or why lookup failed.
    pub who: Result<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KubeInfo {
    pub api_url: String,
    pub context: String,
    pub version: String,
    /// (resource, allowed) for `create`.
    pub can_create: Vec<(String, Result<bool, String>)>,
}

/// Pending / answered status of one target.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe<T> {
    Unknown,
    Checking,
    Ok(T),
    Failed(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct MountRow {
    pub path: String,
    pub kind: String,
    pub accessor: String,
}

impl From<crate::vault::Mount> for MountRow {
    fn from(m: crate::vault::Mount) -> Self {
        Self {
            path: m.path,
            kind: m.kind,
            accessor: m.accessor,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RoleRow {
    pub name: String,
    pub sa_names: String,
    pub namespaces: String,
    pub policies: String,
    pub ttl: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PolicyRow {
    pub name: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KvRow {
    pub cluster: String,
    pub mount: String,
    pub path: String,
    /// (field, present). Values are never kept.
    pub keys: Vec<(String, bool)>,
    pub certs: Vec<CertRow>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PodRow {
    pub name: String,
    pub phase: String,
    /// (init container, state)
    pub init: Vec<(String, String)>,
    pub containers: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KubeObjects {
    pub cluster: String,
    /// (kind, name, present / detail)
    pub objects: Vec<(String, String, Result<String, String>)>,
    pub istiod: Option<String>,
    pub pods: Vec<PodRow>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveData {
    pub mounts: Vec<MountRow>,
    pub secret_mounts: Vec<MountRow>,
    pub policies: Vec<PolicyRow>,
    pub kv: Vec<KvRow>,
    pub kube: Vec<KubeObjects>,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LivePane {
    Mounts,
    Roles,
    Policies,
    Kv,
    Kube,
}

impl LivePane {
    pub const ALL: [LivePane; 5] = [
        LivePane::Mounts,
        LivePane::Roles,
        LivePane::Policies,
        LivePane::Kv,
        LivePane::Kube,
    ];
    pub fn title(self) -> &'static str {
        match self {
            LivePane::Mounts => "Vault auth mounts",
            LivePane::Roles => "Roles",
            LivePane::Policies => "Policies",
            LivePane::Kv => "KV certificates",
            LivePane::Kube => "Kubernetes objects",
        }
    }
    fn idx(self) -> usize {
        LivePane::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }
}

#[derive(Debug, Clone)]
pub struct LiveView {
    pub data: LiveData,
    pub roles: Result<Vec<RoleRow>, String>,
    pub roles_mount: Option<String>,
    pub pane: LivePane,
    pub sel: [usize; 5],
    pub loading: bool,
    pub updated: Option<Instant>,
}

impl Default for LiveView {
    fn default() -> Self {
        Self {
            data: LiveData::default(),
            roles: Ok(Vec::new()),
            roles_mount: None,
            pane: LivePane::Mounts,
            sel: [0; 5],
            loading: false,
            updated: None,
        }
    }
}

impl LiveView {
    pub fn len(&self, pane: LivePane) -> usize {
        match pane {
            LivePane::Mounts => self.data.mounts.len(),
            LivePane::Roles => self.roles.as_ref().map(Vec::len).unwrap_or(0),
            LivePane::Policies => self.data.policies.len(),
            LivePane::Kv => self.data.kv.len(),
            LivePane::Kube => self.data.kube.len(),
        }
    }
    pub fn selected(&self, pane: LivePane) -> usize {
        self.sel[pane.idx()].min(self.len(pane).saturating_sub(1))
    }
}

#[derive(Debug, Clone, Default)]
pub struct DoctorView {
    pub diagnoses: Vec<Diagnosis>,
    pub selected: usize,
    pub loading: bool,
    pub error: Option<String>,
    pub last_run: Option<Instant>,
}

impl DoctorView {
    /// (cluster index, link index) of every row.
    pub fn rows(&self) -> Vec<(usize, usize)> {
        self.diagnoses
            .iter()
            .enumerate()
            .flat_map(|(c, d)| (0..d.links.len()).map(move |l| (c, l)))
            .collect()
    }
}

/// A question from the engine (the TUI's `Decider`), answered through a dialog.
#[derive(Debug)]
pub struct Question {
    pub cluster: String,
    pub step: StepId,
    pub state: StepState,
    pub preview: Preview,
    pub reply: oneshot::Sender<Decision>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Purpose {
    ApplyStep {
        cluster: String,
        step: StepId,
    },
    ApplyAll,
    ApplyWalk,
    RollbackStep {
        cluster: String,
        step: StepId,
    },
    RollbackAll,
    RevealToken,
    Quit,
    /// The front of `Model::questions`.
    Engine,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Confirm {
    pub title: String,
    pub lines: Vec<String>,
    pub yes: String,
    pub no: String,
    /// The selected button; starts on No, the safe answer.
    pub on_yes: bool,
    pub purpose: Purpose,
    pub scroll: u16,
}

impl Confirm {
    pub fn new(
        title: impl Into<String>,
        lines: Vec<String>,
        yes: &str,
        purpose: Purpose,
    ) -> Confirm {
        Confirm {
            title: title.into(),
            lines,
            yes: yes.into(),
            no: "No".into(),
            on_yes: false,
            purpose,
            scroll: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Dialog {
    /// Preview of the row at this index of `Model::steps`.
    Preview {
        row: usize,
        scroll: u16,
    },
    Confirm(Confirm),
    Help {
        scroll: u16,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Normal,
    Command(String),
    Filter(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    Apply,
    Rollback,
}

#[derive(Debug, Clone)]
pub struct Run {
    pub kind: RunKind,
    pub req: u64,
    pub started: Instant,
    pub total: usize,
    pub finished: usize,
}

/// Request ids: an answer whose id is not the latest of its kind is dropped.
#[derive(Debug, Clone, Default)]
pub struct Requests {
    pub seq: u64,
    pub connect: u64,
    pub plan: u64,
    pub run: u64,
    pub live: u64,
    pub roles: u64,
    pub doctor: u64,
    pub logs: u64,
}

impl Requests {
    fn next(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }
}

pub struct Model {
    pub screen: Screen,
    pub config: Option<Config>,
    pub form: ConnectForm,
    pub vault: Probe<VaultInfo>,
    pub kube: Vec<(String, Probe<KubeInfo>)>,
    pub engine: Option<EngineHandle>,
    pub engine_error: Option<String>,
    pub steps: Vec<StepRow>,
    pub steps_sel: usize,
    pub plan_loading: bool,
    pub plan_error: Option<String>,
    pub run: Option<Run>,
    pub last_report: Option<String>,
    pub questions: VecDeque<Question>,
    pub live: LiveView,
    pub logs: LogsView,
    pub doctor: DoctorView,
    pub dialog: Option<Dialog>,
    pub mode: Mode,
    pub filter: String,
    /// `:cluster NAME` narrows Steps, Live, Logs and Doctor.
    pub cluster: Option<String>,
    pub keymap: Keymap,
    pub warnings: Vec<String>,
    pub message: Option<String>,
    pub reqs: Requests,
    pub size: (u16, u16),
    pub now: Instant,
    pub color: bool,
    pub dirty: bool,
    pub quit: bool,
}

/// Work for the runner. Every answer comes back as a `Msg` carrying the request id.
#[derive(Debug)]
pub enum Effect {
    /// Probe Vault and every cluster, and connect the engine.
    Connect {
        req: u64,
        config: Box<Config>,
    },
    Plan {
        req: u64,
        engine: EngineHandle,
    },
    Apply {
        req: u64,
        engine: EngineHandle,
        opts: RunOptions,
        mode: DeciderMode,
    },
    Rollback {
        req: u64,
        engine: EngineHandle,
        only: Option<(String, StepId)>,
    },
    RefreshLive {
        req: u64,
        engine: EngineHandle,
    },
    LoadRoles {
        req: u64,
        engine: EngineHandle,
        mount: String,
    },
    Doctor {
        req: u64,
        engine: EngineHandle,
    },
    /// Follow istiod's logs on this cluster (replaces the previous stream).
    FollowLogs {
        req: u64,
        engine: EngineHandle,
        cluster: String,
    },
    Answer {
        reply: oneshot::Sender<Decision>,
        decision: Decision,
    },
    LoadContexts {
        cluster: usize,
        path: PathBuf,
    },
    SaveConfig {
        path: PathBuf,
        text: String,
    },
    SaveLogs {
        path: PathBuf,
        text: String,
    },
    Quit,
}

/// How the TUI's decider answers the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeciderMode {
    /// Every question goes to a dialog.
    Ask,
    /// Already confirmed: create what is absent; overwrite conflicts only if `overwrite`.
    Approved { overwrite: bool },
}

#[derive(Debug)]
pub enum Msg {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Resize(u16, u16),
    Tick(Instant),
    VaultProbe {
        req: u64,
        result: Result<VaultInfo, String>,
    },
    KubeProbe {
        req: u64,
        cluster: String,
        result: Result<KubeInfo, String>,
    },
    EngineReady {
        req: u64,
        result: Result<EngineHandle, String>,
    },
    Planned {
        req: u64,
        result: Result<Vec<PlannedStep>, String>,
    },
    Engine {
        req: u64,
        event: Event,
    },
    RunFinished {
        req: u64,
        result: Result<RunReport, String>,
    },
    Ask(Question),
    Live {
        req: u64,
        data: Box<LiveData>,
    },
    Roles {
        req: u64,
        mount: String,
        result: Result<Vec<RoleRow>, String>,
    },
    Doctor {
        req: u64,
        result: Result<Vec<Diagnosis>, String>,
    },
    LogLines {
        req: u64,
        lines: Vec<LogLine>,
    },
    LogStatus {
        req: u64,
        pod: Option<String>,
        status: String,
    },
    Contexts {
        cluster: usize,
        result: Result<Vec<String>, String>,
    },
    Saved {
        what: String,
        result: Result<PathBuf, String>,
    },
}

pub const LIVE_EVERY: Duration = Duration::from_secs(15);
pub const DOCTOR_EVERY: Duration = Duration::from_secs(30);

impl Model {
    /// A model for a config (or none: the Connect screen), with the given keymap.
    pub fn new(
        config: Option<Config>,
        prefill: Prefill,
        keymap: Keymap,
        warnings: Vec<String>,
    ) -> Model {
        let base = config
            .as_ref()
            .and_then(|c| c.path.as_ref())
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| toml::from_str(&t).ok())
            .unwrap_or_default();
        let path = config.as_ref().and_then(|c| c.path.clone());
        let form = ConnectForm::new(&prefill, path, base);
        let kube = config
            .as_ref()
            .map(|c| {
                c.clusters
                    .iter()
                    .map(|k| (k.name.clone(), Probe::Unknown))
                    .collect()
            })
            .unwrap_or_default();
        let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Model {
            screen: if config.is_some() {
                Screen::Steps
            } else {
                Screen::Connect
            },
            config,
            form,
            vault: Probe::Unknown,
            kube,
            engine: None,
            engine_error: None,
            steps: Vec::new(),
            steps_sel: 0,
            plan_loading: false,
            plan_error: None,
            run: None,
            last_report: None,
            questions: VecDeque::new(),
            live: LiveView::default(),
            logs: LogsView::default(),
            doctor: DoctorView::default(),
            dialog: None,
            mode: Mode::Normal,
            filter: String::new(),
            cluster: None,
            keymap,
            warnings,
            message: None,
            reqs: Requests::default(),
            size: (80, 24),
            now: Instant::now(),
            color,
            dirty: true,
            quit: false,
        }
    }

    /// Effects to run at start: with a config, connect at once.
    pub fn init(&mut self) -> Vec<Effect> {
        let mut fx = Vec::new();
        for c in 0..self.form.cluster_count() {
            let p = self.form.cluster_field(c, FieldKind::Kubeconfig).value();
            if !p.is_empty() {
                fx.push(Effect::LoadContexts {
                    cluster: c,
                    path: PathBuf::from(p),
                });
            }
        }
        if let Some(c) = self.config.clone() {
            fx.extend(self.connect(c));
        }
        fx
    }

    fn connect(&mut self, config: Config) -> Vec<Effect> {
        let req = self.reqs.next();
        self.reqs.connect = req;
        self.vault = Probe::Checking;
        self.kube = config
            .clusters
            .iter()
            .map(|k| (k.name.clone(), Probe::Checking))
            .collect();
        self.engine = None;
        self.engine_error = None;
        self.config = Some(config.clone());
        vec![Effect::Connect {
            req,
            config: Box::new(config),
        }]
    }

    pub fn scope(&self) -> Scope {
        if self.dialog.is_some() {
            Scope::Dialog
        } else {
            self.screen.scope()
        }
    }

    /// Indices of `steps` shown (cluster narrowing and `/` filter).
    pub fn visible_steps(&self) -> Vec<usize> {
        let f = self.filter.to_lowercase();
        self.steps
            .iter()
            .enumerate()
            .filter(|(_, r)| self.cluster.as_ref().is_none_or(|c| *c == r.cluster))
            .filter(|(_, r)| {
                f.is_empty()
                    || r.step.as_str().contains(&f)
                    || r.title.to_lowercase().contains(&f)
                    || r.state.label().contains(&f)
                    || r.cluster.contains(&f)
            })
            .map(|(i, _)| i)
            .collect()
    }

    pub fn selected_step(&self) -> Option<usize> {
        let v = self.visible_steps();
        v.get(self.steps_sel.min(v.len().saturating_sub(1)))
            .copied()
    }

    pub fn running(&self) -> bool {
        self.run.is_some()
    }

    /// Body height of list screens (tabs, status and footer take 3 rows).
    pub fn body_height(&self) -> usize {
        self.size.1.saturating_sub(5) as usize
    }

    fn note(&mut self, m: impl Into<String>) {
        self.message = Some(m.into());
    }

    fn clusters(&self) -> Vec<String> {
        self.config
            .as_ref()
            .map(|c| c.clusters.iter().map(|k| k.name.clone()).collect())
            .unwrap_or_default()
    }

    fn logs_cluster(&self) -> Option<String> {
        self.cluster
            .clone()
            .or_else(|| self.clusters().into_iter().next())
    }
}

/// The one update function.
pub fn update(m: &mut Model, msg: Msg) -> Vec<Effect> {
    match msg {
        Msg::Tick(now) => tick(m, now),
        Msg::Resize(w, h) => {
            m.size = (w, h);
            m.dirty = true;
            Vec::new()
        }
        Msg::Key(k) => {
            m.dirty = true;
            key(m, k)
        }
        Msg::Mouse(ev) => mouse(m, ev),
        other => {
            m.dirty = true;
            answer(m, other)
        }
    }
}

fn tick(m: &mut Model, now: Instant) -> Vec<Effect> {
    m.now = now;
    let mut fx = Vec::new();
    if m.run.is_some() {
        m.dirty = true;
    }
    if let Some(e) = m.engine.clone() {
        if !m.live.loading
            && m.run.is_none()
            && m.live
                .updated
                .is_some_and(|u| now.duration_since(u) >= LIVE_EVERY)
        {
            fx.extend(refresh_live(m, e.clone()));
        }
        if m.screen == Screen::Doctor
            && !m.doctor.loading
            && m.doctor
                .last_run
                .is_none_or(|u| now.duration_since(u) >= DOCTOR_EVERY)
        {
            fx.extend(run_doctor(m, e));
        }
    }
    fx
}

fn refresh_live(m: &mut Model, e: EngineHandle) -> Vec<Effect> {
    let req = m.reqs.next();
    m.reqs.live = req;
    m.live.loading = true;
    m.dirty = true;
    vec![Effect::RefreshLive { req, engine: e }]
}

fn run_doctor(m: &mut Model, e: EngineHandle) -> Vec<Effect> {
    let req = m.reqs.next();
    m.reqs.doctor = req;
    m.doctor.loading = true;
    m.doctor.last_run = Some(m.now);
    m.dirty = true;
    vec![Effect::Doctor { req, engine: e }]
}

fn plan(m: &mut Model) -> Vec<Effect> {
    let Some(e) = m.engine.clone() else {
        return Vec::new();
    };
    let req = m.reqs.next();
    m.reqs.plan = req;
    m.plan_loading = true;
    vec![Effect::Plan { req, engine: e }]
}

fn follow_logs(m: &mut Model) -> Vec<Effect> {
    let (Some(e), Some(cluster)) = (m.engine.clone(), m.logs_cluster()) else {
        return Vec::new();
    };
    if m.logs.cluster.as_ref() == Some(&cluster) && m.reqs.logs != 0 {
        return Vec::new();
    }
    let req = m.reqs.next();
    m.reqs.logs = req;
    m.logs = LogsView {
        cluster: Some(cluster.clone()),
        status: format!("looking for the istiod pod on {cluster}"),
        ..LogsView::default()
    };
    vec![Effect::FollowLogs {
        req,
        engine: e,
        cluster,
    }]
}

fn go(m: &mut Model, s: Screen) -> Vec<Effect> {
    m.screen = s;
    m.filter.clear();
    let Some(e) = m.engine.clone() else {
        return Vec::new();
    };
    match s {
        Screen::Logs => follow_logs(m),
        Screen::Doctor if m.doctor.last_run.is_none() => run_doctor(m, e),
        Screen::Live if m.live.updated.is_none() && !m.live.loading => refresh_live(m, e),
        _ => Vec::new(),
    }
}

fn answer(m: &mut Model, msg: Msg) -> Vec<Effect> {
    match msg {
        Msg::VaultProbe { req, result } => {
            if req == m.reqs.connect {
                m.vault = match result {
                    Ok(v) => Probe::Ok(v),
                    Err(e) => Probe::Failed(e),
                };
            }
            Vec::new()
        }
        Msg::KubeProbe {
            req,
            cluster,
            result,
        } => {
            if req == m.reqs.connect
                && let Some((_, p)) = m.kube.iter_mut().find(|(n, _)| *n == cluster)
            {
                *p = match result {
                    Ok(v) => Probe::Ok(v),
                    Err(e) => Probe::Failed(e),
                };
            }
            Vec::new()
        }
        Msg::EngineReady { req, result } => {
            if req != m.reqs.connect {
                return Vec::new();
            }
            match result {
                Ok(e) => {
                    m.engine = Some(e.clone());
                    m.engine_error = None;
                    m.reqs.logs = 0;
                    let mut fx = plan(m);
                    fx.extend(refresh_live(m, e.clone()));
                    match m.screen {
                        Screen::Doctor => fx.extend(run_doctor(m, e)),
                        Screen::Logs => fx.extend(follow_logs(m)),
                        _ => {}
                    }
                    fx
                }
                Err(err) => {
                    m.engine_error = Some(err.clone());
                    m.note(format!("not connected: {err}"));
                    Vec::new()
                }
            }
        }
        Msg::Planned { req, result } => {
            if req != m.reqs.plan {
                return Vec::new();
            }
            m.plan_loading = false;
            match result {
                Ok(rows) => {
                    // Keep what only the session knows (rolled back, failed) where the plan
                    // agrees nothing is there.
                    let old = std::mem::take(&mut m.steps);
                    m.steps = rows
                        .into_iter()
                        .map(|p| {
                            let mut r = StepRow::from_planned(p);
                            if let Some(o) = old
                                .iter()
                                .find(|o| o.cluster == r.cluster && o.step == r.step)
                            {
                                let keep = matches!(
                                    (&r.state, &o.state),
                                    (
                                        RowState::Absent,
                                        RowState::RolledBack | RowState::Failed { .. }
                                    ) | (RowState::Present, RowState::Done)
                                );
                                if keep {
                                    r.state = o.state.clone();
                                    r.took = o.took;
                                }
                            }
                            r
                        })
                        .collect();
                    m.plan_error = None;
                }
                Err(e) => m.plan_error = Some(e),
            }
            Vec::new()
        }
        Msg::Engine { req, event } => {
            if m.run.as_ref().is_none_or(|r| r.req != req) {
                return Vec::new();
            }
            // A failed verification hands over to the doctor: run its chain now, so the
            // Doctor screen already names the broken link when the operator opens it.
            let verify_failed = matches!(
                &event,
                Event::Failed {
                    step: StepId::Verify,
                    conflict: false,
                    ..
                }
            );
            engine_event(m, event);
            match (verify_failed, m.engine.clone()) {
                (true, Some(e)) => {
                    m.note("istiod verification failed: the doctor is checking the chain (5)");
                    run_doctor(m, e)
                }
                _ => Vec::new(),
            }
        }
        Msg::RunFinished { req, result } => {
            let Some(run) = m.run.take().filter(|r| r.req == req) else {
                return Vec::new();
            };
            let took = m.now.duration_since(run.started);
            let text = match (&run.kind, result) {
                (RunKind::Apply, Ok(r)) => format!(
                    "apply finished in {:.1}s: applied {}, unchanged {}, skipped {}, conflicts {}, failed {}{}",
                    took.as_secs_f64(),
                    r.applied.len(),
                    r.unchanged.len(),
                    r.skipped.len(),
                    r.conflicts.len(),
                    r.failed.len(),
                    if r.aborted { " (stopped)" } else { "" }
                ),
                (RunKind::Rollback, Ok(r)) => format!(
                    "rollback finished in {:.1}s: rolled back {}, failed {}",
                    took.as_secs_f64(),
                    r.rolled_back.len(),
                    r.failed.len()
                ),
                (_, Err(e)) => format!("run failed: {e}"),
            };
            m.last_report = Some(text.clone());
            m.note(text);
            // Unanswered questions of this run are void.
            for q in m.questions.drain(..) {
                let _ = q.reply.send(Decision::Abort);
            }
            if matches!(&m.dialog, Some(Dialog::Confirm(c)) if c.purpose == Purpose::Engine) {
                m.dialog = None;
            }
            let mut fx = plan(m);
            if let Some(e) = m.engine.clone() {
                fx.extend(refresh_live(m, e));
            }
            fx
        }
        Msg::Ask(q) => {
            if m.run.is_none() {
                return vec![Effect::Answer {
                    reply: q.reply,
                    decision: Decision::Abort,
                }];
            }
            m.questions.push_back(q);
            show_question(m);
            Vec::new()
        }
        Msg::Live { req, data } => {
            if req == m.reqs.live {
                m.live.loading = false;
                m.live.updated = Some(m.now);
                m.live.data = *data;
                return load_roles(m);
            }
            Vec::new()
        }
        Msg::Roles { req, mount, result } => {
            if req == m.reqs.roles {
                m.live.roles = result;
                m.live.roles_mount = Some(mount);
            }
            Vec::new()
        }
        Msg::Doctor { req, result } => {
            if req == m.reqs.doctor {
                m.doctor.loading = false;
                match result {
                    Ok(d) => {
                        m.doctor.diagnoses = d;
                        m.doctor.error = None;
                    }
                    Err(e) => m.doctor.error = Some(e),
                }
            }
            Vec::new()
        }
        Msg::LogLines { req, lines } => {
            if req == m.reqs.logs {
                m.logs.ingest(lines);
            }
            Vec::new()
        }
        Msg::LogStatus { req, pod, status } => {
            if req == m.reqs.logs {
                m.logs.pod = pod;
                m.logs.status = status;
            }
            Vec::new()
        }
        Msg::Contexts { cluster, result } => {
            if cluster < m.form.contexts.len() {
                match result {
                    Ok(list) => m.form.contexts[cluster] = list,
                    Err(_) => m.form.contexts[cluster].clear(),
                }
                m.form.validate_all();
            }
            Vec::new()
        }
        Msg::Saved { what, result } => {
            match result {
                Ok(p) => {
                    m.note(format!("saved {what} to {}", p.display()));
                }
                Err(e) => m.note(format!("could not save {what}: {e}")),
            }
            Vec::new()
        }
        Msg::Tick(_) | Msg::Key(_) | Msg::Mouse(_) | Msg::Resize(..) => Vec::new(),
    }
}

fn load_roles(m: &mut Model) -> Vec<Effect> {
    let Some(e) = m.engine.clone() else {
        return Vec::new();
    };
    let sel = m.live.selected(LivePane::Mounts);
    let Some(mount) = m.live.data.mounts.get(sel).map(|x| x.path.clone()) else {
        m.live.roles = Ok(Vec::new());
        return Vec::new();
    };
    let req = m.reqs.next();
    m.reqs.roles = req;
    vec![Effect::LoadRoles {
        req,
        engine: e,
        mount,
    }]
}

fn row_mut<'a>(m: &'a mut Model, cluster: &str, step: StepId) -> Option<&'a mut StepRow> {
    m.steps
        .iter_mut()
        .find(|r| r.cluster == cluster && r.step == step)
}

fn engine_event(m: &mut Model, ev: Event) {
    let now = m.now;
    match ev {
        Event::Checked {
            cluster,
            step,
            state,
            ..
        } => {
            if let Some(r) = row_mut(m, &cluster, step)
                && r.state != RowState::Running
            {
                r.state = RowState::from_plan(&state);
            }
        }
        Event::Progress {
            cluster,
            step,
            message,
        } => {
            if let Some(r) = row_mut(m, &cluster, step) {
                r.progress = Some(message);
            }
        }
        Event::Started { cluster, step } => {
            if let Some(r) = row_mut(m, &cluster, step) {
                r.state = RowState::Running;
                r.started = Some(now);
                r.took = None;
                r.progress = None;
            }
        }
        Event::Done {
            cluster,
            step,
            outcome,
        } => {
            if let Some(r) = row_mut(m, &cluster, step) {
                r.took = r.started.map(|s| now.duration_since(s));
                r.state = match outcome {
                    Outcome::Applied | Outcome::Verified => RowState::Done,
                    Outcome::Unchanged => RowState::Present,
                    Outcome::Skipped => RowState::Skipped,
                };
            }
            if let Some(run) = &mut m.run {
                run.finished += 1;
            }
        }
        Event::Failed {
            cluster,
            step,
            error,
            hint,
            conflict,
        } => {
            if let Some(r) = row_mut(m, &cluster, step) {
                r.took = r.started.map(|s| now.duration_since(s));
                r.state = if conflict {
                    RowState::Conflict(error)
                } else {
                    RowState::Failed { error, hint }
                };
            }
            if let Some(run) = &mut m.run {
                run.finished += 1;
            }
        }
        Event::RolledBack {
            cluster,
            step,
            resource,
        } => {
            if let Some(r) = row_mut(m, &cluster, step) {
                r.state = RowState::RolledBack;
                r.progress = Some(format!("rolled back {resource}"));
            }
            if let Some(run) = &mut m.run {
                run.finished += 1;
            }
        }
        Event::RollbackFailed {
            cluster,
            step,
            error,
        } => {
            if let Some(r) = row_mut(m, &cluster, step) {
                r.state = RowState::Failed {
                    error: format!("rollback: {error}"),
                    hint: None,
                };
            }
            if let Some(run) = &mut m.run {
                run.finished += 1;
            }
        }
    }
}

/// Shows the front question if no dialog is open.
fn show_question(m: &mut Model) {
    if m.dialog.is_some() {
        return;
    }
    let Some(q) = m.questions.front() else {
        return;
    };
    let mut lines = vec![q.preview.summary.clone()];
    if let StepState::Conflict { what } = &q.state {
        lines.push(format!("CONFLICT: {what}"));
    }
    lines.extend(q.preview.changes.iter().map(|c| format!("• {c}")));
    if let Some(d) = &q.preview.diff {
        lines.push(String::new());
        lines.extend(d.lines().map(str::to_string));
    }
    lines.push(String::new());
    lines.push("equivalent commands:".into());
    for c in &q.preview.commands {
        lines.extend(c.lines().map(|l| format!("  $ {l}")));
    }
    let yes = if matches!(q.state, StepState::Conflict { .. }) {
        "Overwrite"
    } else {
        "Apply"
    };
    let mut c = Confirm::new(
        format!("[{}] {}: apply this step?", q.cluster, q.step),
        lines,
        yes,
        Purpose::Engine,
    );
    c.no = "Skip".into();
    m.dialog = Some(Dialog::Confirm(c));
}

fn start_run(m: &mut Model, kind: RunKind, total: usize) -> Option<(u64, EngineHandle)> {
    if m.run.is_some() {
        m.note("a run is in progress");
        return None;
    }
    let Some(e) = m.engine.clone() else {
        m.note("not connected: check the Connect screen");
        return None;
    };
    let req = m.reqs.next();
    m.reqs.run = req;
    m.run = Some(Run {
        kind,
        req,
        started: m.now,
        total,
        finished: 0,
    });
    Some((req, e))
}

/// The operator answered a confirmation.
fn confirmed(m: &mut Model, c: Confirm, yes: bool, abort: bool) -> Vec<Effect> {
    match c.purpose {
        Purpose::Engine => {
            let Some(q) = m.questions.pop_front() else {
                return Vec::new();
            };
            let decision = if abort {
                Decision::Abort
            } else if yes {
                Decision::Apply
            } else {
                Decision::Skip
            };
            let mut fx = vec![Effect::Answer {
                reply: q.reply,
                decision,
            }];
            if abort {
                for q in m.questions.drain(..) {
                    fx.push(Effect::Answer {
                        reply: q.reply,
                        decision: Decision::Abort,
                    });
                }
            }
            show_question(m);
            fx
        }
        _ if !yes => {
            m.note("cancelled, nothing changed");
            Vec::new()
        }
        Purpose::Quit => {
            m.quit = true;
            vec![Effect::Quit]
        }
        Purpose::RevealToken => {
            m.form.revealed = true;
            if let Some(f) = m
                .form
                .fields
                .iter_mut()
                .find(|f| f.kind == FieldKind::Token)
            {
                f.input.clear_mask_char();
            }
            Vec::new()
        }
        Purpose::ApplyStep { cluster, step } => {
            let Some((req, engine)) = start_run(m, RunKind::Apply, 1) else {
                return Vec::new();
            };
            vec![Effect::Apply {
                req,
                engine,
                opts: RunOptions {
                    clusters: vec![cluster],
                    steps: vec![step],
                    istio: step.phase() == Phase::Istio,
                    ..RunOptions::default()
                },
                mode: DeciderMode::Approved { overwrite: true },
            }]
        }
        Purpose::ApplyAll | Purpose::ApplyWalk => {
            let walk = c.purpose == Purpose::ApplyWalk;
            let clusters: Vec<String> = m.cluster.clone().into_iter().collect();
            let phase = next_phase(m);
            let total = m
                .steps
                .iter()
                .filter(|r| clusters.is_empty() || clusters.contains(&r.cluster))
                .filter(|r| r.step.phase() == phase)
                .count();
            let Some((req, engine)) = start_run(m, RunKind::Apply, total) else {
                return Vec::new();
            };
            vec![Effect::Apply {
                req,
                engine,
                opts: RunOptions {
                    clusters,
                    steps: StepId::ALL
                        .into_iter()
                        .filter(|s| s.phase() == phase)
                        .collect(),
                    istio: phase == Phase::Istio,
                    ..RunOptions::default()
                },
                mode: if walk {
                    DeciderMode::Ask
                } else {
                    DeciderMode::Approved { overwrite: false }
                },
            }]
        }
        Purpose::RollbackStep { cluster, step } => {
            let Some((req, engine)) = start_run(m, RunKind::Rollback, 1) else {
                return Vec::new();
            };
            vec![Effect::Rollback {
                req,
                engine,
                only: Some((cluster, step)),
            }]
        }
        Purpose::RollbackAll => {
            let total = m
                .steps
                .iter()
                .filter(|r| matches!(r.state, RowState::Done | RowState::Present))
                .count();
            let Some((req, engine)) = start_run(m, RunKind::Rollback, total) else {
                return Vec::new();
            };
            vec![Effect::Rollback {
                req,
                engine,
                only: None,
            }]
        }
    }
}

fn dialog_key(m: &mut Model, k: KeyEvent) -> Vec<Effect> {
    let action = m.keymap.lookup(Scope::Dialog, &k);
    let global = m.keymap.lookup(Scope::Global, &k);
    let Some(d) = m.dialog.take() else {
        return Vec::new();
    };
    match d {
        Dialog::Help { scroll } => {
            let scroll = match global {
                Some(Action::Down) => scroll.saturating_add(1),
                Some(Action::Up) => scroll.saturating_sub(1),
                Some(Action::PageDown) => scroll.saturating_add(10),
                Some(Action::PageUp) => scroll.saturating_sub(10),
                Some(Action::Top) => 0,
                Some(Action::Help | Action::Back | Action::Quit) => return Vec::new(),
                _ if action == Some(Action::No) || action == Some(Action::Confirm) => {
                    return Vec::new();
                }
                _ => scroll,
            };
            m.dialog = Some(Dialog::Help { scroll });
            Vec::new()
        }
        Dialog::Preview { row, scroll } => {
            match m.keymap.lookup(Scope::Steps, &k) {
                Some(Action::Down) => {
                    m.dialog = Some(Dialog::Preview {
                        row,
                        scroll: scroll.saturating_add(1),
                    })
                }
                Some(Action::Up) => {
                    m.dialog = Some(Dialog::Preview {
                        row,
                        scroll: scroll.saturating_sub(1),
                    })
                }
                Some(Action::PageDown) => {
                    m.dialog = Some(Dialog::Preview {
                        row,
                        scroll: scroll.saturating_add(10),
                    })
                }
                Some(Action::PageUp) => {
                    m.dialog = Some(Dialog::Preview {
                        row,
                        scroll: scroll.saturating_sub(10),
                    })
                }
                Some(Action::ApplyStep | Action::ApplyWalk) => ask_apply_step(m, row),
                Some(Action::Rollback) => ask_rollback_step(m, row),
                _ => {} // esc, enter, q: close
            }
            Vec::new()
        }
        Dialog::Confirm(mut c) => match action {
            Some(Action::Yes) => confirmed(m, c, true, false),
            Some(Action::No) => confirmed(m, c, false, false),
            Some(Action::AbortRun) if c.purpose == Purpose::Engine => confirmed(m, c, false, true),
            Some(Action::Confirm) => {
                let yes = c.on_yes;
                confirmed(m, c, yes, false)
            }
            Some(Action::Toggle) => {
                c.on_yes = !c.on_yes;
                m.dialog = Some(Dialog::Confirm(c));
                Vec::new()
            }
            _ => {
                match global {
                    Some(Action::Down) => c.scroll = c.scroll.saturating_add(1),
                    Some(Action::Up) => c.scroll = c.scroll.saturating_sub(1),
                    Some(Action::PageDown) => c.scroll = c.scroll.saturating_add(10),
                    Some(Action::PageUp) => c.scroll = c.scroll.saturating_sub(10),
                    _ => {}
                }
                m.dialog = Some(Dialog::Confirm(c));
                Vec::new()
            }
        },
    }
}

fn ask_apply_step(m: &mut Model, row: usize) {
    let Some(r) = m.steps.get(row) else { return };
    if r.step.is_read_only() || r.state == RowState::Present {
        m.note(format!("{} on {}: nothing to apply", r.step, r.cluster));
        return;
    }
    let mut lines = vec![format!("[{}] {}", r.cluster, r.preview.summary)];
    lines.extend(r.preview.changes.iter().map(|c| format!("• {c}")));
    let yes = if let RowState::Conflict(what) = &r.state {
        lines.push(format!("This OVERWRITES the existing object: {what}"));
        "Overwrite"
    } else {
        "Apply"
    };
    m.dialog = Some(Dialog::Confirm(Confirm::new(
        format!("Apply {} on {}?", r.step, r.cluster),
        lines,
        yes,
        Purpose::ApplyStep {
            cluster: r.cluster.clone(),
            step: r.step,
        },
    )));
}

fn ask_rollback_step(m: &mut Model, row: usize) {
    let Some(r) = m.steps.get(row) else { return };
    m.dialog = Some(Dialog::Confirm(Confirm::new(
        format!("Roll back {} on {}?", r.step, r.cluster),
        vec![
            format!(
                "Undo what the journal says the wizard did for {} on {}.",
                r.step, r.cluster
            ),
            "Objects that existed before the wizard are left alone.".into(),
        ],
        "Roll back",
        Purpose::RollbackStep {
            cluster: r.cluster.clone(),
            step: r.step,
        },
    )));
}

fn move_sel(sel: usize, len: usize, a: Action, page: usize) -> usize {
    let last = len.saturating_sub(1);
    match a {
        Action::Up => sel.saturating_sub(1),
        Action::Down => (sel + 1).min(last),
        Action::Top => 0,
        Action::Bottom => last,
        Action::PageUp => sel.saturating_sub(page.max(1)),
        Action::PageDown => (sel + page.max(1)).min(last),
        _ => sel,
    }
}

fn is_move(a: Action) -> bool {
    matches!(
        a,
        Action::Up
            | Action::Down
            | Action::Top
            | Action::Bottom
            | Action::PageUp
            | Action::PageDown
    )
}

fn key(m: &mut Model, k: KeyEvent) -> Vec<Effect> {
    if k.kind == ratatui::crossterm::event::KeyEventKind::Release {
        return Vec::new();
    }
    m.message = None;
    match m.mode.clone() {
        Mode::Command(s) => return line_key(m, k, s, true),
        Mode::Filter(s) => return line_key(m, k, s, false),
        Mode::Normal => {}
    }
    if m.dialog.is_some() {
        return dialog_key(m, k);
    }
    if m.screen == Screen::Connect && m.form.editing {
        return edit_key(m, k);
    }
    let Some(a) = m.keymap.lookup(m.screen.scope(), &k) else {
        return Vec::new();
    };
    action(m, a)
}

/// Runs an action in the current screen (keys, mouse and commands end here).
pub fn action(m: &mut Model, a: Action) -> Vec<Effect> {
    let page = m.body_height().saturating_sub(2);
    match a {
        Action::Quit => {
            if m.running() {
                m.dialog = Some(Dialog::Confirm(Confirm::new(
                    "Quit while a run is in progress?",
                    vec![
                        "The engine stops between steps; the journal keeps what was done.".into(),
                        "apply resumes from the journal next time.".into(),
                    ],
                    "Quit",
                    Purpose::Quit,
                )));
                Vec::new()
            } else {
                m.quit = true;
                vec![Effect::Quit]
            }
        }
        Action::Help => {
            m.dialog = Some(Dialog::Help { scroll: 0 });
            Vec::new()
        }
        Action::Command => {
            m.mode = Mode::Command(String::new());
            Vec::new()
        }
        Action::Filter | Action::Search => {
            let cur = if m.screen == Screen::Logs {
                m.logs.search.clone()
            } else {
                m.filter.clone()
            };
            m.mode = Mode::Filter(cur);
            Vec::new()
        }
        Action::Back => {
            if !m.filter.is_empty() {
                m.filter.clear();
            } else if m.screen == Screen::Logs && !m.logs.search.is_empty() {
                m.logs.search.clear();
                m.logs.current = None;
            } else if m.screen == Screen::Connect && m.config.is_some() {
                m.screen = Screen::Steps;
            }
            Vec::new()
        }
        Action::GoConnect => go(m, Screen::Connect),
        Action::GoSteps => go(m, Screen::Steps),
        Action::GoLive => go(m, Screen::Live),
        Action::GoLogs => go(m, Screen::Logs),
        Action::GoDoctor => go(m, Screen::Doctor),
        Action::Refresh => refresh(m),
        _ => screen_action(m, a, page),
    }
}

fn refresh(m: &mut Model) -> Vec<Effect> {
    if m.screen == Screen::Connect {
        return check_connect(m);
    }
    let Some(e) = m.engine.clone() else {
        return match m.config.clone() {
            Some(c) => m.connect(c),
            None => Vec::new(),
        };
    };
    let mut fx = Vec::new();
    match m.screen {
        Screen::Doctor => fx.extend(run_doctor(m, e)),
        Screen::Logs => {
            m.reqs.logs = 0;
            m.logs.cluster = None;
            fx.extend(follow_logs(m));
        }
        _ => {
            if m.run.is_none() {
                fx.extend(plan(m));
            }
            fx.extend(refresh_live(m, e));
        }
    }
    fx
}

fn check_connect(m: &mut Model) -> Vec<Effect> {
    if m.running() {
        m.note("a run is in progress");
        return Vec::new();
    }
    match m.form.to_config() {
        Ok(c) => {
            m.note("connecting…");
            m.steps.clear();
            m.live = LiveView::default();
            m.doctor = DoctorView::default();
            m.connect(c)
        }
        Err(e) => {
            m.note(format!("cannot connect: {e}"));
            Vec::new()
        }
    }
}

fn screen_action(m: &mut Model, a: Action, page: usize) -> Vec<Effect> {
    match m.screen {
        Screen::Connect => connect_action(m, a),
        Screen::Steps => steps_action(m, a, page),
        Screen::Live => live_action(m, a, page),
        Screen::Logs => logs_action(m, a, page),
        Screen::Doctor => {
            if is_move(a) {
                let n = m.doctor.rows().len();
                m.doctor.selected = move_sel(m.doctor.selected, n, a, page);
                return Vec::new();
            }
            if a == Action::Rerun
                && let Some(e) = m.engine.clone()
            {
                return run_doctor(m, e);
            }
            Vec::new()
        }
    }
}

fn connect_action(m: &mut Model, a: Action) -> Vec<Effect> {
    let n = m.form.fields.len();
    match a {
        Action::Up | Action::PrevPane => m.form.focus = m.form.focus.saturating_sub(1),
        Action::Down | Action::NextPane => m.form.focus = (m.form.focus + 1).min(n - 1),
        Action::Top => m.form.focus = 0,
        Action::Bottom => m.form.focus = n - 1,
        Action::Edit => m.form.editing = true,
        Action::AddCluster => {
            m.form.add_cluster();
            let c = m.form.cluster_count() - 1;
            let p = m.form.cluster_field(c, FieldKind::Kubeconfig).value();
            if !p.is_empty() {
                return vec![Effect::LoadContexts {
                    cluster: c,
                    path: PathBuf::from(p),
                }];
            }
        }
        Action::RemoveCluster => match m.form.remove_cluster() {
            Some(name) => m.note(format!("removed cluster {name} from the form")),
            None => m.note("select a cluster's field to remove it"),
        },
        Action::CheckConnect => return check_connect(m),
        Action::SaveConfig => {
            let errs = m.form.errors();
            if errs.iter().any(|e| !e.starts_with("Vault token")) {
                m.note(format!("not saved: {}", errs.join("; ")));
                return Vec::new();
            }
            return vec![Effect::SaveConfig {
                path: m.form.path.clone(),
                text: m.form.toml_text(),
            }];
        }
        Action::RevealToken => {
            if !m.form.revealed {
                m.dialog = Some(Dialog::Confirm(Confirm::new(
                    "Reveal the Vault token?",
                    vec![
                        "The token will be drawn in clear text on this screen.".into(),
                        "Anyone who can see the terminal (or a recording of it) can use it.".into(),
                    ],
                    "Reveal",
                    Purpose::RevealToken,
                )));
            } else {
                m.form.revealed = false;
                if let Some(f) = m
                    .form
                    .fields
                    .iter_mut()
                    .find(|f| f.kind == FieldKind::Token)
                {
                    f.input.set_mask_char('•');
                }
            }
        }
        _ => {}
    }
    Vec::new()
}

/// Keys while a Connect field is edited: everything goes to the textarea except
/// esc (done), enter / up / down / backtab (move), tab (complete or move).
fn edit_key(m: &mut Model, k: KeyEvent) -> Vec<Effect> {
    let n = m.form.fields.len();
    let before = m.form.fields[m.form.focus].value();
    let focus = m.form.focus;
    match k.code {
        KeyCode::Esc => m.form.editing = false,
        KeyCode::Enter | KeyCode::Down => m.form.focus = (focus + 1).min(n - 1),
        KeyCode::Up | KeyCode::BackTab => m.form.focus = focus.saturating_sub(1),
        KeyCode::Tab => {
            if !m.form.complete() {
                m.form.focus = (focus + 1).min(n - 1);
            }
        }
        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
            m.form.editing = false;
        }
        _ => {
            m.form.fields[focus].input.input(k);
        }
    }
    m.form.validate_all();
    let after = m.form.fields[focus].value();
    if m.form.fields[focus].kind == FieldKind::Kubeconfig
        && before != after
        && let Some(c) = m.form.cluster_of(focus)
    {
        if std::path::Path::new(&after).is_file() {
            return vec![Effect::LoadContexts {
                cluster: c,
                path: PathBuf::from(after),
            }];
        }
        m.form.contexts[c].clear();
    }
    Vec::new()
}

fn steps_action(m: &mut Model, a: Action, page: usize) -> Vec<Effect> {
    let vis = m.visible_steps();
    if is_move(a) {
        m.steps_sel = move_sel(m.steps_sel, vis.len(), a, page);
        return Vec::new();
    }
    let sel = m.selected_step();
    match a {
        Action::Preview => {
            if let Some(row) = sel {
                m.dialog = Some(Dialog::Preview { row, scroll: 0 });
            }
        }
        Action::ApplyStep => {
            if let Some(row) = sel {
                ask_apply_step(m, row);
            }
        }
        Action::Rollback => {
            if let Some(row) = sel {
                ask_rollback_step(m, row);
            }
        }
        Action::ApplyWalk | Action::ApplyAll => {
            if m.engine.is_none() {
                m.note("not connected: check the Connect screen");
                return Vec::new();
            }
            let phase = next_phase(m);
            let todo: Vec<&StepRow> = m
                .steps
                .iter()
                .filter(|r| m.cluster.as_ref().is_none_or(|c| *c == r.cluster))
                .filter(|r| r.step.phase() == phase)
                .filter(|r| r.state.remaining() || matches!(r.state, RowState::Conflict(_)))
                .filter(|r| !r.step.is_read_only() || r.step == StepId::Verify)
                .collect();
            if todo.is_empty() {
                m.note("nothing to apply: every step is present");
                return Vec::new();
            }
            let walk = a == Action::ApplyWalk;
            let mut lines = vec![if walk {
                "Each step is shown for confirmation before it runs:".to_string()
            } else {
                "This will create, in order, per cluster:".to_string()
            }];
            for r in &todo {
                let extra = match &r.state {
                    RowState::Conflict(_) if !walk => "  (conflict: skipped, decide with y)",
                    _ => "",
                };
                lines.push(format!(
                    "[{}] {}: {}{extra}",
                    r.cluster, r.step, r.preview.summary
                ));
            }
            let what = match phase {
                Phase::Vault => "Vault",
                Phase::Istio => "Istio (wire istiod)",
            };
            let title = if walk {
                format!("{what}: apply {} step(s), confirming each?", todo.len())
            } else {
                format!("{what}: apply all {} remaining step(s)?", todo.len())
            };
            m.dialog = Some(Dialog::Confirm(Confirm::new(
                title,
                lines,
                if walk { "Start" } else { "Apply all" },
                if walk {
                    Purpose::ApplyWalk
                } else {
                    Purpose::ApplyAll
                },
            )));
        }
        Action::RollbackAll => {
            m.dialog = Some(Dialog::Confirm(Confirm::new(
                "Roll back everything the wizard created?",
                vec![
                    "Undo, newest first, every object the journal says this wizard created or changed, on every cluster."
                        .into(),
                    "Objects that existed before (found, not created) are left untouched.".into(),
                ],
                "Roll back all",
                Purpose::RollbackAll,
            )));
        }
        _ => {}
    }
    Vec::new()
}

fn live_action(m: &mut Model, a: Action, page: usize) -> Vec<Effect> {
    let i = m.live.pane.idx();
    match a {
        Action::NextPane => m.live.pane = LivePane::ALL[(i + 1) % 5],
        Action::PrevPane => m.live.pane = LivePane::ALL[(i + 4) % 5],
        _ if is_move(a) => {
            let n = m.live.len(m.live.pane);
            let before = m.live.selected(m.live.pane);
            m.live.sel[i] = move_sel(before, n, a, page);
            if m.live.pane == LivePane::Mounts && m.live.sel[i] != before {
                return load_roles(m);
            }
        }
        _ => {}
    }
    Vec::new()
}

fn logs_action(m: &mut Model, a: Action, _page: usize) -> Vec<Effect> {
    let h = m.body_height().saturating_sub(3);
    match a {
        Action::Up => m.logs.scroll(-1, h),
        Action::Down => m.logs.scroll(1, h),
        Action::PageUp => m.logs.scroll(-(h as i64), h),
        Action::PageDown => m.logs.scroll(h as i64, h),
        Action::Top => {
            m.logs.autoscroll = false;
            m.logs.top = m.logs.buf.first();
        }
        Action::Bottom => {
            let end = m.logs.buf.end();
            m.logs.top = end.saturating_sub(h as u64).max(m.logs.buf.first());
        }
        Action::Autoscroll => m.logs.toggle_autoscroll(h),
        Action::Wrap => m.logs.wrap = !m.logs.wrap,
        Action::Timestamps => m.logs.timestamps = !m.logs.timestamps,
        Action::NextMatch | Action::PrevMatch => {
            if m.logs.search.is_empty() {
                m.note("no search: press / first");
            } else if !m.logs.next_match(a == Action::NextMatch, h) {
                m.note(format!("no match for {:?}", m.logs.search));
            }
        }
        Action::Container => {
            m.logs.only = match m.logs.only {
                None => Some(0),
                Some(0) => Some(1),
                _ => None,
            };
        }
        Action::SaveLogs => {
            let mut text = String::new();
            let keep = m.logs.keep();
            for (_, l) in m.logs.buf.iter_from(0) {
                if keep(l) {
                    if let Some(ts) = &l.ts {
                        text.push_str(ts);
                        text.push(' ');
                    }
                    text.push_str(super::logs::CONTAINERS[l.container as usize]);
                    text.push_str(" | ");
                    text.push_str(&l.text);
                    text.push('\n');
                }
            }
            let name = format!(
                "istiod-{}-{}.log",
                m.logs.cluster.clone().unwrap_or_default(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            );
            return vec![Effect::SaveLogs {
                path: PathBuf::from(name),
                text,
            }];
        }
        _ => {}
    }
    Vec::new()
}

/// `:` command line and `/` filter line.
fn line_key(m: &mut Model, k: KeyEvent, mut s: String, command: bool) -> Vec<Effect> {
    match k.code {
        KeyCode::Esc => {
            m.mode = Mode::Normal;
            if !command && m.screen != Screen::Logs {
                m.filter.clear();
            }
            Vec::new()
        }
        KeyCode::Enter => {
            m.mode = Mode::Normal;
            if command {
                run_command(m, s.trim())
            } else {
                if m.screen == Screen::Logs {
                    m.logs.search = s;
                    m.logs.current = None;
                    let h = m.body_height().saturating_sub(3);
                    if !m.logs.search.is_empty() && !m.logs.next_match(true, h) {
                        m.note(format!("no match for {:?}", m.logs.search));
                    }
                } else {
                    m.filter = s;
                    m.steps_sel = 0;
                }
                Vec::new()
            }
        }
        KeyCode::Backspace => {
            s.pop();
            set_line(m, s, command);
            Vec::new()
        }
        KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) => {
            s.push(c);
            set_line(m, s, command);
            Vec::new()
        }
        _ => Vec::new(),
    }
}

fn set_line(m: &mut Model, s: String, command: bool) {
    if command {
        m.mode = Mode::Command(s);
    } else {
        // Live filtering on list screens.
        if m.screen != Screen::Logs {
            m.filter = s.clone();
            m.steps_sel = 0;
        }
        m.mode = Mode::Filter(s);
    }
}

/// `:q`, `:ctx`, `:cluster NAME`, and screen names.
pub fn run_command(m: &mut Model, cmd: &str) -> Vec<Effect> {
    let mut parts = cmd.split_whitespace();
    let head = parts.next().unwrap_or("");
    let arg = parts.next();
    match head {
        "" => Vec::new(),
        "q" | "q!" | "quit" => action(m, Action::Quit),
        "ctx" | "context" | "connect" => {
            let fx = go(m, Screen::Connect);
            if let Some(c) = m
                .form
                .fields
                .iter()
                .position(|f| f.kind == FieldKind::ClusterName)
            {
                m.form.focus = c;
            }
            fx
        }
        "cluster" | "cl" => match arg {
            None | Some("all") | Some("*") => {
                m.cluster = None;
                m.note("all clusters");
                m.reqs.logs = 0;
                m.logs.cluster = None;
                if m.screen == Screen::Logs {
                    return follow_logs(m);
                }
                Vec::new()
            }
            Some(name) => {
                if m.clusters().iter().any(|c| c == name) {
                    m.cluster = Some(name.to_string());
                    m.steps_sel = 0;
                    m.note(format!("cluster {name}"));
                    if m.screen == Screen::Logs {
                        return follow_logs(m);
                    }
                } else {
                    m.note(format!(
                        "unknown cluster {name:?} (known: {})",
                        m.clusters().join(", ")
                    ));
                }
                Vec::new()
            }
        },
        "steps" | "plan" => go(m, Screen::Steps),
        "live" | "state" => go(m, Screen::Live),
        "logs" | "log" => go(m, Screen::Logs),
        "doctor" | "dr" => go(m, Screen::Doctor),
        "help" | "h" => action(m, Action::Help),
        other => {
            m.note(format!(
                "unknown command :{other} (try :ctx, :cluster NAME, :steps, :live, :logs, :doctor, :q)"
            ));
            Vec::new()
        }
    }
}

fn mouse(m: &mut Model, ev: MouseEvent) -> Vec<Effect> {
    let scroll = match ev.kind {
        MouseEventKind::ScrollDown => Some(Action::Down),
        MouseEventKind::ScrollUp => Some(Action::Up),
        _ => None,
    };
    if let Some(a) = scroll {
        m.dirty = true;
        if m.dialog.is_some() {
            let code = if a == Action::Down {
                KeyCode::Down
            } else {
                KeyCode::Up
            };
            return dialog_key(m, KeyEvent::new(code, KeyModifiers::NONE));
        }
        return screen_action(m, a, 1);
    }
    if ev.kind != MouseEventKind::Down(MouseButton::Left) || m.dialog.is_some() {
        return Vec::new();
    }
    m.dirty = true;
    // Row 0 is the tab bar.
    if ev.row == 0 {
        if let Some(s) = super::view::tab_at(ev.column) {
            return go(m, s);
        }
        return Vec::new();
    }
    let areas = super::view::areas(m, ratatui::layout::Rect::new(0, 0, m.size.0, m.size.1));
    let list = areas.list;
    if ev.row > list.y
        && ev.row < list.y + list.height.saturating_sub(1)
        && ev.column >= list.x
        && ev.column < list.x + list.width
    {
        let idx = (ev.row - list.y - 1) as usize;
        match m.screen {
            Screen::Steps => {
                let vis = m.visible_steps();
                let off = super::view::list_offset(
                    m.steps_sel,
                    vis.len(),
                    list.height.saturating_sub(2) as usize,
                );
                let target = off + idx;
                if target < vis.len() {
                    m.steps_sel = target;
                }
            }
            Screen::Doctor => {
                let n = m.doctor.rows().len();
                if idx < n {
                    m.doctor.selected = idx;
                }
            }
            Screen::Connect if idx < m.form.fields.len() => {
                m.form.focus = idx;
            }
            _ => {}
        }
    }
    Vec::new()
}

/// Doctor rows' status label.
pub fn link_label(s: LinkStatus) -> &'static str {
    match s {
        LinkStatus::Ok => "OK",
        LinkStatus::Fail => "FAIL",
        LinkStatus::Skipped => "SKIP",
    }
}

/// `A` and the walk work one phase at a time: the Vault phase until nothing of it
/// remains, then the Istio phase (injector, istiod, verify).
fn next_phase(m: &Model) -> Phase {
    let vault_left = m
        .steps
        .iter()
        .filter(|r| m.cluster.as_ref().is_none_or(|c| *c == r.cluster))
        .filter(|r| r.step.phase() == Phase::Vault && !r.step.is_read_only())
        .any(|r| r.state.remaining() || matches!(r.state, RowState::Conflict(_)));
    if vault_left {
        Phase::Vault
    } else {
        Phase::Istio
    }
}
