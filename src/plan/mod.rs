//! The setup plan: every step of the procedure as data with check / preview / apply /
//! verify / rollback, the engine that runs them (clusters in parallel, steps in order),
//! and the journal that makes runs resumable and undoable.

pub mod certstore;
pub mod engine;
pub mod export;
pub mod istio_steps;
pub mod journal;
pub mod steps;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::kube::KubeError;
use crate::vault::VaultError;

/// Step identifiers, in dependency order within a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepId {
    Namespace,
    ServiceAccount,
    TokenSecret,
    ReviewerBinding,
    ReadCredentials,
    AuthMount,
    AuthConfig,
    Certificates,
    KvMount,
    KvSecret,
    Policy,
    Role,
    // The Istio phase (`wire`): after Vault is ready.
    Injector,
    Istiod,
    Gateways,
    Verify,
}

/// The procedure's two halves: Vault and its Kubernetes auth, then istiod's wiring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Vault,
    Istio,
}

impl StepId {
    pub const ISTIO: [StepId; 4] = [
        StepId::Injector,
        StepId::Istiod,
        StepId::Gateways,
        StepId::Verify,
    ];

    pub const ALL: [StepId; 16] = [
        StepId::Namespace,
        StepId::ServiceAccount,
        StepId::TokenSecret,
        StepId::ReviewerBinding,
        StepId::ReadCredentials,
        StepId::AuthMount,
        StepId::AuthConfig,
        StepId::Certificates,
        StepId::KvMount,
        StepId::KvSecret,
        StepId::Policy,
        StepId::Role,
        StepId::Injector,
        StepId::Istiod,
        StepId::Gateways,
        StepId::Verify,
    ];

    pub fn phase(self) -> Phase {
        if StepId::ISTIO.contains(&self) {
            Phase::Istio
        } else {
            Phase::Vault
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StepId::Namespace => "namespace",
            StepId::ServiceAccount => "service-account",
            StepId::TokenSecret => "token-secret",
            StepId::ReviewerBinding => "reviewer-binding",
            StepId::ReadCredentials => "read-credentials",
            StepId::AuthMount => "auth-mount",
            StepId::AuthConfig => "auth-config",
            StepId::Certificates => "certificates",
            StepId::KvMount => "kv-mount",
            StepId::KvSecret => "kv-secret",
            StepId::Policy => "policy",
            StepId::Role => "role",
            StepId::Injector => "injector",
            StepId::Istiod => "istiod",
            StepId::Gateways => "gateways",
            StepId::Verify => "verify",
        }
    }

    pub fn parse(s: &str) -> Option<StepId> {
        StepId::ALL.into_iter().find(|id| id.as_str() == s)
    }

    /// Steps that only read (nothing to create, nothing to roll back).
    pub fn is_read_only(self) -> bool {
        matches!(self, StepId::ReadCredentials | StepId::Verify)
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `check` found on the live systems.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum StepState {
    /// Not there yet: apply creates it.
    Absent,
    /// There and as wanted: nothing to do.
    Matches,
    /// There but different; `what` names the difference.
    Conflict { what: String },
    /// Cannot be checked or applied yet (an earlier step is missing, or no permission).
    Blocked { reason: String },
}

impl StepState {
    pub fn label(&self) -> &'static str {
        match self {
            StepState::Absent => "absent",
            StepState::Matches => "present",
            StepState::Conflict { .. } => "conflict",
            StepState::Blocked { .. } => "blocked",
        }
    }
}

/// What a step will do, for a human and for a script.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Preview {
    pub summary: String,
    pub changes: Vec<String>,
    /// Unified diff of existing vs wanted, when something exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// The equivalent vault / kubectl commands.
    pub commands: Vec<String>,
}

/// The operator's answer to a preview.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    Apply,
    Skip,
    Abort,
}

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error("certificates: {0}")]
    Certs(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("blocked: {0}")]
    Blocked(String),
    #[error(transparent)]
    Helm(#[from] crate::istio::helm::HelmError),
    #[error("verification failed: {0}")]
    Verify(String),
    #[error(transparent)]
    Journal(#[from] journal::JournalError),
}

impl StepError {
    /// A hint for the operator, derived from the server's answer.
    pub fn hint(&self) -> Option<String> {
        match self {
            StepError::Vault(VaultError::Api { status: 403, .. }) => Some(
                "the Vault token lacks permission for this call: use a token whose policy allows sys/auth, sys/mounts, sys/policy and the auth/KV paths"
                    .into(),
            ),
            StepError::Vault(VaultError::Sealed(_)) => Some("unseal Vault, then run apply again".into()),
            StepError::Vault(VaultError::Unreachable { .. }) => {
                Some("check VAULT_ADDR and that Vault is running; apply resumes from the journal".into())
            }
            StepError::Kube(KubeError::Api { status: Some(403), .. }) => {
                Some("the kubeconfig user lacks RBAC permission for this object".into())
            }
            StepError::Kube(KubeError::Unreachable { .. }) | StepError::Kube(KubeError::Api { status: None, .. }) => {
                Some("check the cluster's API server; apply resumes from the journal".into())
            }
            StepError::Conflict(_) => Some("decide: remove or rename the existing object, or change the name in wizard.toml".into()),
            _ => None,
        }
    }
}
