//! Istio wiring: the injector annotations and Helm values that make istiod read its CA
//! from Vault, the agent config the injector would build from them, the checks the doctor
//! runs on a live pod template or a values file, and recognisers for the istiod and Vault
//! agent log lines that show whether it worked.

mod agent;
pub mod helm;
pub mod logs;
pub mod patch;
mod values;

pub use agent::{
    AgentConfigError, agent_config_from_annotations, bao_agent_config,
    bao_agent_config_from_annotations,
};

pub use values::{
    ANNOTATION_PREFIX, ChartStyle, DEFAULT_FILE_PERMS, DEFAULT_SECRET_DIR, FILES, GATEWAY_FILES,
    GatewayWiring, ISTIOD_DEFAULT_CA_DIR, IstiodWiring, StringMap, WiringFinding,
    check_values_yaml, check_wiring, gateway_annotations, gateway_snippet, injector_values,
    istiod_service_account, parse_go_bool, perms_readable_by_others, pod_annotations, shell_quote,
    template, template_data_refs, values_for_cluster, values_yaml, wiring_for,
    wiring_from_values_yaml,
};

pub use logs::{
    CaVerdict, CertMismatch, ExpectedCert, LogEvent, LogStatus, LogSummary, X509Line,
    compare_with_vault, entries, normalise_serial, recognise, same_dn, summarise, summarise_for,
};

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IstioError {
    #[error("annotation {0} is missing")]
    MissingAnnotation(String),
    #[error("annotation {annotation} is invalid: {reason}")]
    BadAnnotation { annotation: String, reason: String },
    #[error("annotation {0} has an unsafe file name")]
    BadFileName(String),
    #[error(
        "vault.hashicorp.com/agent-inject is not \"true\": the injector would not inject an agent"
    )]
    InjectionDisabled,
    #[error("not a usable Helm values file: {0}")]
    InvalidValues(String),
    #[error("not an istiod x509 log line: {0}")]
    NotX509Line(String),
}
