//! istio-vault-wizard: puts Istio's plugged-in CA into Vault (or OpenBao) for one or many
//! clusters, and walks the chain behind istiod's "permission denied" when it breaks.
//!
//! Modules follow the data flow: `config` → `vault`/`kube` clients → `plan` (steps, engine,
//! journal) → front ends (`cli`, `tui`). `observe` and `doctor` read live state beside the plan.

pub mod certs;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod fsutil;
pub mod istio;
pub mod kube;
pub mod observe;
pub mod plan;
pub mod sandbox;
pub mod secret;
pub mod shell;
pub mod tui;
pub mod vault;
