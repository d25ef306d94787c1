//! One type per step. Each reads live state in `check`, explains itself in `preview` (with
//! the equivalent vault / kubectl commands), changes exactly one thing in `apply`, proves it
//! in `verify`, and undoes only what the journal says it created in `rollback`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use super::journal::JournalEntry;
use super::{Preview, StepError, StepId, StepState};
use crate::config::{ClusterConfig, ClusterNames};
use crate::kube::KubeTarget;
use crate::plan::certstore::{Bundle, CertStore};
use crate::secret::Secret;
use crate::vault::{VaultTarget, kv_api_path, string_list};

const POLICY_KV1: &str = include_str!("../../assets/vault/policy.kv1.hcl");
const POLICY_KV2: &str = include_str!("../../assets/vault/policy.kv2.hcl");
pub const TOKEN_WAIT: Duration = Duration::from_secs(60);

/// Facts read by earlier steps and used by later ones (the reviewer JWT, the API CA).
#[derive(Debug, Default)]
pub struct Facts {
    pub jwt: Option<Secret>,
    pub ca_pem: Option<String>,
    pub host: Option<String>,
    pub bundle: Option<Bundle>,
}

/// Everything a step of one cluster needs.
pub struct ClusterCtx {
    pub cluster: ClusterConfig,
    pub kube: KubeTarget,
    pub vault: VaultTarget,
    pub kv_version: u8,
    pub certs: Arc<CertStore>,
    pub facts: Mutex<Facts>,
    /// Use the TokenRequest API when the token Secret gets no token.
    pub token_request_fallback: bool,
    pub istio: Arc<super::istio_steps::IstioCtx>,
}

impl ClusterCtx {
    pub fn names(&self) -> &ClusterNames {
        &self.cluster.names
    }
    pub fn name(&self) -> &str {
        &self.cluster.name
    }
    /// `kubectl` with this cluster's kubeconfig and context, for previews and the runbook.
    pub fn kubectl(&self) -> String {
        crate::shell::kubectl(self.cluster.kubeconfig.as_deref(), Some(&self.kube.context))
    }
    pub fn secret_api_path(&self) -> String {
        kv_api_path(
            &self.names().kv_mount,
            &self.names().secret_path,
            self.kv_version,
        )
    }
}

pub fn sha256_hex(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    hex::encode(h.finalize())
}

/// What an apply did, for the journal.
#[derive(Debug, Default)]
pub struct Applied {
    pub fingerprint: Option<String>,
    /// Non-secret values needed to undo a modification.
    pub previous: Value,
    /// True when an existing object was changed (after an explicit decision).
    pub modified: bool,
}

#[async_trait]
pub trait Step: Send + Sync {
    fn id(&self) -> StepId;
    fn title(&self, ctx: &ClusterCtx) -> String;
    /// The object this step owns, for the journal (`namespace istio-system`).
    fn resource(&self, ctx: &ClusterCtx) -> String;
    async fn check(&self, ctx: &ClusterCtx) -> Result<StepState, StepError>;
    fn preview(&self, ctx: &ClusterCtx, state: &StepState) -> Preview;
    /// Whether a conflict may be resolved by overwriting (after an explicit decision).
    fn can_overwrite(&self, _ctx: &ClusterCtx) -> bool {
        false
    }
    /// Why a conflict this step may not overwrite is left to the operator.
    fn refusal(&self, ctx: &ClusterCtx, what: &str) -> String {
        format!("{}: {what}", self.resource(ctx))
    }
    async fn apply(
        &self,
        ctx: &ClusterCtx,
        state: &StepState,
        progress: &(dyn Fn(String) + Sync),
    ) -> Result<Applied, StepError>;
    async fn verify(&self, ctx: &ClusterCtx) -> Result<(), StepError> {
        match self.check(ctx).await? {
            StepState::Matches => Ok(()),
            other => Err(StepError::Verify(format!(
                "{} is {} after apply",
                self.resource(ctx),
                other.label()
            ))),
        }
    }
    async fn rollback(&self, ctx: &ClusterCtx, entry: &JournalEntry) -> Result<(), StepError>;
}

pub fn all_steps() -> Vec<Box<dyn Step>> {
    vec![
        Box::new(NamespaceStep),
        Box::new(ServiceAccountStep),
        Box::new(TokenSecretStep),
        Box::new(ReviewerBindingStep),
        Box::new(ReadCredentialsStep),
        Box::new(AuthMountStep),
        Box::new(AuthConfigStep),
        Box::new(CertificatesStep),
        Box::new(KvMountStep),
        Box::new(KvSecretStep),
        Box::new(PolicyStep),
        Box::new(RoleStep),
    ]
}

/// The steps of the chosen phases, in order (the gateways step only when gateways are
/// configured).
pub fn steps_of(istio: bool, gateways: bool) -> Vec<Box<dyn Step>> {
    let mut s = all_steps();
    if istio {
        s.extend(
            super::istio_steps::istio_steps()
                .into_iter()
                .filter(|st| gateways || st.id() != StepId::Gateways),
        );
    }
    s
}

pub fn step_for(id: StepId) -> Box<dyn Step> {
    steps_of(true, true)
        .into_iter()
        .find(|s| s.id() == id)
        .unwrap_or_else(|| Box::new(NamespaceStep))
}

fn helm_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app".to_string(), "istiod".to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "Helm".to_string(),
        ),
        ("release".to_string(), "istio-istiod".to_string()),
    ])
}

fn helm_annotations(ns: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "meta.helm.sh/release-name".to_string(),
            "istio-istiod".to_string(),
        ),
        ("meta.helm.sh/release-namespace".to_string(), ns.to_string()),
    ])
}

// ---------------------------------------------------------------- 1. namespace
pub struct NamespaceStep;

#[async_trait]
impl Step for NamespaceStep {
    fn id(&self) -> StepId {
        StepId::Namespace
    }
    fn title(&self, ctx: &ClusterCtx) -> String {
        format!("Namespace {}", ctx.names().namespace)
    }
    fn resource(&self, ctx: &ClusterCtx) -> String {
        format!("namespace {}", ctx.names().namespace)
    }
    async fn check(&self, ctx: &ClusterCtx) -> Result<StepState, StepError> {
        Ok(
            match ctx.kube.get_namespace(&ctx.names().namespace).await? {
                Some(ns) if ns.metadata.deletion_timestamp.is_some() => StepState::Blocked {
                    reason: format!("namespace {} is being deleted", ctx.names().namespace),
                },
                Some(_) => StepState::Matches,
                None => StepState::Absent,
            },
        )
    }
    fn preview(&self, ctx: &ClusterCtx, state: &StepState) -> Preview {
        let ns = &ctx.names().namespace;
        Preview {
            summary: match state {
                StepState::Absent => format!("Create namespace {ns} in {}", ctx.name()),
                _ => format!("Namespace {ns} exists in {}: left as it is", ctx.name()),
            },
            changes: if *state == StepState::Absent {
                vec![format!("+ namespace/{ns}")]
            } else {
                vec![]
            },
            diff: None,
            commands: vec![format!("{} create namespace {ns}", ctx.kubectl())],
        }
    }
    async fn apply(
        &self,
        ctx: &ClusterCtx,
        _: &StepState,
        _: &(dyn Fn(String) + Sync),
    ) -> Result<Applied, StepError> {
        let ns = ctx
            .kube
            .create_namespace(&ctx.names().namespace, BTreeMap::new())
            .await?;
        Ok(Applied {
            fingerprint: ns.metadata.uid.map(|u| format!("uid:{u}")),
            ..Default::default()
        })
    }
    async fn rollback(&self, ctx: &ClusterCtx, entry: &JournalEntry) -> Result<(), StepError> {
        // Only the namespace we created (same uid), never one that replaced it since.
        if let Some(ns) = ctx.kube.get_namespace(&ctx.names().namespace).await? {
            let uid = ns.metadata.uid.map(|u| format!("uid:{u}"));
            if entry.fingerprint.is_none() || entry.fingerprint == uid {
                ctx.kube.delete_namespace(&ctx.names().namespace).await?;
            }
        }
        Ok(())
    }
    async fn verify(&self, ctx: &ClusterCtx) -> Result<(), StepError> {
        match self.check(ctx).await? {
            StepState::Matches => Ok(()),
            other => Err(StepError::Verify(format!("namespace is {}", other.label()))),
        }
    }
}

// ---------------------------------------------------------------- 2. service account
pub struct ServiceAccountStep;

#[async_trait]
impl Step for ServiceAccountStep {
    fn id(&self) -> StepId {
        StepId::ServiceAccount
    }
    fn title(&self, ctx: &ClusterCtx) -> String {
        format!(
            "ServiceAccount {}/{}",
            ctx.names().namespace,
            ctx.names().service_account
        )
    }
    fn resource(&self, ctx: &ClusterCtx) -> String {
        format!(
            "serviceaccount {}/{}",
            ctx.names().namespace,
            ctx.names().service_account
        )
    }
    async fn check(&self, ctx: &ClusterCtx) -> Result<StepState, StepError> {
        let n = ctx.names();
        if ctx.kube.get_namespace(&n.namespace).await?.is_none() {
            return Ok(StepState::Absent);
        }
        Ok(
            match ctx
                .kube
                .get_service_account(&n.namespace, &n.service_account)
                .await?
            {
                None => StepState::Absent,
                Some(sa) => {
                    // Helm adopts it only with the ownership metadata; say which is missing.
                    let labels = sa.metadata.labels.unwrap_or_default();
                    let annotations = sa.metadata.annotations.unwrap_or_default();
                    let mut missing = Vec::new();
                    for (k, v) in helm_labels() {
                        if labels.get(&k) != Some(&v) {
                            missing.push(format!("label {k}={v}"));
                        }
                    }
                    for (k, v) in helm_annotations(&n.namespace) {
                        if annotations.get(&k) != Some(&v) {
                            missing.push(format!("annotation {k}={v}"));
                        }
                    }
                    if missing.is_empty() {
                        StepState::Matches
                    } else {
                        StepState::Conflict {
                            what: format!(
                                "exists without Helm ownership metadata ({}): helm install istio-istiod would refuse to adopt it",
                                missing.join(", ")
                            ),
                        }
                    }
                }
            },
        )
    }
    fn preview(&self, ctx: &ClusterCtx, state: &StepState) -> Preview {
        let n = ctx.names();
        let yaml = format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {sa}\n  namespace: {ns}\n  labels:\n    app: istiod\n    app.kubernetes.io/managed-by: Helm\n    release: istio-istiod\n  annotations:\n    meta.helm.sh/release-name: istio-istiod\n    meta.helm.sh/release-namespace: {ns}\n",
            sa = n.service_account,
            ns = n.namespace
        );
        Preview {
            summary: match state {
                StepState::Absent => format!(
                    "Create ServiceAccount {}/{} with Helm ownership metadata",
                    n.namespace, n.service_account
                ),
                StepState::Conflict { what } => format!(
                    "ServiceAccount {}/{} {what}",
                    n.namespace, n.service_account
                ),
                _ => format!(
                    "ServiceAccount {}/{} exists with Helm ownership metadata",
                    n.namespace, n.service_account
                ),
            },
            changes: if *state == StepState::Absent {
                vec![format!("+ serviceaccount/{}", n.service_account)]
            } else {
                vec![]
            },
            diff: None,
            commands: vec![format!("{} apply -f - <<'EOF'\n{yaml}EOF", ctx.kubectl())],
        }
    }
    async fn apply(
        &self,
        ctx: &ClusterCtx,
        _: &StepState,
        _: &(dyn Fn(String) + Sync),
    ) -> Result<Applied, StepError> {
        let n = ctx.names();
        let sa = ctx
            .kube
            .create_service_account(
                &n.namespace,
                &n.service_account,
                helm_labels(),
                helm_annotations(&n.namespace),
            )
            .await?;
        Ok(Applied {
            fingerprint: sa.metadata.uid.map(|u| format!("uid:{u}")),
            ..Default::default()
        })
    }
    async fn rollback(&self, ctx: &ClusterCtx, _: &JournalEntry) -> Result<(), StepError> {
        let n = ctx.names();
        ctx.kube
            .delete_service_account(&n.namespace, &n.service_account)
            .await?;
        Ok(())
    }
}

// ---------------------------------------------------------------- 3. token secret
pub struct TokenSecretStep;

#[async_trait]
impl Step for TokenSecretStep {
    fn id(&self) -> StepId {
        StepId::TokenSecret
    }
    fn title(&self, ctx: &ClusterCtx) -> String {
        format!(
            "Token Secret {}/{}",
            ctx.names().namespace,
            ctx.names().token_secret
        )
    }
    fn resource(&self, ctx: &ClusterCtx) -> String {
        format!(
            "secret {}/{}",
            ctx.names().namespace,
            ctx.names().token_secret
        )
    }
    async fn check(&self, ctx: &ClusterCtx) -> Result<StepState, StepError> {
        let n = ctx.names();
        if ctx.kube.get_namespace(&n.namespace).await?.is_none() {
            return Ok(StepState::Absent);
        }
        Ok(
            match ctx.kube.get_secret(&n.namespace, &n.token_secret).await? {
                None => StepState::Absent,
                Some(s) => {
                    let ty = s.type_.clone().unwrap_or_default();
                    let for_sa = s
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get("kubernetes.io/service-account.name"))
                        .cloned()
                        .unwrap_or_default();
                    if ty != "kubernetes.io/service-account-token" {
                        StepState::Conflict {
                            what: format!(
                                "secret exists with type {ty:?}, not kubernetes.io/service-account-token"
                            ),
                        }
                    } else if for_sa != n.service_account {
                        StepState::Conflict {
                            what: format!(
                                "token secret belongs to ServiceAccount {for_sa:?}, not {:?}",
                                n.service_account
                            ),
                        }
                    } else if crate::kube::token_of(&s).is_none() {
                        StepState::Blocked { reason: "token secret exists but has no token yet (token controller not running?)".into() }
                    } else {
                        StepState::Matches
                    }
                }
            },
        )
    }
    fn preview(&self, ctx: &ClusterCtx, state: &StepState) -> Preview {
        let n = ctx.names();
        let yaml = format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {s}\n  namespace: {ns}\n  annotations:\n    kubernetes.io/service-account.name: {sa}\ntype: kubernetes.io/service-account-token\n",
            s = n.token_secret,
            ns = n.namespace,
            sa = n.service_account
        );
        Preview {
            summary: match state {
                StepState::Absent => format!(
                    "Create a long-lived token Secret {}/{} for {} (not automatic since Kubernetes 1.24) and wait for its token",
                    n.namespace, n.token_secret, n.service_account
                ),
                StepState::Conflict { what } => what.clone(),
                StepState::Blocked { reason } => reason.clone(),
                StepState::Matches => format!(
                    "Token Secret {}/{} holds a token",
                    n.namespace, n.token_secret
                ),
            },
            changes: if *state == StepState::Absent {
                vec![format!("+ secret/{}", n.token_secret)]
            } else {
                vec![]
            },
            diff: None,
            commands: vec![format!("{} apply -f - <<'EOF'\n{yaml}EOF", ctx.kubectl())],
        }
    }
    async fn apply(
        &self,
        ctx: &ClusterCtx,
        _: &StepState,
        progress: &(dyn Fn(String) + Sync),
    ) -> Result<Applied, StepError> {
        let n = ctx.names();
        let s = ctx
            .kube
            .create_token_secret(&n.namespace, &n.token_secret, &n.service_account)
            .await?;
        let wait = ctx
            .kube
            .wait_for_token(&n.namespace, &n.token_secret, TOKEN_WAIT, &|d| {
                progress(format!(
                    "waiting for the token controller to fill {}/{} ({}s)",
                    n.namespace,
                    n.token_secret,
                    d.as_secs()
                ))
            })
            .await;
        if let Err(e) = wait {
            if ctx.token_request_fallback {
                progress(
                    "no token in the Secret: falling back to the TokenRequest API as chosen".into(),
                );
                let token = ctx
                    .kube
                    .request_token(&n.namespace, &n.service_account, 3600 * 24 * 365)
                    .await?;
                ctx.facts.lock().await.jwt = Some(token);
            } else {
                return Err(StepError::Kube(e));
            }
        }
        Ok(Applied {
            fingerprint: s.metadata.uid.map(|u| format!("uid:{u}")),
            ..Default::default()
        })
    }
    async fn verify(&self, ctx: &ClusterCtx) -> Result<(), StepError> {
        match self.check(ctx).await? {
            StepState::Matches => Ok(()),
            StepState::Blocked { .. }
                if ctx.token_request_fallback && ctx.facts.lock().await.jwt.is_some() =>
            {
                Ok(())
            }
            other => Err(StepError::Verify(format!(
                "token secret is {}",
                other.label()
            ))),
        }
    }
    async fn rollback(&self, ctx: &ClusterCtx, _: &JournalEntry) -> Result<(), StepError> {
        let n = ctx.names();
        ctx.kube
            .delete_secret(&n.namespace, &n.token_secret)
            .await?;
        Ok(())
    }
}

// ---------------------------------------------------------------- 4. reviewer binding
pub struct ReviewerBindingStep;

#[async_trait]
impl Step for ReviewerBindingStep {
    fn id(&self) -> StepId {
        StepId::ReviewerBinding
    }
    fn title(&self, ctx: &ClusterCtx) -> String {
        format!(
            "ClusterRoleBinding {} (system:auth-delegator)",
            ctx.names().reviewer_binding
        )
    }
    fn resource(&self, ctx: &ClusterCtx) -> String {
        format!("clusterrolebinding {}", ctx.names().reviewer_binding)
    }
    async fn check(&self, ctx: &ClusterCtx) -> Result<StepState, StepError> {
        let n = ctx.names();
        Ok(
            match ctx
                .kube
                .get_cluster_role_binding(&n.reviewer_binding)
                .await?
            {
                None => StepState::Absent,
                Some(b) => {
                    let role_ok = b.role_ref.kind == "ClusterRole"
                        && b.role_ref.name == "system:auth-delegator";
                    let subject_ok = b.subjects.unwrap_or_default().iter().any(|s| {
                        s.kind == "ServiceAccount"
                            && s.name == n.service_account
                            && s.namespace.as_deref() == Some(n.namespace.as_str())
                    });
                    match (role_ok, subject_ok) {
                        (true, true) => StepState::Matches,
                        (false, _) => StepState::Conflict {
                            what: format!(
                                "binds {} {}, not ClusterRole system:auth-delegator",
                                b.role_ref.kind, b.role_ref.name
                            ),
                        },
                        (_, false) => StepState::Conflict {
                            what: format!(
                                "exists but does not bind ServiceAccount {}/{}",
                                n.namespace, n.service_account
                            ),
                        },
                    }
                }
            },
        )
    }
    fn preview(&self, ctx: &ClusterCtx, state: &StepState) -> Preview {
        let n = ctx.names();
        Preview {
            summary: match state {
                StepState::Absent => format!(
                    "Let {}/{} call the TokenReview API (Vault reviews tokens with its JWT)",
                    n.namespace, n.service_account
                ),
                StepState::Conflict { what } => {
                    format!("ClusterRoleBinding {} {what}", n.reviewer_binding)
                }
                _ => format!(
                    "ClusterRoleBinding {} grants system:auth-delegator",
                    n.reviewer_binding
                ),
            },
            changes: if *state == StepState::Absent {
                vec![format!("+ clusterrolebinding/{}", n.reviewer_binding)]
            } else {
                vec![]
            },
            diff: None,
            commands: vec![format!(
                "{} create clusterrolebinding {} --clusterrole=system:auth-delegator --serviceaccount={}:{}",
                ctx.kubectl(),
                n.reviewer_binding,
                n.namespace,
                n.service_account
            )],
        }
    }
    async fn apply(
        &self,
        ctx: &ClusterCtx,
        _: &StepState,
        _: &(dyn Fn(String) + Sync),
    ) -> Result<Applied, StepError> {
        let n = ctx.names();
        let b = ctx
            .kube
            .create_cluster_role_binding(
                &n.reviewer_binding,
                "system:auth-delegator",
                &n.namespace,
                &n.service_account,
            )
            .await?;
        Ok(Applied {
            fingerprint: b.metadata.uid.map(|u| format!("uid:{u}")),
            ..Default::default()
        })
    }
    async fn rollback(&self, ctx: &ClusterCtx, _: &JournalEntry) -> Result<(), StepError> {
        ctx.kube
            .delete_cluster_role_binding(&ctx.names().reviewer_binding)
            .await?;
        Ok(())
    }
}

// ---------------------------------------------------------------- 5. read credentials
pub struct ReadCredentialsStep;

#[async_trait]
impl Step for ReadCredentialsStep {
    fn id(&self) -> StepId {
        StepId::ReadCredentials
    }
    fn title(&self, _: &ClusterCtx) -> String {
        "Read reviewer JWT, API CA and host".into()
    }
    fn resource(&self, ctx: &ClusterCtx) -> String {
        format!("credentials of {}", ctx.name())
    }
    async fn check(&self, ctx: &ClusterCtx) -> Result<StepState, StepError> {
        let n = ctx.names();
        let mut facts = ctx.facts.lock().await;
        facts.host = Some(ctx.kube.api_url.clone());
        facts.ca_pem = ctx.kube.ca_pem.clone();
        if facts.jwt.is_none()
            && ctx.kube.get_namespace(&n.namespace).await?.is_some()
            && let Some(s) = ctx.kube.get_secret(&n.namespace, &n.token_secret).await?
        {
            facts.jwt = crate::kube::token_of(&s);
        }
        Ok(match (&facts.jwt, &facts.ca_pem) {
            (Some(_), Some(_)) => StepState::Matches,
            (None, _) => StepState::Blocked { reason: format!("no token yet in secret {}/{}", n.namespace, n.token_secret) },
            (_, None) => StepState::Blocked {
                reason: "the kubeconfig has no certificate-authority(-data) for this cluster: Vault needs the API CA".into(),
            },
        })
    }
    fn preview(&self, ctx: &ClusterCtx, _: &StepState) -> Preview {
        let n = ctx.names();
        Preview {
            summary: format!(
                "Read the reviewer JWT from {}/{}, the API CA from the kubeconfig and the API URL {}",
                n.namespace, n.token_secret, ctx.kube.api_url
            ),
            changes: vec![],
            diff: None,
            commands: vec![
                format!(
                    "TOKEN=$({} -n {} get secret {} -o jsonpath='{{.data.token}}' | base64 -d)",
                    ctx.kubectl(),
                    n.namespace,
                    n.token_secret
                ),
                format!(
                    "{} config view --raw --minify -o jsonpath='{{.clusters[0].cluster.certificate-authority-data}}' | base64 -d > ca-{}.pem",
                    ctx.kubectl(),
                    ctx.name()
                ),
                format!("K8S_HOST={}", ctx.kube.api_url),
            ],
        }
    }
    async fn apply(
        &self,
        ctx: &ClusterCtx,
        _: &StepState,
        _: &(dyn Fn(String) + Sync),
    ) -> Result<Applied, StepError> {
        match self.check(ctx).await? {
            StepState::Matches => Ok(Applied::default()),
            StepState::Blocked { reason } => Err(StepError::Blocked(reason)),
            other => Err(StepError::Blocked(other.label().into())),
        }
    }
    async fn rollback(&self, _: &ClusterCtx, _: &JournalEntry) -> Result<(), StepError> {
        Ok(())
    }
}

// ---------------------------------------------------------------- 6a. auth mount
pub struct AuthMountStep;

#[async_trait]
impl Step for AuthMountStep {
    fn id(&self) -> StepId {
        StepId::AuthMount
    }
    fn title(&self, ctx: &ClusterCtx) -> String {
        format!("Vault auth mount auth/{}", ctx.names().auth_path)
    }
    fn resource(&self, ctx: &ClusterCtx) -> String {
        format!("auth/{}", ctx.names().auth_path)
    }
    async fn check(&self, ctx: &ClusterCtx) -> Result<StepState, StepError> {
        Ok(match ctx.vault.auth_mount(&ctx.names().auth_path).await? {
            None => StepState::Absent,
            Some(m) if m.kind == "kubernetes" => StepState::Matches,
            Some(m) => StepState::Conflict {
                what: format!("auth/{} is a {} mount, not kubernetes", m.path, m.kind),
            },
        })
    }
    fn preview(&self, ctx: &ClusterCtx, state: &StepState) -> Preview {
        let p = &ctx.names().auth_path;
        Preview {
            summary: match state {
                StepState::Absent => format!("Enable the kubernetes auth method at auth/{p}"),
                StepState::Conflict { what } => what.clone(),
                _ => format!("auth/{p} is a kubernetes auth mount"),
            },
            changes: if *state == StepState::Absent {
                vec![format!("+ auth/{p} (kubernetes)")]
            } else {
                vec![]
            },
            diff: None,
            commands: vec![format!("vault auth enable -path={p} kubernetes")],
        }
    }
    async fn apply(
        &self,
        ctx: &ClusterCtx,
        _: &StepState,
        _: &(dyn Fn(String) + Sync),
    ) -> Result<Applied, StepError> {
        ctx.vault
            .enable_auth(&ctx.names().auth_path, "kubernetes")
            .await?;
        let accessor = ctx
            .vault
            .auth_mount(&ctx.names().auth_path)
            .await?
            .map(|m| format!("accessor:{}", m.accessor));
        Ok(Applied {
            fingerprint: accessor,
            ..Default::default()
        })
    }
    async fn rollback(&self, ctx: &ClusterCtx, entry: &JournalEntry) -> Result<(), StepError> {
        // Same accessor means the same mount we enabled, not one someone made since.
        if let Some(m) = ctx.vault.auth_mount(&ctx.names().auth_path).await? {
            let acc = Some(format!("accessor:{}", m.accessor));
            if entry.fingerprint.is_none() || entry.fingerprint == acc {
                ctx.vault.disable_auth(&ctx.names().auth_path).await?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- 6b. auth config
pub struct AuthConfigStep;

pub fn normalise_pem(s: &str) -> String {
    s.trim().replace("\r\n", "\n")
}

#[async_trait]
impl Step for AuthConfigStep {
    fn id(&self) -> StepId {
        StepId::AuthConfig
    }
    fn title(&self, ctx: &ClusterCtx) -> String {
        format!("Config of auth/{}", ctx.names().auth_path)
    }
    fn resource(&self, ctx: &ClusterCtx) -> String {
        format!("auth/{}/config", ctx.names().auth_path)
    }
    fn refusal(&self, ctx: &ClusterCtx, what: &str) -> String {
        // The old reviewer JWT cannot be read back, so an overwrite could not be undone.
        format!(
            "auth/{}/config already exists and differs ({what}); the wizard will not overwrite a config it cannot restore",
            ctx.names().auth_path
        )
    }
    async fn check(&self, ctx: &ClusterCtx) -> Result<StepState, StepError> {
        let p = &ctx.names().auth_path;
        if ctx.vault.auth_mount(p).await?.is_none() {
            return Ok(StepState::Absent);
        }
        let Some(cfg) = ctx.vault.read_kubernetes_config(p).await? else {
            return Ok(StepState::Absent);
        };
        let host = cfg["kubernetes_host"].as_str().unwrap_or("");
        if host.is_empty() {
            return Ok(StepState::Absent);
        }
        let mut diffs = Vec::new();
        if host.trim_end_matches('/') != ctx.kube.api_url.trim_end_matches('/') {
            diffs.push(format!(
                "kubernetes_host is {host}, cluster API is {}",
                ctx.kube.api_url
            ));
        }
        if let Some(ca) = &ctx.kube.ca_pem
            && normalise_pem(cfg["kubernetes_ca_cert"].as_str().unwrap_or("")) != normalise_pem(ca)
        {
            diffs.push("kubernetes_ca_cert differs from the cluster's CA".into());
        }
        if cfg["disable_local_ca_jwt"] != json!(true) {
            diffs.push("disable_local_ca_jwt is not true (Vault runs outside the cluster)".into());
        }
        Ok(if diffs.is_empty() {
            StepState::Matches
        } else {
            StepState::Conflict {
                what: diffs.join("; "),
            }
        })
    }
    fn preview(&self, ctx: &ClusterCtx, state: &StepState) -> Preview {
        let p = &ctx.names().auth_path;
        Preview {
            summary: match state {
                StepState::Absent => format!(
                    "Point auth/{p} at {} with its CA and the reviewer JWT",
                    ctx.kube.api_url
                ),
                StepState::Conflict { what } => {
                    format!("auth/{p}/config exists and differs: {what}")
                }
                _ => format!("auth/{p}/config points at {}", ctx.kube.api_url),
            },
            changes: if *state == StepState::Absent {
                vec![
                    format!("~ auth/{p}/config kubernetes_host={}", ctx.kube.api_url),
                    "~ kubernetes_ca_cert=<cluster CA>, token_reviewer_jwt=<redacted>, disable_local_ca_jwt=true".into(),
                ]
            } else {
                vec![]
            },
            diff: None,
            commands: vec![format!(
                "vault write auth/{p}/config kubernetes_host={} kubernetes_ca_cert=@ca-{}.pem token_reviewer_jwt=\"$TOKEN\" disable_local_ca_jwt=true",
                ctx.kube.api_url,
                ctx.name()
            )],
        }
    }
    async fn apply(
        &self,
        ctx: &ClusterCtx,
        state: &StepState,
        _: &(dyn Fn(String) + Sync),
    ) -> Result<Applied, StepError> {
        if let StepState::Conflict { what } = state {
            return Err(StepError::Conflict(self.refusal(ctx, what)));
        }
        let facts = ctx.facts.lock().await;
        let jwt = facts
            .jwt
            .clone()
            .ok_or_else(|| StepError::Blocked("no reviewer JWT read yet".into()))?;
        let ca = facts
            .ca_pem
            .clone()
            .ok_or_else(|| StepError::Blocked("no cluster CA in the kubeconfig".into()))?;
        drop(facts);
        ctx.vault
            .write_kubernetes_config(&ctx.names().auth_path, &ctx.kube.api_url, &ca, &jwt)
            .await?;
        Ok(Applied {
            fingerprint: Some(sha256_hex(&[&ctx.kube.api_url, &ca])),
            ..Default::default()
        })
    }
    async fn rollback(&self, _: &ClusterCtx, _: &JournalEntry) -> Result<(), StepError> {
        // The config lives inside the mount: disabling the mount we created removes it, and
        // a pre-existing mount's config is never written (see apply).
        Ok(())
    }
}

// ---------------------------------------------------------------- 7. certificates
pub struct CertificatesStep;

#[async_trait]
impl Step for CertificatesStep {
    fn id(&self) -> StepId {
        StepId::Certificates
    }
    fn title(&self, ctx: &ClusterCtx) -> String {
        format!("CA bundle for {}", ctx.name())
    }
    fn resource(&self, ctx: &ClusterCtx) -> String {
        ctx.certs.describe(&ctx.cluster)
    }
    async fn check(&self, ctx: &ClusterCtx) -> Result<StepState, StepError> {
        match ctx.certs.load(&ctx.cluster)? {
            Some(bundle) => {
                let problems = ctx.certs.problems(&bundle);
                ctx.facts.lock().await.bundle = Some(bundle);
                Ok(if problems.is_empty() {
                    StepState::Matches
                } else {
                    StepState::Conflict {
                        what: problems.join("; "),
                    }
                })
            }
            None if ctx.cluster.certs_dir.is_some() => Ok(StepState::Blocked {
                reason: format!(
                    "import directory {} has no usable bundle",
                    ctx.certs.describe(&ctx.cluster)
                ),
            }),
            None => Ok(StepState::Absent),
        }
    }
    fn preview(&self, ctx: &ClusterCtx, state: &StepState) -> Preview {
        Preview {
            summary: match state {
                StepState::Absent => format!(
                    "Generate the Istio root (once, shared) and an intermediate CA for {} ({:?}) into {}",
                    ctx.name(),
                    ctx.certs.key_type(),
                    ctx.certs.describe(&ctx.cluster)
                ),
                StepState::Conflict { what } => format!("The bundle is not usable: {what}"),
                StepState::Blocked { reason } => reason.clone(),
                StepState::Matches => {
                    format!("Bundle ready in {}", ctx.certs.describe(&ctx.cluster))
                }
            },
            changes: if *state == StepState::Absent {
                vec![format!(
                    "+ {}/{{ca-cert,ca-key,cert-chain,root-cert}}.pem (keys 0600)",
                    ctx.certs.describe(&ctx.cluster)
                )]
            } else {
                vec![]
            },
            diff: None,
            commands: vec![ctx.certs.generate_command(&ctx.cluster)],
        }
    }
    async fn apply(
        &self,
        ctx: &ClusterCtx,
        _: &StepState,
        progress: &(dyn Fn(String) + Sync),
    ) -> Result<Applied, StepError> {
        progress(format!(
            "generating {:?} keys (RSA takes a moment)",
            ctx.certs.key_type()
        ));
        let bundle = ctx.certs.ensure(&ctx.cluster).await?;
        let fp = bundle.fingerprint();
        ctx.facts.lock().await.bundle = Some(bundle);
        Ok(Applied {
            fingerprint: Some(fp),
            ..Default::default()
        })
    }
    async fn rollback(&self, ctx: &ClusterCtx, _: &JournalEntry) -> Result<(), StepError> {
        ctx.certs.remove_generated(&ctx.cluster)
    }
}

// ---------------------------------------------------------------- 8. KV mount
pub struct KvMountStep;

#[async_trait]
impl Step for KvMountStep {
    fn id(&self) -> StepId {
        StepId::KvMount
    }
    fn title(&self, ctx: &ClusterCtx) -> String {
        format!("KV v{} mount {}", ctx.kv_version, ctx.names().kv_mount)
    }
    fn resource(&self, ctx: &ClusterCtx) -> String {
        format!("secrets engine {}", ctx.names().kv_mount)
    }
    async fn check(&self, ctx: &ClusterCtx) -> Result<StepState, StepError> {
        Ok(match ctx.vault.secret_mount(&ctx.names().kv_mount).await? {
            None => StepState::Absent,
            Some(m) if m.kind != "kv" => StepState::Conflict {
                what: format!("{} is a {} engine, not kv", m.path, m.kind),
            },
            Some(m) if m.kv_version() != ctx.kv_version => StepState::Conflict {
                what: format!(
                    "{} is KV version {}, the config says {}",
                    m.path,
                    m.kv_version(),
                    ctx.kv_version
                ),
            },
            Some(_) => StepState::Matches,
        })
    }
    fn preview(&self, ctx: &ClusterCtx, state: &StepState) -> Preview {
        let m = &ctx.names().kv_mount;
        Preview {
            summary: match state {
                StepState::Absent => format!(
                    "Enable a KV version {} secrets engine at {m}",
                    ctx.kv_version
                ),
                StepState::Conflict { what } => what.clone(),
                _ => format!("{m} is a KV v{} engine", ctx.kv_version),
            },
            changes: if *state == StepState::Absent {
                vec![format!("+ {m}/ (kv v{})", ctx.kv_version)]
            } else {
                vec![]
            },
            diff: None,
            commands: vec![format!(
                "vault secrets enable -path={m} -version={} kv",
                ctx.kv_version
            )],
        }
    }
    async fn apply(
        &self,
        ctx: &ClusterCtx,
        _: &StepState,
        _: &(dyn Fn(String) + Sync),
    ) -> Result<Applied, StepError> {
        ctx.vault
            .enable_kv(&ctx.names().kv_mount, ctx.kv_version)
            .await?;
        let acc = ctx
            .vault
            .secret_mount(&ctx.names().kv_mount)
            .await?
            .map(|m| format!("accessor:{}", m.accessor));
        Ok(Applied {
            fingerprint: acc,
            ..Default::default()
        })
    }
    async fn rollback(&self, ctx: &ClusterCtx, entry: &JournalEntry) -> Result<(), StepError> {
        if let Some(m) = ctx.vault.secret_mount(&ctx.names().kv_mount).await? {
            let acc = Some(format!("accessor:{}", m.accessor));
            if entry.fingerprint.is_none() || entry.fingerprint == acc {
                ctx.vault.disable_mount(&ctx.names().kv_mount).await?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- 9. KV secret
pub struct KvSecretStep;

#[async_trait]
impl Step for KvSecretStep {
    fn id(&self) -> StepId {
        StepId::KvSecret
    }
    fn title(&self, ctx: &ClusterCtx) -> String {
        format!(
            "Secret {}/{}",
            ctx.names().kv_mount,
            ctx.names().secret_path
        )
    }
    fn resource(&self, ctx: &ClusterCtx) -> String {
        ctx.secret_api_path()
    }
    fn can_overwrite(&self, ctx: &ClusterCtx) -> bool {
        // KV v2 keeps the old version, so rollback can restore it; KV v1 would lose it.
        ctx.kv_version == 2
    }
    fn refusal(&self, ctx: &ClusterCtx, what: &str) -> String {
        format!(
            "{} exists and differs ({what}); KV v1 has no versions, so the wizard will not overwrite it. Delete it yourself (`vault delete {}`) or choose another secret_path",
            ctx.secret_api_path(),
            ctx.secret_api_path()
        )
    }
    async fn check(&self, ctx: &ClusterCtx) -> Result<StepState, StepError> {
        let n = ctx.names();
        match ctx.vault.secret_mount(&n.kv_mount).await? {
            None => return Ok(StepState::Absent),
            Some(m) if m.kv_version() != ctx.kv_version => {
                return Ok(StepState::Blocked {
                    reason: format!("mount {} has KV version {}", n.kv_mount, m.kv_version()),
                });
            }
            Some(_) => {}
        }
        let existing = ctx
            .vault
            .kv_read(&n.kv_mount, &n.secret_path, ctx.kv_version, None)
            .await?;
        let Some(existing) = existing else {
            return Ok(StepState::Absent);
        };
        let wanted = ctx
            .facts
            .lock()
            .await
            .bundle
            .as_ref()
            .map(Bundle::kv_fields);
        Ok(match wanted {
            Some(w) if w == existing.data => StepState::Matches,
            Some(w) => StepState::Conflict {
                what: describe_kv_difference(&existing.data, &w),
            },
            None => StepState::Conflict {
                what: format!(
                    "{} already holds a secret ({} keys) and no local bundle matches it",
                    ctx.secret_api_path(),
                    existing.data.len()
                ),
            },
        })
    }
    fn preview(&self, ctx: &ClusterCtx, state: &StepState) -> Preview {
        let n = ctx.names();
        let cmd = format!(
            "vault kv put {}{}/{} ca_key=@ca-key.pem ca_cert=@ca-cert.pem cert_chain=@cert-chain.pem root_cert=@root-cert.pem",
            if ctx.kv_version == 2 {
                "-cas=<current version> "
            } else {
                ""
            },
            n.kv_mount,
            n.secret_path
        );
        Preview {
            summary: match state {
                StepState::Absent => format!(
                    "Write the four PEMs to {} (keys ca_key, ca_cert, cert_chain, root_cert)",
                    ctx.secret_api_path()
                ),
                StepState::Conflict { what } if ctx.kv_version == 2 => format!(
                    "{} exists and differs ({what}): overwriting writes a new KV v2 version with check-and-set; rollback restores the current one",
                    ctx.secret_api_path()
                ),
                StepState::Conflict { what } => format!(
                    "{} exists and differs ({what}): KV v1 keeps no history, the wizard refuses to overwrite it",
                    ctx.secret_api_path()
                ),
                StepState::Blocked { reason } => reason.clone(),
                StepState::Matches => format!("{} holds this bundle", ctx.secret_api_path()),
            },
            changes: match state {
                StepState::Absent => vec![format!(
                    "+ {} {{ca_key: <redacted>, ca_cert, cert_chain, root_cert}}",
                    ctx.secret_api_path()
                )],
                StepState::Conflict { .. } if ctx.kv_version == 2 => {
                    vec![format!("~ {} (new version)", ctx.secret_api_path())]
                }
                _ => vec![],
            },
            diff: match state {
                StepState::Conflict { what } => Some(what.clone()),
                _ => None,
            },
            commands: vec![cmd],
        }
    }
    async fn apply(
        &self,
        ctx: &ClusterCtx,
        state: &StepState,
        _: &(dyn Fn(String) + Sync),
    ) -> Result<Applied, StepError> {
        let n = ctx.names();
        let bundle = ctx.facts.lock().await.bundle.clone().ok_or_else(|| {
            StepError::Blocked("no certificate bundle: run the certificates step first".into())
        })?;
        let fields = bundle.kv_fields();
        let mut applied = Applied {
            fingerprint: Some(bundle.fingerprint()),
            ..Default::default()
        };
        match (state, ctx.kv_version) {
            (StepState::Conflict { what }, 1) => {
                return Err(StepError::Conflict(self.refusal(ctx, what)));
            }
            (StepState::Conflict { .. }, _) => {
                let current = ctx
                    .vault
                    .kv_read(&n.kv_mount, &n.secret_path, 2, None)
                    .await?;
                let cur_ver = current.and_then(|c| c.version).unwrap_or(0);
                ctx.vault
                    .kv_write(&n.kv_mount, &n.secret_path, 2, &fields, Some(cur_ver))
                    .await?;
                applied.modified = true;
                applied.previous = json!({ "kv2_version": cur_ver });
            }
            (_, 2) => {
                // cas=0: only if nobody wrote it since check.
                ctx.vault
                    .kv_write(&n.kv_mount, &n.secret_path, 2, &fields, Some(0))
                    .await?;
            }
            _ => {
                ctx.vault
                    .kv_write(&n.kv_mount, &n.secret_path, 1, &fields, None)
                    .await?;
            }
        }
        Ok(applied)
    }
    async fn rollback(&self, ctx: &ClusterCtx, entry: &JournalEntry) -> Result<(), StepError> {
        let n = ctx.names();
        if let Some(prev) = entry.previous["kv2_version"].as_u64() {
            // Restore the version that was current before our write, as a new version.
            if let Some(old) = ctx
                .vault
                .kv2_read_version(&n.kv_mount, &n.secret_path, prev)
                .await?
            {
                ctx.vault
                    .kv_write(&n.kv_mount, &n.secret_path, 2, &old, None)
                    .await?;
            }
            return Ok(());
        }
        // Created by us: delete only if it still holds what we wrote.
        if let Some(cur) = ctx
            .vault
            .kv_read(&n.kv_mount, &n.secret_path, ctx.kv_version, None)
            .await?
        {
            let fp = fingerprint_fields(&cur.data);
            if entry.fingerprint.is_none() || entry.fingerprint.as_deref() == Some(fp.as_str()) {
                ctx.vault
                    .kv_delete(&n.kv_mount, &n.secret_path, ctx.kv_version)
                    .await?;
            }
        }
        Ok(())
    }
}

pub fn fingerprint_fields(fields: &BTreeMap<String, String>) -> String {
    let get = |k: &str| fields.get(k).map(String::as_str).unwrap_or("");
    sha256_hex(&[
        get("ca_key"),
        get("ca_cert"),
        get("cert_chain"),
        get("root_cert"),
    ])
}

fn describe_kv_difference(
    existing: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
) -> String {
    let mut out = Vec::new();
    for k in wanted.keys() {
        match existing.get(k) {
            None => out.push(format!("{k} missing")),
            Some(v) if Some(v) != wanted.get(k) => out.push(format!("{k} differs")),
            _ => {}
        }
    }
    for k in existing.keys() {
        if !wanted.contains_key(k) {
            out.push(format!("extra key {k}"));
        }
    }
    out.join(", ")
}

// ---------------------------------------------------------------- 10. policy
pub struct PolicyStep;

pub fn policy_text(ctx_kv_version: u8, cluster: &str, secret_api_path: &str) -> String {
    let tmpl = if ctx_kv_version == 2 {
        POLICY_KV2
    } else {
        POLICY_KV1
    };
    tmpl.replace("{cluster}", cluster)
        .replace("{path}", secret_api_path)
}

#[async_trait]
impl Step for PolicyStep {
    fn id(&self) -> StepId {
        StepId::Policy
    }
    fn title(&self, ctx: &ClusterCtx) -> String {
        format!("Policy {}", ctx.names().policy)
    }
    fn resource(&self, ctx: &ClusterCtx) -> String {
        format!("policy {}", ctx.names().policy)
    }
    fn can_overwrite(&self, _: &ClusterCtx) -> bool {
        true
    }
    async fn check(&self, ctx: &ClusterCtx) -> Result<StepState, StepError> {
        let wanted = policy_text(ctx.kv_version, ctx.name(), &ctx.secret_api_path());
        Ok(match ctx.vault.read_policy(&ctx.names().policy).await? {
            None => StepState::Absent,
            Some(text) if text.trim() == wanted.trim() => StepState::Matches,
            Some(text) => StepState::Conflict {
                what: unified_diff(&text, &wanted),
            },
        })
    }
    fn preview(&self, ctx: &ClusterCtx, state: &StepState) -> Preview {
        let wanted = policy_text(ctx.kv_version, ctx.name(), &ctx.secret_api_path());
        let p = &ctx.names().policy;
        Preview {
            summary: match state {
                StepState::Absent => format!("Write policy {p}: read on {}", ctx.secret_api_path()),
                StepState::Conflict { .. } => format!(
                    "Policy {p} exists with other rules: overwriting keeps the old text in the journal for rollback"
                ),
                _ => format!("Policy {p} grants read on {}", ctx.secret_api_path()),
            },
            changes: match state {
                StepState::Absent => vec![format!("+ policy {p}")],
                StepState::Conflict { .. } => vec![format!("~ policy {p}")],
                _ => vec![],
            },
            diff: match state {
                StepState::Conflict { what } => Some(what.clone()),
                _ => None,
            },
            commands: vec![format!("vault policy write {p} - <<'EOF'\n{wanted}EOF")],
        }
    }
    async fn apply(
        &self,
        ctx: &ClusterCtx,
        state: &StepState,
        _: &(dyn Fn(String) + Sync),
    ) -> Result<Applied, StepError> {
        let wanted = policy_text(ctx.kv_version, ctx.name(), &ctx.secret_api_path());
        let mut applied = Applied {
            fingerprint: Some(sha256_hex(&[&wanted])),
            ..Default::default()
        };
        if matches!(state, StepState::Conflict { .. }) {
            let old = ctx.vault.read_policy(&ctx.names().policy).await?;
            applied.modified = true;
            applied.previous = json!({ "rules": old });
        }
        ctx.vault.write_policy(&ctx.names().policy, &wanted).await?;
        Ok(applied)
    }
    async fn rollback(&self, ctx: &ClusterCtx, entry: &JournalEntry) -> Result<(), StepError> {
        if let Some(old) = entry.previous["rules"].as_str() {
            ctx.vault.write_policy(&ctx.names().policy, old).await?;
        } else {
            ctx.vault.delete_policy(&ctx.names().policy).await?;
        }
        Ok(())
    }
}

pub fn unified_diff(old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .header("existing", "wanted")
        .to_string()
}

// ---------------------------------------------------------------- 11. role
pub struct RoleStep;

fn role_body(ctx: &ClusterCtx) -> Value {
    let n = ctx.names();
    json!({
        "bound_service_account_names": [ctx.cluster.istiod_service_account],
        "bound_service_account_namespaces": [n.namespace],
        "token_policies": [n.policy],
        "token_ttl": n.token_ttl,
    })
}

fn ttl_seconds(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'h' => (&s[..s.len() - 1], 3600),
        'm' => (&s[..s.len() - 1], 60),
        's' => (&s[..s.len() - 1], 1),
        'd' => (&s[..s.len() - 1], 86400),
        _ => (s, 1),
    };
    num.parse::<u64>().ok().map(|n| n * mult)
}

#[async_trait]
impl Step for RoleStep {
    fn id(&self) -> StepId {
        StepId::Role
    }
    fn title(&self, ctx: &ClusterCtx) -> String {
        format!(
            "Role auth/{}/role/{}",
            ctx.names().auth_path,
            ctx.names().role
        )
    }
    fn resource(&self, ctx: &ClusterCtx) -> String {
        format!("auth/{}/role/{}", ctx.names().auth_path, ctx.names().role)
    }
    fn can_overwrite(&self, _: &ClusterCtx) -> bool {
        true
    }
    async fn check(&self, ctx: &ClusterCtx) -> Result<StepState, StepError> {
        let n = ctx.names();
        if ctx.vault.auth_mount(&n.auth_path).await?.is_none() {
            return Ok(StepState::Absent);
        }
        let Some(role) = ctx.vault.read_role(&n.auth_path, &n.role).await? else {
            return Ok(StepState::Absent);
        };
        let mut diffs = Vec::new();
        let names = string_list(&role["bound_service_account_names"]);
        let sa = &ctx.cluster.istiod_service_account;
        if names != [sa.clone()] {
            diffs.push(format!(
                "bound_service_account_names {names:?}, wanted [{sa:?}]"
            ));
        }
        let nss = string_list(&role["bound_service_account_namespaces"]);
        if nss != [n.namespace.clone()] {
            diffs.push(format!(
                "bound_service_account_namespaces {nss:?}, wanted [{:?}]",
                n.namespace
            ));
        }
        let mut pols = string_list(&role["token_policies"]);
        if pols.is_empty() {
            pols = string_list(&role["policies"]);
        }
        if pols != [n.policy.clone()] {
            diffs.push(format!("token_policies {pols:?}, wanted [{:?}]", n.policy));
        }
        let ttl = role["token_ttl"]
            .as_u64()
            .or_else(|| role["ttl"].as_u64())
            .unwrap_or(0);
        if Some(ttl) != ttl_seconds(&n.token_ttl) {
            diffs.push(format!("token_ttl {ttl}s, wanted {}", n.token_ttl));
        }
        Ok(if diffs.is_empty() {
            StepState::Matches
        } else {
            StepState::Conflict {
                what: diffs.join("; "),
            }
        })
    }
    fn preview(&self, ctx: &ClusterCtx, state: &StepState) -> Preview {
        let n = ctx.names();
        Preview {
            summary: match state {
                StepState::Absent => format!(
                    "Create role {} at auth/{}: ServiceAccount {}/{} gets policy {} for {}",
                    n.role, n.auth_path, n.namespace, n.service_account, n.policy, n.token_ttl
                ),
                StepState::Conflict { what } => {
                    format!("Role {} exists and differs: {what}", n.role)
                }
                _ => format!(
                    "Role {} binds {}/{} to {}",
                    n.role, n.namespace, n.service_account, n.policy
                ),
            },
            changes: match state {
                StepState::Absent => vec![format!("+ auth/{}/role/{}", n.auth_path, n.role)],
                StepState::Conflict { .. } => {
                    vec![format!("~ auth/{}/role/{}", n.auth_path, n.role)]
                }
                _ => vec![],
            },
            diff: match state {
                StepState::Conflict { what } => Some(what.clone()),
                _ => None,
            },
            commands: vec![format!(
                "vault write auth/{}/role/{} bound_service_account_names={} bound_service_account_namespaces={} policies={} ttl={}",
                n.auth_path,
                n.role,
                ctx.cluster.istiod_service_account,
                n.namespace,
                n.policy,
                n.token_ttl
            )],
        }
    }
    async fn apply(
        &self,
        ctx: &ClusterCtx,
        state: &StepState,
        _: &(dyn Fn(String) + Sync),
    ) -> Result<Applied, StepError> {
        let n = ctx.names();
        let body = role_body(ctx);
        let mut applied = Applied {
            fingerprint: Some(sha256_hex(&[&body.to_string()])),
            ..Default::default()
        };
        if matches!(state, StepState::Conflict { .. }) {
            let old = ctx.vault.read_role(&n.auth_path, &n.role).await?;
            applied.modified = true;
            applied.previous = json!({ "role": old });
        }
        ctx.vault.write_role(&n.auth_path, &n.role, &body).await?;
        Ok(applied)
    }
    async fn rollback(&self, ctx: &ClusterCtx, entry: &JournalEntry) -> Result<(), StepError> {
        let n = ctx.names();
        match entry.previous.get("role") {
            Some(old) if old.is_object() => {
                let keep = [
                    "bound_service_account_names",
                    "bound_service_account_namespaces",
                    "token_policies",
                    "token_ttl",
                    "token_max_ttl",
                    "audience",
                    "alias_name_source",
                    "token_type",
                ];
                let body: serde_json::Map<String, Value> = keep
                    .iter()
                    .filter_map(|k| {
                        old.get(*k)
                            .filter(|v| !v.is_null())
                            .map(|v| (k.to_string(), v.clone()))
                    })
                    .collect();
                ctx.vault
                    .write_role(&n.auth_path, &n.role, &Value::Object(body))
                    .await?;
            }
            _ => {
                if ctx.vault.auth_mount(&n.auth_path).await?.is_some() {
                    ctx.vault.delete_role(&n.auth_path, &n.role).await?;
                }
            }
        }
        Ok(())
    }
}
