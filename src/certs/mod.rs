//! Istio CA certificates: generate (rcgen), parse and check (x509-parser), fingerprints.

mod bundle;
pub mod cli;

pub use bundle::{
    BundleError, BundleFinding, LoadedBundle, check_bundle_pems, generate_into, load_cluster_dir,
};
