//! The Istio phase (`wire`): the Vault agent injector, istiod's values (server-side apply
//! to an existing Deployment, or helm), and the verification that istiod runs on the CA in
//! Vault. Same `Step` interface and journal as the Vault phase, so `rollback` undoes these
//! too, newest first.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};

use super::journal::{Action, JournalEntry};
use super::steps::{Applied, ClusterCtx, Step};
use super::{Preview, StepError, StepId, StepState};
use crate::config::{IstioSection, WireMode};
use crate::istio::helm::{Helm, HelmError, Install};
use crate::istio::{
    CaVerdict, ChartStyle, DEFAULT_SECRET_DIR, ExpectedCert, GATEWAY_FILES, GatewayWiring,
    IstiodWiring, LogStatus, LogSummary, compare_with_vault, gateway_annotations, patch,
    pod_annotations, recognise, summarise_for, values_yaml,
};
use crate::kube::workloads::{
    Rollout, container_names, container_started, current_pod, find_vault_injector, follow_logs,
    get_deployment, waiting_reasons,
};
use crate::vault::{kv_api_path, string_list};

/// What the Istio steps need beyond the Vault phase's context.
#[derive(Debug, Clone)]
pub struct IstioCtx {
    pub settings: IstioSection,
    pub state_dir: PathBuf,
    /// The address the injected agents use to reach Vault (`global.externalVaultAddr`).
    pub vault_address: String,
    /// Read istiod's log from this file instead of its pod: istiod run outside a cluster,
    /// or a log saved with `kubectl logs`.
    pub istiod_log: Option<PathBuf>,
    /// The directory istiod is expected to read its CA from, when not the injector's
    /// `/vault/secrets` (istiod outside a cluster with its own ROOT_CA_DIR).
    pub root_ca_dir: Option<String>,
}

impl ClusterCtx {
    fn helm(&self) -> Helm {
        Helm::new(
            &self.istio.settings.helm,
            self.cluster.kubeconfig.as_deref(),
            Some(&self.kube.context),
        )
    }
    fn wiring(&self) -> IstiodWiring {
        crate::istio::wiring_for(&self.cluster, self.kv_version)
    }
    /// Where verify expects istiod to read its CA.
    fn expected_ca_dir(&self) -> String {
        self.istio
            .root_ca_dir
            .clone()
            .unwrap_or_else(|| self.wiring().root_ca_dir)
    }
    fn chart_style(&self) -> ChartStyle {
        ChartStyle::for_version(&self.istio.settings.version)
    }
    fn values_file(&self) -> PathBuf {
        self.istio
            .state_dir
            .join("values")
            .join(format!("{}.yaml", self.name()))
    }
}

/// When helm or a chart is missing, the step stops with the exact commands to run
/// (preceded by the `helm repo add` a missing well-known repository needs).
fn operator_must_run(helm: &Helm, why: &HelmError, commands: &[String]) -> StepError {
    let lines: Vec<String> = why
        .repo_setup(helm)
        .into_iter()
        .chain(commands.iter().cloned())
        .collect();
    StepError::Blocked(format!(
        "{why}; run this yourself, then apply again:\n  {}",
        lines.join("\n  ")
    ))
}

// ---------------------------------------------------------------- injector
pub struct InjectorStep;

impl InjectorStep {
    fn install(ctx: &ClusterCtx) -> Install<'_> {
        crate::istio::helm::injector_install(&ctx.istio.settings, &ctx.istio.vault_address)
    }
    fn command(ctx: &ClusterCtx) -> String {
        let h = ctx.helm();
        h.command_line(&h.upgrade_install_args(&Self::install(ctx)))
    }
}

#[async_trait]
impl Step for InjectorStep {
    fn id(&self) -> StepId {
        StepId::Injector
    }
    fn title(&self, _: &ClusterCtx) -> String {
        "Vault agent injector (webhook and Deployment)".into()
    }
    fn resource(&self, ctx: &ClusterCtx) -> String {
        let s = &ctx.istio.settings;
        format!(
            "helm release {}/{}",
            s.injector_namespace, s.injector_release
        )
    }
    fn refusal(&self, _: &ClusterCtx, what: &str) -> String {
        format!(
            "a partial Vault agent injector is installed ({what}); repair or remove it, the wizard does not install a second one"
        )
    }
    async fn check(&self, ctx: &ClusterCtx) -> Result<StepState, StepError> {
        let found = find_vault_injector(&ctx.kube).await?;
        Ok(match (&found.webhook, &found.deployment) {
            (Some(_), Some(_)) => StepState::Matches,
            (None, None) => StepState::Absent,
            (Some(w), None) => StepState::Conflict {
                what: format!(
                    "MutatingWebhookConfiguration {w} exists but no injector Deployment serves it"
                ),
            },
            (None, Some(d)) => StepState::Conflict {
                what: format!("Deployment {d} exists but no MutatingWebhookConfiguration calls it"),
            },
        })
    }
    fn preview(&self, ctx: &ClusterCtx, state: &StepState) -> Preview {
        let s = &ctx.istio.settings;
        Preview {
            summary: match state {
                StepState::Matches => "the Vault agent injector is installed".into(),
                StepState::Absent => format!(
                    "install the Vault agent injector (chart {}) pointing at {}",
                    s.injector_chart, ctx.istio.vault_address
                ),
                StepState::Conflict { what } => what.clone(),
                StepState::Blocked { reason } => reason.clone(),
            },
            changes: match state {
                StepState::Absent => vec![
                    format!(
                        "+ helm release {}/{}",
                        s.injector_namespace, s.injector_release
                    ),
                    "+ MutatingWebhookConfiguration and injector Deployment (from the chart)"
                        .into(),
                ],
                _ => vec![],
            },
            diff: None,
            commands: vec![Self::command(ctx)],
        }
    }
    async fn apply(
        &self,
        ctx: &ClusterCtx,
        _: &StepState,
        progress: &(dyn Fn(String) + Sync),
    ) -> Result<Applied, StepError> {
        let helm = ctx.helm();
        let s = &ctx.istio.settings;
        let commands = [Self::command(ctx)];
        helm.version()
            .await
            .map_err(|e| operator_must_run(&helm, &e, &commands))?;
        progress(format!("checking chart {}", s.injector_chart));
        helm.chart_reachable(&s.injector_chart)
            .await
            .map_err(|e| operator_must_run(&helm, &e, &commands))?;
        if let Some(r) = helm
            .release(&s.injector_release, &s.injector_namespace)
            .await?
        {
            return Err(StepError::Conflict(format!(
                "helm release {}/{} already exists (chart {}, status {}) but no injector answers; fix or uninstall it",
                r.namespace, r.name, r.chart, r.status
            )));
        }
        progress(format!("helm upgrade --install {}", s.injector_release));
        helm.upgrade_install(&Self::install(ctx)).await?;
        let r = helm
            .release(&s.injector_release, &s.injector_namespace)
            .await?
            .ok_or_else(|| {
                StepError::Verify("helm reported success but lists no release".into())
            })?;
        Ok(Applied {
            fingerprint: None,
            previous: json!({
                "release": r.name,
                "namespace": r.namespace,
                "chart": r.chart,
                "revision": r.revision,
            }),
            modified: false,
        })
    }
    async fn rollback(&self, ctx: &ClusterCtx, entry: &JournalEntry) -> Result<(), StepError> {
        if entry.action != Action::Created {
            return Ok(());
        }
        let release = entry.previous["release"].as_str().unwrap_or_default();
        let ns = entry.previous["namespace"].as_str().unwrap_or_default();
        if release.is_empty() || ns.is_empty() {
            return Ok(());
        }
        let helm = ctx.helm();
        if helm.release(release, ns).await?.is_some() {
            helm.uninstall(release, ns).await?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- istiod
pub struct IstiodStep;

use crate::istio::helm::{BASE_RELEASE, ISTIOD_RELEASE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Patch,
    Helm,
}

async fn route(ctx: &ClusterCtx) -> Result<(Route, Option<Deployment>), StepError> {
    let d = crate::kube::istiod_deployment(&ctx.kube, &ctx.names().namespace).await?;
    let route = match (ctx.istio.settings.mode, &d) {
        (WireMode::Helm, _) | (WireMode::Auto, None) => Route::Helm,
        _ => Route::Patch,
    };
    Ok((route, d))
}

impl IstiodStep {
    fn base_install(ctx: &ClusterCtx) -> Install<'_> {
        crate::istio::helm::istio_base_install(&ctx.istio.settings, &ctx.names().namespace)
    }
    fn istiod_install(ctx: &ClusterCtx, reuse_values: bool) -> Install<'_> {
        crate::istio::helm::istiod_install(
            &ctx.istio.settings,
            &ctx.names().namespace,
            ctx.values_file(),
            reuse_values,
        )
    }
    fn helm_commands(ctx: &ClusterCtx) -> Vec<String> {
        let h = ctx.helm();
        vec![
            h.command_line(&h.upgrade_install_args(&Self::base_install(ctx))),
            h.command_line(&h.upgrade_install_args(&Self::istiod_install(ctx, false))),
        ]
    }
    fn ssa_command(ctx: &ClusterCtx, d: Option<&Deployment>) -> String {
        let name = d
            .and_then(|d| d.metadata.name.clone())
            .unwrap_or_else(|| "istiod".into());
        let mut ann = serde_yaml::Mapping::new();
        for (k, v) in pod_annotations(&ctx.wiring()) {
            ann.insert(k.into(), v.into());
        }
        let body = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": { "name": name, "namespace": ctx.names().namespace },
            "spec": { "template": {
                "metadata": { "annotations": ann },
                "spec": { "containers": [{ "name": "discovery", "env": [{ "name": "ROOT_CA_DIR", "value": ctx.wiring().root_ca_dir }] }] }
            } }
        });
        format!(
            "{} apply --server-side --field-manager={} -f - <<'EOF'\n{}EOF",
            ctx.kubectl(),
            patch::FIELD_MANAGER,
            serde_yaml::to_string(&body).unwrap_or_default()
        )
    }
}

#[async_trait]
impl Step for IstiodStep {
    fn id(&self) -> StepId {
        StepId::Istiod
    }
    fn title(&self, ctx: &ClusterCtx) -> String {
        format!(
            "istiod reads its CA from {} (annotations and ROOT_CA_DIR)",
            ctx.wiring().root_ca_dir
        )
    }
    fn resource(&self, ctx: &ClusterCtx) -> String {
        format!("istiod in {}", ctx.names().namespace)
    }
    fn can_overwrite(&self, _: &ClusterCtx) -> bool {
        true
    }
    async fn check(&self, ctx: &ClusterCtx) -> Result<StepState, StepError> {
        let (route, d) = route(ctx).await?;
        let Some(d) = d else {
            return Ok(if route == Route::Patch {
                StepState::Blocked {
                    reason: format!(
                        "no istiod Deployment in {} to patch: install istiod, or set [istio] mode = \"helm\"",
                        ctx.names().namespace
                    ),
                }
            } else {
                StepState::Absent
            });
        };
        let plan = patch::plan(&d, &ctx.wiring());
        Ok(if plan.is_noop() {
            StepState::Matches
        } else if plan.conflicts.is_empty() {
            StepState::Absent
        } else {
            StepState::Conflict {
                what: plan.conflicts.join("; "),
            }
        })
    }
    fn preview(&self, ctx: &ClusterCtx, state: &StepState) -> Preview {
        let w = ctx.wiring();
        let mut changes: Vec<String> = pod_annotations(&w)
            .keys()
            .map(|k| format!("+ pod annotation {k}"))
            .collect();
        changes.push(format!("+ env ROOT_CA_DIR={}", w.root_ca_dir));
        let patching = ctx.istio.settings.mode == WireMode::Patch;
        Preview {
            summary: match state {
                StepState::Matches => "istiod's pod template carries the Vault wiring".into(),
                StepState::Absent if patching => {
                    "add the Vault injector annotations and ROOT_CA_DIR to istiod by server-side apply".into()
                }
                StepState::Absent => format!(
                    "install or upgrade istiod with helm and the generated values ({})",
                    ctx.values_file().display()
                ),
                StepState::Conflict { what } => {
                    format!("istiod sets some of these fields to other values: {what}")
                }
                StepState::Blocked { reason } => reason.clone(),
            },
            changes: if matches!(state, StepState::Matches | StepState::Blocked { .. }) {
                vec![]
            } else {
                changes
            },
            diff: match state {
                StepState::Conflict { what } => Some(what.replace("; ", "\n")),
                _ => None,
            },
            commands: if patching || ctx.istio.settings.mode == WireMode::Auto {
                let mut c = vec![Self::ssa_command(ctx, None)];
                if ctx.istio.settings.mode == WireMode::Auto {
                    c.extend(Self::helm_commands(ctx));
                }
                c
            } else {
                Self::helm_commands(ctx)
            },
        }
    }
    async fn apply(
        &self,
        ctx: &ClusterCtx,
        state: &StepState,
        progress: &(dyn Fn(String) + Sync),
    ) -> Result<Applied, StepError> {
        let (route, d) = route(ctx).await?;
        let ns = ctx.names().namespace.clone();
        if route == Route::Patch {
            let d = d.ok_or_else(|| {
                StepError::Blocked(format!("no istiod Deployment in {ns} to patch"))
            })?;
            let name = d.metadata.name.clone().unwrap_or_default();
            progress(format!("server-side apply to deployment {ns}/{name}"));
            let force = matches!(state, StepState::Conflict { .. });
            patch::apply(&ctx.kube, &d, &ctx.wiring(), force).await?;
            return Ok(Applied {
                fingerprint: None,
                previous: json!({ "route": "patch", "deployment": name, "namespace": ns }),
                modified: true,
            });
        }
        let helm = ctx.helm();
        let commands = Self::helm_commands(ctx);
        let s = &ctx.istio.settings;
        // The values file is written first: it is also what the operator runs by hand. Its
        // layout follows the chart that will render it (`helm show chart`), else [istio]
        // version.
        let istiod_chart = match helm.version().await {
            Ok(_) => {
                helm.chart_reachable(&s.base_chart).await.ok();
                helm.chart_reachable(&s.istiod_chart).await.ok()
            }
            Err(_) => None,
        };
        let style = match &istiod_chart {
            Some(meta) => {
                progress(format!(
                    "chart {} {} (Istio {}): {:?} values layout",
                    meta.name,
                    meta.version,
                    meta.istio_version(),
                    ChartStyle::for_version(meta.istio_version())
                ));
                ChartStyle::for_version(meta.istio_version())
            }
            None => ctx.chart_style(),
        };
        let file = ctx.values_file();
        if let Some(dir) = file.parent() {
            crate::fsutil::create_private_dir(dir)
                .map_err(|e| StepError::Blocked(format!("{}: {e}", dir.display())))?;
        }
        crate::fsutil::write_atomic(&file, values_yaml(&ctx.wiring(), style).as_bytes())
            .map_err(|e| StepError::Blocked(format!("{}: {e}", file.display())))?;
        helm.version()
            .await
            .map_err(|e| operator_must_run(&helm, &e, &commands))?;
        for chart in [&s.base_chart, &s.istiod_chart] {
            helm.chart_reachable(chart)
                .await
                .map_err(|e| operator_must_run(&helm, &e, &commands))?;
        }
        let installed_base = if helm.release(BASE_RELEASE, &ns).await?.is_none() {
            progress(format!("helm upgrade --install {BASE_RELEASE}"));
            helm.upgrade_install(&Self::base_install(ctx)).await?;
            true
        } else {
            false
        };
        let before = helm.release(ISTIOD_RELEASE, &ns).await?;
        progress(format!("helm upgrade --install {ISTIOD_RELEASE}"));
        helm.upgrade_install(&Self::istiod_install(ctx, before.is_some()))
            .await?;
        Ok(Applied {
            fingerprint: None,
            previous: json!({
                "route": "helm",
                "namespace": ns,
                "installed_base": installed_base,
                "istiod_previous_revision": before.map(|r| r.revision),
            }),
            modified: false,
        })
    }
    async fn rollback(&self, ctx: &ClusterCtx, entry: &JournalEntry) -> Result<(), StepError> {
        let p = &entry.previous;
        let ns = p["namespace"].as_str().unwrap_or(&ctx.names().namespace);
        match p["route"].as_str() {
            Some("patch") => {
                let name = p["deployment"].as_str().unwrap_or_default();
                if let Some(d) = get_deployment(&ctx.kube, ns, name).await? {
                    patch::rollback(&ctx.kube, &d).await?;
                }
            }
            Some("helm") => {
                let helm = ctx.helm();
                if helm.release(ISTIOD_RELEASE, ns).await?.is_some() {
                    match p["istiod_previous_revision"].as_u64() {
                        Some(rev) => {
                            helm.rollback(ISTIOD_RELEASE, ns, rev as u32).await?;
                        }
                        None => helm.uninstall(ISTIOD_RELEASE, ns).await?,
                    }
                }
                if p["installed_base"].as_bool() == Some(true)
                    && helm.release(BASE_RELEASE, ns).await?.is_some()
                {
                    helm.uninstall(BASE_RELEASE, ns).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- gateways
pub struct GatewaysStep;

const POLICY_GATEWAY: &str = include_str!("../../assets/vault/policy.gateway.hcl");

/// One configured gateway: its Deployment name and where its TLS material lives.
struct GatewayTarget {
    name: String,
    /// Path inside the KV mount (what `vault kv put` takes).
    rel_path: String,
    wiring: GatewayWiring,
}

impl ClusterCtx {
    fn gateway_targets(&self) -> Vec<GatewayTarget> {
        let s = &self.istio.settings;
        s.gateways
            .iter()
            .map(|g| {
                let rel_path = s
                    .gateway_secret_path
                    .replace("{gateway}", g)
                    .replace("{cluster}", self.name());
                GatewayTarget {
                    name: g.clone(),
                    wiring: GatewayWiring {
                        gateway: g.clone(),
                        auth_path: self.names().auth_path.clone(),
                        role: s.gateway_role.clone(),
                        secret_path: kv_api_path(
                            &self.names().kv_mount,
                            &rel_path,
                            self.kv_version,
                        ),
                        kv_version: self.kv_version,
                    },
                    rel_path,
                }
            })
            .collect()
    }
    fn gateway_policy_name(&self) -> String {
        self.istio
            .settings
            .gateway_policy
            .replace("{cluster}", self.name())
    }
    fn gateway_policy_text(&self) -> String {
        let (header, block) = POLICY_GATEWAY
            .split_once("### one block per gateway\n")
            .unwrap_or((POLICY_GATEWAY, ""));
        let mut text = header.replace("{cluster}", self.name());
        for t in self.gateway_targets() {
            text.push_str(&block.replace("{path}", &t.wiring.secret_path));
        }
        text
    }
}

/// The live state of the gateways' Vault policy, role and Deployments.
struct GatewaysState {
    deployments: Vec<Deployment>,
    service_accounts: Vec<String>,
    policy: Option<String>,
    role: Option<Value>,
    role_body: Value,
    patches: Vec<(String, patch::PatchPlan)>,
}

async fn gateways_state(ctx: &ClusterCtx) -> Result<Result<GatewaysState, String>, StepError> {
    let ns = &ctx.names().namespace;
    let n = ctx.names();
    let mut deployments = Vec::new();
    let mut service_accounts = Vec::new();
    let mut patches = Vec::new();
    for t in ctx.gateway_targets() {
        let Some(d) = get_deployment(&ctx.kube, ns, &t.name).await? else {
            return Ok(Err(format!(
                "gateway Deployment {ns}/{} not found: install the gateway first, or remove it from [istio] gateways",
                t.name
            )));
        };
        let keys: Vec<&str> = GATEWAY_FILES.iter().map(|(_, k)| *k).collect();
        let secret = ctx
            .vault
            .kv_read(&n.kv_mount, &t.rel_path, ctx.kv_version, None)
            .await?;
        let missing: Vec<&str> = keys
            .iter()
            .filter(|k| secret.as_ref().is_none_or(|s| !s.data.contains_key(**k)))
            .copied()
            .collect();
        if !missing.is_empty() {
            return Ok(Err(format!(
                "no {} at {} for gateway {}: put its TLS material there first:\n  vault kv put {}/{} tls_crt=@tls.crt tls_key=@tls.key ca_crt=@ca.crt",
                missing.join(", "),
                t.wiring.secret_path,
                t.name,
                n.kv_mount,
                t.rel_path
            )));
        }
        let sa = d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        if !service_accounts.contains(&sa) {
            service_accounts.push(sa);
        }
        patches.push((
            t.name.clone(),
            patch::plan_fields(&d, &gateway_annotations(&t.wiring), None),
        ));
        deployments.push(d);
    }
    let policy = ctx.vault.read_policy(&ctx.gateway_policy_name()).await?;
    let role_name = &ctx.istio.settings.gateway_role;
    let role = ctx.vault.read_role(&n.auth_path, role_name).await?;
    let role_body = json!({
        "bound_service_account_names": service_accounts,
        "bound_service_account_namespaces": [ns],
        "token_policies": [ctx.gateway_policy_name()],
        "token_ttl": n.token_ttl,
    });
    Ok(Ok(GatewaysState {
        deployments,
        service_accounts,
        policy,
        role,
        role_body,
        patches,
    }))
}

fn role_matches(role: &Value, body: &Value) -> bool {
    let same = |k: &str| {
        let mut a = string_list(&role[k]);
        let mut b = string_list(&body[k]);
        a.sort();
        b.sort();
        a == b
    };
    same("bound_service_account_names")
        && same("bound_service_account_namespaces")
        && same("token_policies")
}

#[async_trait]
impl Step for GatewaysStep {
    fn id(&self) -> StepId {
        StepId::Gateways
    }
    fn title(&self, ctx: &ClusterCtx) -> String {
        format!(
            "Gateways {} get their TLS files from Vault",
            ctx.istio.settings.gateways.join(", ")
        )
    }
    fn resource(&self, ctx: &ClusterCtx) -> String {
        format!(
            "gateways {} (role {}, policy {})",
            ctx.istio.settings.gateways.join(","),
            ctx.istio.settings.gateway_role,
            ctx.gateway_policy_name()
        )
    }
    fn can_overwrite(&self, _: &ClusterCtx) -> bool {
        true
    }
    async fn check(&self, ctx: &ClusterCtx) -> Result<StepState, StepError> {
        let st = match gateways_state(ctx).await? {
            Ok(st) => st,
            Err(reason) => return Ok(StepState::Blocked { reason }),
        };
        let mut conflicts = Vec::new();
        let mut absent = false;
        match &st.policy {
            None => absent = true,
            Some(p) if p.trim() != ctx.gateway_policy_text().trim() => conflicts.push(format!(
                "policy {} has other rules",
                ctx.gateway_policy_name()
            )),
            _ => {}
        }
        match &st.role {
            None => absent = true,
            Some(r) if !role_matches(r, &st.role_body) => conflicts.push(format!(
                "role {} is bound to {:?}, wanted {:?}",
                ctx.istio.settings.gateway_role,
                string_list(&r["bound_service_account_names"]),
                st.service_accounts
            )),
            _ => {}
        }
        for (name, plan) in &st.patches {
            absent |= !plan.add.is_empty();
            conflicts.extend(plan.conflicts.iter().map(|c| format!("{name}: {c}")));
        }
        Ok(if !conflicts.is_empty() {
            StepState::Conflict {
                what: conflicts.join("; "),
            }
        } else if absent {
            StepState::Absent
        } else {
            StepState::Matches
        })
    }
    fn preview(&self, ctx: &ClusterCtx, state: &StepState) -> Preview {
        let s = &ctx.istio.settings;
        let n = ctx.names();
        let mut commands = vec![
            format!(
                "vault policy write {} - <<'EOF'\n{}EOF",
                ctx.gateway_policy_name(),
                ctx.gateway_policy_text()
            ),
            format!(
                "vault write auth/{}/role/{} bound_service_account_names=<the gateways' ServiceAccounts> bound_service_account_namespaces={} policies={} ttl={}",
                n.auth_path,
                s.gateway_role,
                n.namespace,
                ctx.gateway_policy_name(),
                n.token_ttl
            ),
        ];
        for t in ctx.gateway_targets() {
            commands.push(format!(
                "{} -n {} apply --server-side --field-manager={} -f <annotations of {}>",
                ctx.kubectl(),
                n.namespace,
                patch::FIELD_MANAGER,
                t.name
            ));
            commands.push(format!(
                "# a Gateway for {} serving the injected files:\n{}",
                t.name,
                crate::istio::gateway_snippet(
                    &t.name,
                    &n.namespace,
                    &["*"],
                    DEFAULT_SECRET_DIR,
                    true
                )
            ));
        }
        Preview {
            summary: match state {
                StepState::Matches => "the gateways get their TLS files from Vault".into(),
                StepState::Blocked { reason } => reason.clone(),
                StepState::Conflict { what } => what.clone(),
                StepState::Absent => format!(
                    "policy {} and role {} for the gateways' ServiceAccounts, and injector annotations on {}",
                    ctx.gateway_policy_name(),
                    s.gateway_role,
                    s.gateways.join(", ")
                ),
            },
            changes: match state {
                StepState::Absent | StepState::Conflict { .. } => {
                    let mut c = vec![
                        format!("+ policy {}", ctx.gateway_policy_name()),
                        format!("+ auth/{}/role/{}", n.auth_path, s.gateway_role),
                    ];
                    c.extend(s.gateways.iter().map(|g| {
                        format!(
                            "+ {g}: vault.hashicorp.com annotations for tls.crt, tls.key, ca.crt"
                        )
                    }));
                    c
                }
                _ => vec![],
            },
            diff: match state {
                StepState::Conflict { what } => Some(what.replace("; ", "\n")),
                _ => None,
            },
            commands,
        }
    }
    async fn apply(
        &self,
        ctx: &ClusterCtx,
        state: &StepState,
        progress: &(dyn Fn(String) + Sync),
    ) -> Result<Applied, StepError> {
        let st = gateways_state(ctx).await?.map_err(StepError::Blocked)?;
        let n = ctx.names();
        let policy = ctx.gateway_policy_name();
        let text = ctx.gateway_policy_text();
        let policy_written = st.policy.as_deref().map(str::trim) != Some(text.trim());
        if policy_written {
            progress(format!("vault policy write {policy}"));
            ctx.vault.write_policy(&policy, &text).await?;
        }
        let role = &ctx.istio.settings.gateway_role;
        let role_written = st
            .role
            .as_ref()
            .is_none_or(|r| !role_matches(r, &st.role_body));
        if role_written {
            progress(format!("vault write auth/{}/role/{role}", n.auth_path));
            ctx.vault
                .write_role(&n.auth_path, role, &st.role_body)
                .await?;
        }
        let force = matches!(state, StepState::Conflict { .. });
        let targets = ctx.gateway_targets();
        for (d, t) in st.deployments.iter().zip(&targets) {
            progress(format!(
                "server-side apply to deployment {}/{}",
                n.namespace, t.name
            ));
            patch::apply_fields(&ctx.kube, d, &gateway_annotations(&t.wiring), None, force).await?;
        }
        Ok(Applied {
            fingerprint: None,
            previous: json!({
                "policy": policy,
                "policy_written": policy_written,
                "policy_previous": st.policy,
                "role": role,
                "role_written": role_written,
                "role_previous": st.role,
                "namespace": n.namespace,
                "gateways": ctx.istio.settings.gateways,
            }),
            modified: st.policy.is_some() || st.role.is_some(),
        })
    }
    async fn rollback(&self, ctx: &ClusterCtx, entry: &JournalEntry) -> Result<(), StepError> {
        let p = &entry.previous;
        let n = ctx.names();
        let ns = p["namespace"].as_str().unwrap_or(&n.namespace);
        for g in string_list(&p["gateways"]) {
            if let Some(d) = get_deployment(&ctx.kube, ns, &g).await? {
                patch::rollback(&ctx.kube, &d).await?;
            }
        }
        if p["role_written"].as_bool() == Some(true)
            && let Some(role) = p["role"].as_str()
        {
            match &p["role_previous"] {
                Value::Null => ctx.vault.delete_role(&n.auth_path, role).await?,
                prev => ctx.vault.write_role(&n.auth_path, role, prev).await?,
            }
        }
        if p["policy_written"].as_bool() == Some(true)
            && let Some(policy) = p["policy"].as_str()
        {
            match p["policy_previous"].as_str() {
                None => ctx.vault.delete_policy(policy).await?,
                Some(prev) => ctx.vault.write_policy(policy, prev).await?,
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- verify
pub struct VerifyStep;

/// The intermediate and root Vault holds for the cluster, as istiod would log them.
async fn expected_certs(ctx: &ClusterCtx) -> Result<Vec<ExpectedCert>, StepError> {
    let n = ctx.names();
    let secret = ctx
        .vault
        .kv_read(&n.kv_mount, &n.secret_path, ctx.kv_version, None)
        .await?
        .ok_or_else(|| {
            StepError::Verify(format!(
                "no secret at {}: run the Vault phase first",
                ctx.secret_api_path()
            ))
        })?;
    let mut out = Vec::new();
    for field in ["ca_cert", "root_cert"] {
        let pem = secret.data.get(field).ok_or_else(|| {
            StepError::Verify(format!("{} has no {field}", ctx.secret_api_path()))
        })?;
        let info = crate::certs::inspect_pem(pem)
            .map_err(|e| StepError::Verify(format!("{field} in Vault: {e}")))?;
        let first = info
            .into_iter()
            .next()
            .ok_or_else(|| StepError::Verify(format!("{field} in Vault holds no certificate")))?;
        out.push(ExpectedCert {
            serial_hex: first.serial,
            subject: first.subject,
            not_before: first.not_before,
            not_after: first.not_after,
        });
    }
    Ok(out)
}

/// Whether the lines so far settle the question (istiod logged its chain, or failed).
/// The chain is complete only at `Istiod certificates are reloaded`: istiod prints `Use
/// plugged-in cert at` / `Use root cert from` *before* its x509 lines, so settling on
/// those would stop after the first certificate (its own DNS cert).
fn settled(summary: &LogSummary) -> bool {
    matches!(summary.status, LogStatus::Failure { .. })
        || (!summary.loaded_certs.is_empty() && summary.certs_reloaded)
        || summary.self_signed.is_some()
}

const AGENT_CONTAINER: &str = "vault-agent-init";

fn failed(lines: &[String], root_ca_dir: &str) -> bool {
    matches!(
        summarise_for(lines, root_ca_dir).status,
        LogStatus::Failure { .. }
    )
}

/// Follows one container of the pod, appending its lines, until they settle (or, for the
/// agent, it rendered all four files), the stream ends, or the deadline passes.
async fn follow_container(
    ctx: &ClusterCtx,
    pod_name: &str,
    container: &str,
    lines: &mut Vec<String>,
    deadline: tokio::time::Instant,
    progress: &(dyn Fn(String) + Sync),
) -> Result<(), StepError> {
    let ns = &ctx.names().namespace;
    let root_ca_dir = ctx.expected_ca_dir();
    progress(format!("following {container} of pod {pod_name}"));
    let mut on_line = |l: &str| {
        lines.push(l.to_string());
        // Re-summarise only when the line means something.
        if recognise(l) == crate::istio::LogEvent::Other {
            return true;
        }
        let s = summarise_for(&*lines, &root_ca_dir);
        let failed = matches!(s.status, LogStatus::Failure { .. });
        let agent_done = container == AGENT_CONTAINER && s.rendered.len() >= 4;
        !(failed || agent_done || settled(&s))
    };
    follow_logs(&ctx.kube, ns, pod_name, container, deadline, &mut on_line).await?;
    Ok(())
}

/// Waits for the rollout, then follows the new pod's `vault-agent-init` and `discovery`
/// logs until they settle or the deadline passes. The agent's log is read as soon as its
/// container has started: an agent refused by Vault keeps the pod in Init, so the rollout
/// would never complete and its log is the answer.
async fn pod_log_lines(
    ctx: &ClusterCtx,
    deadline: tokio::time::Instant,
    progress: &(dyn Fn(String) + Sync),
) -> Result<Vec<String>, StepError> {
    let ns = ctx.names().namespace.clone();
    let root_ca_dir = ctx.expected_ca_dir();
    let mut last = String::new();
    // (pod, lines) of the agent log read while the rollout was still going.
    let mut agent: Option<(String, Vec<String>)> = None;
    let d = loop {
        let d = crate::kube::istiod_deployment(&ctx.kube, &ns)
            .await?
            .ok_or_else(|| StepError::Verify(format!("no istiod Deployment in {ns}")))?;
        let r = Rollout::of(&d);
        let state = r.describe();
        if state != last {
            progress(format!("rollout: {state}"));
            last = state;
        }
        if r.complete() {
            break d;
        }
        // Once the controller has seen the new spec, the current revision's pod is the new one.
        if agent.is_none()
            && r.observed_generation >= r.generation
            && let Some(p) = current_pod(&ctx.kube, &d).await?
            && container_started(&p, AGENT_CONTAINER)
        {
            let name = p.metadata.name.clone().unwrap_or_default();
            let mut lines = Vec::new();
            // A failed read is tried again on the next round.
            if follow_container(ctx, &name, AGENT_CONTAINER, &mut lines, deadline, progress)
                .await
                .is_ok()
            {
                if failed(&lines, &root_ca_dir) {
                    return Ok(lines);
                }
                agent = Some((name, lines));
            }
        }
        if tokio::time::Instant::now() >= deadline {
            let why = match current_pod(&ctx.kube, &d).await? {
                Some(p) => {
                    let waiting = waiting_reasons(&p);
                    let name = p.metadata.name.clone().unwrap_or_default();
                    if waiting.is_empty() {
                        format!("pod {name} is not ready")
                    } else {
                        format!(
                            "pod {name}: {}",
                            waiting
                                .iter()
                                .map(|(c, w)| format!("{c} {w}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    }
                }
                None => "no pod of the new revision yet".into(),
            };
            return Err(StepError::Verify(format!(
                "istiod rollout not complete after {}s ({last}); {why}",
                ctx.istio.settings.verify_timeout_secs
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let pod = current_pod(&ctx.kube, &d)
        .await?
        .ok_or_else(|| StepError::Verify("the rollout is complete but its pod is gone".into()))?;
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let (init, main) = container_names(&pod);
    if !init.iter().any(|c| c == AGENT_CONTAINER) {
        return Err(StepError::Verify(format!(
            "pod {ns}/{pod_name} has no vault-agent-init init container: the injector did not mutate it (is its webhook running, and does it select this namespace?)"
        )));
    }
    let discovery = if main.iter().any(|c| c == "discovery") {
        "discovery".to_string()
    } else {
        main.first().cloned().unwrap_or_else(|| "discovery".into())
    };
    let mut lines = match agent {
        Some((name, lines)) if name == pod_name => lines,
        _ => {
            let mut lines = Vec::new();
            follow_container(
                ctx,
                &pod_name,
                AGENT_CONTAINER,
                &mut lines,
                deadline,
                progress,
            )
            .await?;
            lines
        }
    };
    if !failed(&lines, &root_ca_dir) {
        follow_container(ctx, &pod_name, &discovery, &mut lines, deadline, progress).await?;
    }
    Ok(lines)
}

/// Reads a log file, re-reading while it grows, until its lines settle or the deadline.
async fn file_log_lines(
    ctx: &ClusterCtx,
    file: &std::path::Path,
    deadline: tokio::time::Instant,
    progress: &(dyn Fn(String) + Sync),
) -> Result<Vec<String>, StepError> {
    let mut last_len = usize::MAX;
    loop {
        let text = tokio::fs::read_to_string(file)
            .await
            .map_err(|e| StepError::Verify(format!("istiod log {}: {e}", file.display())))?;
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() != last_len {
            progress(format!("read {} lines of {}", lines.len(), file.display()));
            last_len = lines.len();
        }
        let s = summarise_for(&lines, &ctx.expected_ca_dir());
        if settled(&s) || tokio::time::Instant::now() >= deadline {
            return Ok(lines);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The doctor's first broken link, for a failed verification.
async fn doctor_says(ctx: &ClusterCtx) -> String {
    let target = crate::doctor::DoctorTarget {
        cluster: ctx.cluster.clone(),
        kube: ctx.kube.clone(),
        vault: ctx.vault.clone(),
        kv_version: ctx.kv_version,
        istio: ctx.istio.settings.clone(),
    };
    let d = crate::doctor::diagnose(&target).await;
    match d.first_failure() {
        Some(link) => format!(
            "doctor: first broken link is {}: {}{}",
            link.title,
            link.evidence.join("; "),
            link.fix
                .as_deref()
                .map(|f| format!("\n  fix: {f}"))
                .unwrap_or_default()
        ),
        None => "doctor: the Vault chain is healthy for this cluster (login, policy and read all work): look at istiod's own configuration".into(),
    }
}

/// Judges the lines: the verdict when it is the Vault CA, else a verification error.
pub fn judge(
    lines: &[String],
    root_ca_dir: &str,
    expected: &[ExpectedCert],
) -> Result<CaVerdict, String> {
    let summary = summarise_for(lines, root_ca_dir);
    if let LogStatus::Failure {
        line_no,
        line,
        hint,
        ..
    } = &summary.status
    {
        return Err(format!("log line {line_no}: {line}\n  {hint}"));
    }
    let verdict = compare_with_vault(&summary.loaded_certs, expected);
    if verdict.is_vault_ca() {
        Ok(verdict)
    } else if let Some(s) = &summary.self_signed {
        Err(format!(
            "istiod fell back to a self-signed CA: {s}\n{verdict}"
        ))
    } else {
        Err(verdict.to_string())
    }
}

#[async_trait]
impl Step for VerifyStep {
    fn id(&self) -> StepId {
        StepId::Verify
    }
    fn title(&self, _: &ClusterCtx) -> String {
        "Verify istiod runs on the CA in Vault".into()
    }
    fn resource(&self, ctx: &ClusterCtx) -> String {
        match &ctx.istio.istiod_log {
            Some(f) => format!("istiod log {}", f.display()),
            None => format!("istiod pod in {}", ctx.names().namespace),
        }
    }
    async fn check(&self, ctx: &ClusterCtx) -> Result<StepState, StepError> {
        if ctx.istio.istiod_log.is_some() {
            return Ok(StepState::Absent);
        }
        Ok(
            match crate::kube::istiod_deployment(&ctx.kube, &ctx.names().namespace).await? {
                Some(_) => StepState::Absent,
                None => StepState::Blocked {
                    reason: format!("no istiod Deployment in {} yet", ctx.names().namespace),
                },
            },
        )
    }
    fn preview(&self, ctx: &ClusterCtx, state: &StepState) -> Preview {
        let k = ctx.kubectl();
        let ns = &ctx.names().namespace;
        Preview {
            summary: match state {
                StepState::Blocked { reason } => reason.clone(),
                _ => format!(
                    "wait for the istiod rollout (up to {}s), follow vault-agent-init and discovery, and compare istiod's x509 lines with {}",
                    ctx.istio.settings.verify_timeout_secs,
                    ctx.secret_api_path()
                ),
            },
            changes: vec![],
            diff: None,
            commands: vec![
                format!("{k} -n {ns} rollout status deployment/istiod"),
                format!("{k} -n {ns} logs deployment/istiod -c vault-agent-init"),
                format!(
                    "{k} -n {ns} logs deployment/istiod -c discovery | grep -E 'x509 cert|Use (plugged-in|local|root)|reloaded'"
                ),
            ],
        }
    }
    async fn apply(
        &self,
        ctx: &ClusterCtx,
        _: &StepState,
        progress: &(dyn Fn(String) + Sync),
    ) -> Result<Applied, StepError> {
        let deadline = tokio::time::Instant::now()
            + Duration::from_secs(ctx.istio.settings.verify_timeout_secs);
        let expected = expected_certs(ctx).await?;
        let lines = match &ctx.istio.istiod_log {
            Some(f) => file_log_lines(ctx, f, deadline, progress).await?,
            None => match pod_log_lines(ctx, deadline, progress).await {
                Ok(l) => l,
                Err(e) => {
                    // Not "verification failed: verification failed: ...".
                    let e = match e {
                        StepError::Verify(why) => why,
                        other => other.to_string(),
                    };
                    return Err(StepError::Verify(format!(
                        "{e}\n{}",
                        doctor_says(ctx).await
                    )));
                }
            },
        };
        match judge(&lines, &ctx.expected_ca_dir(), &expected) {
            Ok(verdict) => {
                progress(verdict.to_string());
                Ok(Applied::default())
            }
            Err(why) => Err(StepError::Verify(format!(
                "{why}\n{}",
                doctor_says(ctx).await
            ))),
        }
    }
    async fn verify(&self, _: &ClusterCtx) -> Result<(), StepError> {
        Ok(())
    }
    async fn rollback(&self, _: &ClusterCtx, _: &JournalEntry) -> Result<(), StepError> {
        Ok(())
    }
}

pub fn istio_steps() -> Vec<Box<dyn Step>> {
    vec![
        Box::new(InjectorStep),
        Box::new(IstiodStep),
        Box::new(GatewaysStep),
        Box::new(VerifyStep),
    ]
}
