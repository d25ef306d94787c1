//! Istio wiring: the injector annotations and Helm values that make istiod read its CA
//! from Vault, and the checks the doctor runs on a live pod template or a values file.

mod agent;
pub mod patch;
mod wiring;

pub use agent::{AgentConfigError, agent_config_from_annotations};

pub use wiring::{
    ChartStyle, FILES, IstiodWiring, WiringFinding, check_wiring, injector_helm_command,
    pod_annotations, template, values_for_cluster, values_yaml, wiring_for,
    wiring_from_values_yaml,
};
