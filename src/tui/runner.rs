//! Runs `Effect`s as cancellable tokio tasks that answer with `Msg`s (request ids let
//! `update` drop stale answers). Holds task handles only, never the model.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::certinfo;
use super::logs::{CONTAINERS, LogLine};
use super::model::{
    DeciderMode, Effect, EngineHandle, KubeInfo, KubeObjects, KvRow, LiveData, MountRow, Msg,
    PodRow, PolicyRow, Question, RoleRow, VaultInfo,
};
use crate::config::Config;
use crate::doctor::{DoctorTarget, diagnose};
use crate::plan::engine::{Decider, Engine, RunOptions};
use crate::plan::{Decision, Preview, StepId, StepState};
use crate::vault::VaultTarget;

pub type Tx = mpsc::UnboundedSender<Msg>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Connect,
    Plan,
    Run,
    Live,
    Roles,
    Doctor,
    Logs,
    Other,
}

pub struct Runner {
    tx: Tx,
    tasks: HashMap<Kind, JoinHandle<()>>,
}

impl Runner {
    pub fn new(tx: Tx) -> Self {
        Self {
            tx,
            tasks: HashMap::new(),
        }
    }

    /// Starts a task of a kind, cancelling the previous one of that kind (runs are never
    /// cancelled by a new request: `update` refuses a second run).
    fn spawn(&mut self, kind: Kind, fut: impl Future<Output = ()> + Send + 'static) {
        let h = tokio::spawn(fut);
        if kind == Kind::Other {
            return;
        }
        if let Some(old) = self.tasks.insert(kind, h)
            && kind != Kind::Run
        {
            old.abort();
        }
    }

    /// Stops everything (on quit).
    pub fn shutdown(&mut self) {
        for (_, h) in self.tasks.drain() {
            h.abort();
        }
    }

    pub fn run(&mut self, fx: Effect) {
        let tx = self.tx.clone();
        let detached = match &fx {
            Effect::Plan { engine, .. }
            | Effect::Apply { engine, .. }
            | Effect::Rollback { engine, .. }
            | Effect::RefreshLive { engine, .. }
            | Effect::LoadRoles { engine, .. }
            | Effect::Doctor { engine, .. }
            | Effect::FollowLogs { engine, .. } => engine.get().is_none(),
            _ => false,
        };
        if detached {
            return;
        }
        match fx {
            Effect::Connect { req, config } => self.spawn(Kind::Connect, connect(req, *config, tx)),
            Effect::Plan { req, engine } => self.spawn(Kind::Plan, async move {
                let result = engine
                    .get()
                    .expect("attached")
                    .plan(&RunOptions {
                        istio: true,
                        ..RunOptions::default()
                    })
                    .await
                    .map_err(|e| e.to_string());
                let _ = tx.send(Msg::Planned { req, result });
            }),
            Effect::Apply {
                req,
                engine,
                opts,
                mode,
            } => self.spawn(Kind::Run, async move {
                let (etx, mut erx) = mpsc::unbounded_channel();
                let fwd = {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        while let Some(event) = erx.recv().await {
                            let _ = tx.send(Msg::Engine { req, event });
                        }
                    })
                };
                let decider = Arc::new(TuiDecider {
                    tx: tx.clone(),
                    mode,
                });
                let result = engine
                    .get()
                    .expect("attached")
                    .apply(&opts, decider, Some(etx))
                    .await
                    .map_err(|e| e.to_string());
                let _ = fwd.await;
                let _ = tx.send(Msg::RunFinished { req, result });
            }),
            Effect::Rollback { req, engine, only } => self.spawn(Kind::Run, async move {
                let (etx, mut erx) = mpsc::unbounded_channel();
                let fwd = {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        while let Some(event) = erx.recv().await {
                            let _ = tx.send(Msg::Engine { req, event });
                        }
                    })
                };
                let only_ref = only.as_ref().map(|(c, s)| (c.as_str(), *s));
                let result = engine
                    .get()
                    .expect("attached")
                    .rollback(only_ref, Some(etx))
                    .await
                    .map_err(|e| e.to_string());
                let _ = fwd.await;
                let _ = tx.send(Msg::RunFinished { req, result });
            }),
            Effect::RefreshLive { req, engine } => self.spawn(Kind::Live, async move {
                let data = live(engine.get().expect("attached")).await;
                let _ = tx.send(Msg::Live {
                    req,
                    data: Box::new(data),
                });
            }),
            Effect::LoadRoles { req, engine, mount } => self.spawn(Kind::Roles, async move {
                let result = roles(&engine.get().expect("attached").vault, &mount).await;
                let _ = tx.send(Msg::Roles { req, mount, result });
            }),
            Effect::Doctor { req, engine } => self.spawn(Kind::Doctor, async move {
                let targets: Vec<DoctorTarget> = engine
                    .get()
                    .expect("attached")
                    .ctxs
                    .iter()
                    .map(|c| DoctorTarget {
                        cluster: c.cluster.clone(),
                        kube: c.kube.clone(),
                        vault: engine.get().expect("attached").vault.clone(),
                        kv_version: engine.get().expect("attached").config.kv_version,
                        istio: engine.get().expect("attached").config.istio.clone(),
                    })
                    .collect();
                let d = futures::future::join_all(targets.iter().map(diagnose)).await;
                let _ = tx.send(Msg::Doctor { req, result: Ok(d) });
            }),
            Effect::FollowLogs {
                req,
                engine,
                cluster,
            } => self.spawn(Kind::Logs, follow_logs(req, engine, cluster, tx)),
            Effect::Answer { reply, decision } => {
                let _ = reply.send(decision);
            }
            Effect::LoadContexts { cluster, path } => self.spawn(Kind::Other, async move {
                let result =
                    tokio::task::spawn_blocking(move || super::connect::read_contexts(&path))
                        .await
                        .unwrap_or_else(|e| Err(e.to_string()));
                let _ = tx.send(Msg::Contexts { cluster, result });
            }),
            Effect::SaveConfig { path, text } => self.spawn(Kind::Other, async move {
                let result = write_file(&path, &text).map(|_| path.clone());
                let _ = tx.send(Msg::Saved {
                    what: "the config".into(),
                    result,
                });
            }),
            Effect::SaveLogs { path, text } => self.spawn(Kind::Other, async move {
                let result = write_file(&path, &text).map(|_| path.clone());
                let _ = tx.send(Msg::Saved {
                    what: "the logs".into(),
                    result,
                });
            }),
            Effect::Quit => self.shutdown(),
        }
    }
}

fn write_file(path: &std::path::Path, text: &str) -> Result<(), String> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| e.to_string())?;
    std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(|e| e.to_string())?;
    tmp.persist(path).map_err(|e| e.to_string())?;
    Ok(())
}

/// The engine asks the operator through the UI: a `Msg::Ask` and a oneshot back.
struct TuiDecider {
    tx: Tx,
    mode: DeciderMode,
}

#[async_trait]
impl Decider for TuiDecider {
    async fn confirm(
        &self,
        cluster: &str,
        step: StepId,
        state: &StepState,
        preview: &Preview,
    ) -> Decision {
        match self.mode {
            DeciderMode::Approved { overwrite } => match state {
                StepState::Absent => Decision::Apply,
                StepState::Conflict { .. } if overwrite => Decision::Apply,
                _ => Decision::Skip,
            },
            DeciderMode::Ask => {
                let (reply, rx) = oneshot::channel();
                let q = Question {
                    cluster: cluster.to_string(),
                    step,
                    state: state.clone(),
                    preview: preview.clone(),
                    reply,
                };
                if self.tx.send(Msg::Ask(q)).is_err() {
                    return Decision::Abort;
                }
                rx.await.unwrap_or(Decision::Abort)
            }
        }
    }
}

async fn connect(req: u64, config: Config, tx: Tx) {
    let vault_probe = {
        let tx = tx.clone();
        let settings = config.vault.clone();
        async move {
            let result = probe_vault(settings).await;
            let _ = tx.send(Msg::VaultProbe { req, result });
        }
    };
    let kube_probes = config.clusters.iter().map(|c| {
        let tx = tx.clone();
        let c = c.clone();
        async move {
            let result = probe_kube(&c).await;
            let _ = tx.send(Msg::KubeProbe {
                req,
                cluster: c.name.clone(),
                result,
            });
        }
    });
    let engine = async {
        match tokio::time::timeout(
            Duration::from_secs(30),
            Engine::connect(config.clone(), &RunOptions::default()),
        )
        .await
        {
            Ok(Ok(e)) => Ok(EngineHandle::new(e)),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out after 30 s".to_string()),
        }
    };
    let (_, _, result) = tokio::join!(vault_probe, futures::future::join_all(kube_probes), engine);
    let _ = tx.send(Msg::EngineReady { req, result });
}

async fn probe_vault(settings: crate::vault::VaultSettings) -> Result<VaultInfo, String> {
    let address = settings.address.clone();
    let v = VaultTarget::connect(settings).map_err(|e| e.to_string())?;
    let seal = v.seal_status().await.map_err(|e| e.to_string())?;
    let who = if seal.sealed {
        Err("sealed".to_string())
    } else {
        v.lookup_self()
            .await
            .map(|t| format!("{} (policies {})", t.display_name, t.policies.join(", ")))
            .map_err(|e| e.to_string())
    };
    Ok(VaultInfo {
        address,
        version: seal.version,
        sealed: seal.sealed,
        initialized: seal.initialized,
        who,
    })
}

async fn probe_kube(c: &crate::config::ClusterConfig) -> Result<KubeInfo, String> {
    let k = crate::kube::connect(c.kubeconfig.as_deref(), c.context.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    let version = k.server_version().await.map_err(|e| e.to_string())?;
    let ns = c.names.namespace.as_str();
    let checks = [
        ("namespaces", "", None),
        ("serviceaccounts", "", Some(ns)),
        ("secrets", "", Some(ns)),
        ("clusterrolebindings", "rbac.authorization.k8s.io", None),
    ];
    let mut can_create = Vec::new();
    for (res, group, in_ns) in checks {
        let r = crate::kube::can_i(&k, "create", group, res, in_ns)
            .await
            .map_err(|e| e.to_string());
        can_create.push((res.to_string(), r));
    }
    Ok(KubeInfo {
        api_url: k.api_url.clone(),
        context: k.context.clone(),
        version,
        can_create,
    })
}

async fn roles(v: &VaultTarget, mount: &str) -> Result<Vec<RoleRow>, String> {
    let names = v.list_roles(mount).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for n in names {
        let r = v.read_role(mount, &n).await.map_err(|e| e.to_string())?;
        let j = |k: &str| -> String {
            r.as_ref()
                .map(|r| match &r[k] {
                    serde_json::Value::Array(a) => a
                        .iter()
                        .map(|x| {
                            x.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| x.to_string())
                        })
                        .collect::<Vec<_>>()
                        .join(","),
                    serde_json::Value::Null => "-".into(),
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_default()
        };
        let policies = {
            let p = j("token_policies");
            if p.is_empty() || p == "-" {
                j("policies")
            } else {
                p
            }
        };
        out.push(RoleRow {
            name: n.clone(),
            sa_names: j("bound_service_account_names"),
            namespaces: j("bound_service_account_namespaces"),
            policies,
            ttl: {
                let t = j("token_ttl");
                if t.is_empty() || t == "-" {
                    j("ttl")
                } else {
                    t
                }
            },
        });
    }
    Ok(out)
}

/// KV fields whose values are private: only present / absent is reported.
const PRIVATE_FIELDS: [&str; 1] = ["ca_key"];
const CERT_FIELDS: [&str; 3] = ["ca_cert", "cert_chain", "root_cert"];

async fn live(e: &Engine) -> LiveData {
    let v = &e.vault;
    let mut d = LiveData::default();
    match v.list_auth_mounts().await {
        Ok(ms) => d.mounts = ms.into_iter().map(MountRow::from).collect(),
        Err(err) => d.errors.push(format!("auth mounts: {err}")),
    }
    match v.list_secret_mounts().await {
        Ok(ms) => d.secret_mounts = ms.into_iter().map(MountRow::from).collect(),
        Err(err) => d.errors.push(format!("secret mounts: {err}")),
    }
    match v.list_policies().await {
        Ok(names) => {
            for n in names {
                let text = v.read_policy(&n).await.ok().flatten().unwrap_or_default();
                d.policies.push(PolicyRow { name: n, text });
            }
        }
        Err(err) => d.errors.push(format!("policies: {err}")),
    }
    let now = time::OffsetDateTime::now_utc();
    for ctx in &e.ctxs {
        let n = ctx.names();
        let mut row = KvRow {
            cluster: ctx.name().to_string(),
            mount: n.kv_mount.clone(),
            path: n.secret_path.clone(),
            keys: Vec::new(),
            certs: Vec::new(),
            error: None,
        };
        match v
            .kv_read(&n.kv_mount, &n.secret_path, e.config.kv_version, None)
            .await
        {
            Ok(Some(s)) => {
                for f in PRIVATE_FIELDS.iter().chain(CERT_FIELDS.iter()) {
                    row.keys
                        .push((f.to_string(), s.data.get(*f).is_some_and(|x| !x.is_empty())));
                }
                for f in CERT_FIELDS {
                    if let Some(pem) = s.data.get(f) {
                        match certinfo::inspect(f, pem, now) {
                            Ok(c) => row.certs.extend(c),
                            Err(err) => row.error = Some(err),
                        }
                    }
                }
                // `s` (with the private key) is dropped here; nothing of it is kept.
            }
            Ok(None) => row.error = Some("secret absent".into()),
            Err(err) => row.error = Some(err.to_string()),
        }
        d.kv.push(row);
        d.kube.push(kube_objects(ctx).await);
    }
    d
}

async fn kube_objects(ctx: &crate::plan::steps::ClusterCtx) -> KubeObjects {
    let k = &ctx.kube;
    let n = ctx.names();
    let mut o = KubeObjects {
        cluster: ctx.name().to_string(),
        objects: Vec::new(),
        istiod: None,
        pods: Vec::new(),
        error: None,
    };
    let present = |r: Result<bool, String>| match r {
        Ok(true) => Ok("present".to_string()),
        Ok(false) => Err("absent".to_string()),
        Err(e) => Err(e),
    };
    let ns = k
        .get_namespace(&n.namespace)
        .await
        .map(|x| x.is_some())
        .map_err(|e| e.to_string());
    if let Err(e) = &ns
        && e.contains("connect")
    {
        o.error = Some(e.clone());
        return o;
    }
    o.objects
        .push(("Namespace".into(), n.namespace.clone(), present(ns)));
    let sa = k
        .get_service_account(&n.namespace, &n.service_account)
        .await
        .map(|x| x.is_some())
        .map_err(|e| e.to_string());
    o.objects.push((
        "ServiceAccount".into(),
        n.service_account.clone(),
        present(sa),
    ));
    let secret = match k.get_secret(&n.namespace, &n.token_secret).await {
        Ok(Some(s)) => {
            if crate::kube::token_of(&s).is_some() {
                Ok("present, token: yes".to_string())
            } else {
                Err("present, token: NO".to_string())
            }
        }
        Ok(None) => Err("absent".to_string()),
        Err(e) => Err(e.to_string()),
    };
    o.objects
        .push(("Secret (token)".into(), n.token_secret.clone(), secret));
    let crb = k
        .get_cluster_role_binding(&n.reviewer_binding)
        .await
        .map(|x| x.is_some())
        .map_err(|e| e.to_string());
    o.objects.push((
        "ClusterRoleBinding".into(),
        n.reviewer_binding.clone(),
        present(crb),
    ));
    // The injector is cluster-wide: its webhook and its Deployment, in any namespace.
    let injector = match crate::kube::workloads::find_vault_injector(k).await {
        Ok(f) if f.complete() => Ok(format!(
            "webhook {}, Deployment {} ({} ready)",
            f.webhook.unwrap_or_default(),
            f.deployment.unwrap_or_default(),
            f.ready
        )),
        Ok(f) if f.nothing() => Err("absent".to_string()),
        Ok(f) => Err(format!(
            "partial: webhook {}, Deployment {}",
            f.webhook.as_deref().unwrap_or("none"),
            f.deployment.as_deref().unwrap_or("none")
        )),
        Err(e) => Err(e.to_string()),
    };
    o.objects.push((
        "Vault Injector".into(),
        "webhook + Deployment".into(),
        injector,
    ));
    match crate::kube::istiod_deployment(k, &n.namespace).await {
        Ok(Some(d)) => {
            let name = d.metadata.name.clone().unwrap_or_default();
            let st = d.status.as_ref();
            let ready = st.and_then(|s| s.ready_replicas).unwrap_or(0);
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            o.istiod = Some(format!("{name} {ready}/{want} ready"));
        }
        Ok(None) => {}
        Err(e) => o.istiod = Some(format!("? {e}")),
    }
    if let Ok(pods) = istiod_pods(k, &n.namespace).await {
        o.pods = pods.iter().map(pod_row).collect();
    }
    o
}

async fn istiod_pods(k: &crate::kube::KubeTarget, ns: &str) -> Result<Vec<Pod>, String> {
    let api: ::kube::Api<Pod> = ::kube::Api::namespaced(k.client.clone(), ns);
    let lp = ::kube::api::ListParams::default().labels("app=istiod");
    api.list(&lp)
        .await
        .map(|l| l.items)
        .map_err(|e| e.to_string())
}

fn container_state(s: Option<&k8s_openapi::api::core::v1::ContainerState>) -> String {
    match s {
        Some(s) if s.running.is_some() => "running".into(),
        Some(s) if s.terminated.is_some() => {
            let t = s
                .terminated
                .as_ref()
                .map(|t| (t.exit_code, t.reason.clone()));
            match t {
                Some((code, reason)) => format!(
                    "terminated (exit {code}{})",
                    reason.map(|r| format!(", {r}")).unwrap_or_default()
                ),
                None => "terminated".into(),
            }
        }
        Some(s) => s
            .waiting
            .as_ref()
            .and_then(|w| w.reason.clone())
            .map(|r| format!("waiting ({r})"))
            .unwrap_or_else(|| "waiting".into()),
        None => "unknown".into(),
    }
}

fn pod_row(p: &Pod) -> PodRow {
    let st = p.status.as_ref();
    let spec = p.spec.as_ref();
    let statuses = |list: Option<&Vec<k8s_openapi::api::core::v1::ContainerStatus>>,
                    names: Vec<String>| {
        names
            .into_iter()
            .map(|n| {
                let s = list
                    .and_then(|l| l.iter().find(|c| c.name == n))
                    .map(|c| container_state(c.state.as_ref()))
                    .unwrap_or_else(|| "not started".into());
                (n, s)
            })
            .collect::<Vec<_>>()
    };
    let init_names = spec
        .and_then(|s| s.init_containers.as_ref())
        .map(|v| v.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    let names = spec
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    PodRow {
        name: p.metadata.name.clone().unwrap_or_default(),
        phase: st.and_then(|s| s.phase.clone()).unwrap_or_default(),
        init: statuses(
            st.and_then(|s| s.init_container_statuses.as_ref()),
            init_names,
        ),
        containers: statuses(st.and_then(|s| s.container_statuses.as_ref()), names),
    }
}

/// Follows `vault-agent-init` and `discovery` of the istiod pod: batches lines, reconnects
/// with back-off, asking for an overlap (`since_seconds`) and skipping lines already seen.
async fn follow_logs(req: u64, engine: EngineHandle, cluster: String, tx: Tx) {
    let Some(ctx) = engine
        .get()
        .expect("attached")
        .ctxs
        .iter()
        .find(|c| c.name() == cluster)
        .cloned()
    else {
        let _ = tx.send(Msg::LogStatus {
            req,
            pod: None,
            status: format!("unknown cluster {cluster}"),
        });
        return;
    };
    let ns = ctx.names().namespace.clone();
    let mut backoff = Duration::from_secs(1);
    loop {
        let pods = istiod_pods(&ctx.kube, &ns).await;
        let pod = match pods {
            Ok(p) => p.into_iter().find_map(|p| p.metadata.name),
            Err(e) => {
                let _ = tx.send(Msg::LogStatus {
                    req,
                    pod: None,
                    status: format!("cannot list pods: {e}; retry in {}s", backoff.as_secs()),
                });
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        let Some(pod) = pod else {
            let _ = tx.send(Msg::LogStatus {
                req,
                pod: None,
                status: format!("no istiod pod in {ns} on {cluster} (looking again every 10s)"),
            });
            tokio::time::sleep(Duration::from_secs(10)).await;
            continue;
        };
        let _ = tx.send(Msg::LogStatus {
            req,
            pod: Some(pod.clone()),
            status: format!("following {pod}"),
        });
        let api: ::kube::Api<Pod> = ::kube::Api::namespaced(ctx.kube.client.clone(), &ns);
        let streams = CONTAINERS
            .iter()
            .enumerate()
            .map(|(i, c)| follow_container(req, api.clone(), pod.clone(), i as u8, c, tx.clone()));
        futures::future::join_all(streams).await;
        backoff = Duration::from_secs(1);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn follow_container(
    req: u64,
    api: ::kube::Api<Pod>,
    pod: String,
    idx: u8,
    container: &'static str,
    tx: Tx,
) {
    let mut last: Option<(String, String)> = None;
    let mut last_at = std::time::Instant::now();
    let mut backoff = Duration::from_secs(1);
    for attempt in 0..1000u32 {
        let mut lp = ::kube::api::LogParams {
            container: Some(container.to_string()),
            follow: true,
            timestamps: true,
            ..Default::default()
        };
        if last.is_some() {
            // Overlap: ask for a few seconds before the last line; duplicates are skipped.
            lp.since_seconds = Some(last_at.elapsed().as_secs() as i64 + 5);
        } else {
            lp.tail_lines = Some(10_000);
        }
        let stream = match api.log_stream(&pod, &lp).await {
            Ok(s) => s,
            Err(e) => {
                let text = e.to_string();
                if text.contains("not found") || text.contains("404") {
                    return;
                }
                if attempt > 0 {
                    let _ = tx.send(Msg::LogStatus {
                        req,
                        pod: Some(pod.clone()),
                        status: format!("{container}: {text}; reconnect in {}s", backoff.as_secs()),
                    });
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        let mut lines = stream.lines();
        let mut batch: Vec<LogLine> = Vec::new();
        let mut flush = tokio::time::interval(Duration::from_millis(50));
        let mut got = false;
        loop {
            tokio::select! {
                next = lines.next() => match next {
                    Some(Ok(raw)) => {
                        let l = LogLine::parse(idx, &raw);
                        if let (Some((lts, ltext)), Some(ts)) = (&last, &l.ts)
                            && (ts < lts || (ts == lts && *ltext == l.text))
                        {
                            continue;
                        }
                        if let Some(ts) = &l.ts {
                            last = Some((ts.clone(), l.text.clone()));
                        } else {
                            last = Some((String::new(), l.text.clone()));
                        }
                        last_at = std::time::Instant::now();
                        got = true;
                        batch.push(l);
                        if batch.len() >= 1024 {
                            let _ = tx.send(Msg::LogLines { req, lines: std::mem::take(&mut batch) });
                        }
                    }
                    _ => break,
                },
                _ = flush.tick() => {
                    if !batch.is_empty() {
                        let _ = tx.send(Msg::LogLines { req, lines: std::mem::take(&mut batch) });
                    }
                }
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(Msg::LogLines { req, lines: batch });
        }
        if got {
            backoff = Duration::from_secs(1);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}
