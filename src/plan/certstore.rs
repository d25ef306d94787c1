//! Where a cluster's CA bundle comes from: an imported Istio cluster directory, or one the
//! wizard generates under `<state_dir>/certs/` in Istio's own layout (root shared by all
//! clusters, generated once; keys 0600). Only generated files are ever removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tokio::sync::Mutex;

use super::StepError;
use super::steps::fingerprint_fields;
use crate::certs;
use crate::config::{CertsSection, ClusterConfig, Config, KeyType};
use crate::secret::Secret;

/// The four PEMs istiod reads, as stored in Vault.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    pub ca_key: Secret,
    pub ca_cert: String,
    pub cert_chain: String,
    pub root_cert: String,
}

impl Bundle {
    /// Vault KV fields, named as in the article.
    pub fn kv_fields(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("ca_key".to_string(), self.ca_key.expose().to_string()),
            ("ca_cert".to_string(), self.ca_cert.clone()),
            ("cert_chain".to_string(), self.cert_chain.clone()),
            ("root_cert".to_string(), self.root_cert.clone()),
        ])
    }

    pub fn fingerprint(&self) -> String {
        fingerprint_fields(&self.kv_fields())
    }
}

pub struct CertStore {
    generated_dir: PathBuf,
    settings: CertsSection,
    imports: BTreeMap<String, PathBuf>,
    /// Serialises generation so parallel clusters share one root.
    gen_lock: Mutex<()>,
}

fn certs_err(e: impl std::fmt::Display) -> StepError {
    StepError::Certs(e.to_string())
}

impl CertStore {
    pub fn new(config: &Config) -> Self {
        Self {
            generated_dir: config.state_dir.join("certs"),
            settings: config.certs.clone(),
            imports: config
                .clusters
                .iter()
                .filter_map(|c| c.certs_dir.clone().map(|d| (c.name.clone(), d)))
                .collect(),
            gen_lock: Mutex::new(()),
        }
    }

    pub fn key_type(&self) -> KeyType {
        self.settings.key_type
    }

    fn cluster_dir(&self, cluster: &ClusterConfig) -> PathBuf {
        self.imports
            .get(&cluster.name)
            .cloned()
            .unwrap_or_else(|| self.generated_dir.join(&cluster.name))
    }

    pub fn generated_root(&self) -> &Path {
        &self.generated_dir
    }

    pub fn describe(&self, cluster: &ClusterConfig) -> String {
        self.cluster_dir(cluster).display().to_string()
    }

    pub fn generate_command(&self, cluster: &ClusterConfig) -> String {
        if let Some(dir) = self.imports.get(&cluster.name) {
            return format!("istio-vault-wizard certs check {}", dir.display());
        }
        let key = self.settings.key_type.flag();
        format!(
            "istio-vault-wizard certs generate --out {} --cluster {} --key-type {key}   # or: make -f istio/tools/certs/Makefile.selfsigned.mk {}-cacerts",
            self.generated_dir.display(),
            cluster.name,
            cluster.name
        )
    }

    /// The bundle if its four files exist (imported or generated earlier).
    pub fn load(&self, cluster: &ClusterConfig) -> Result<Option<Bundle>, StepError> {
        let dir = self.cluster_dir(cluster);
        if !dir.join("ca-cert.pem").exists() {
            return Ok(None);
        }
        let b = certs::load_cluster_dir(&dir).map_err(certs_err)?;
        Ok(Some(Bundle {
            ca_key: b.ca_key,
            ca_cert: b.ca_cert,
            cert_chain: b.cert_chain,
            root_cert: b.root_cert,
        }))
    }

    /// Blocking findings of the certs module's checks (warnings are not problems).
    pub fn problems(&self, b: &Bundle) -> Vec<String> {
        certs::check_bundle_pems(
            Some(b.ca_key.expose()),
            Some(&b.ca_cert),
            Some(&b.cert_chain),
            Some(&b.root_cert),
        )
        .into_iter()
        .filter(|f| f.is_error())
        .map(|f| f.to_string())
        .collect()
    }

    /// Generates (once) the root and this cluster's intermediate, unless present.
    pub async fn ensure(&self, cluster: &ClusterConfig) -> Result<Bundle, StepError> {
        let _guard = self.gen_lock.lock().await;
        if let Some(b) = self.load(cluster)? {
            return Ok(b);
        }
        if self.imports.contains_key(&cluster.name) {
            return Err(StepError::Blocked(format!(
                "nothing to import in {}",
                self.describe(cluster)
            )));
        }
        let out = self.generated_dir.clone();
        let settings = self.settings.clone();
        let name = cluster.name.clone();
        tokio::task::spawn_blocking(move || certs::generate_into(&out, &name, &settings))
            .await
            .map_err(certs_err)?
            .map_err(certs_err)?;
        self.load(cluster)?
            .ok_or_else(|| StepError::Certs("generated files are missing".into()))
    }

    /// Rollback: removes this cluster's generated directory (never an imported one), and
    /// the root once no cluster directory is left.
    pub fn remove_generated(&self, cluster: &ClusterConfig) -> Result<(), StepError> {
        if self.imports.contains_key(&cluster.name) {
            return Ok(());
        }
        let dir = self.generated_dir.join(&cluster.name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(certs_err)?;
        }
        let others = std::fs::read_dir(&self.generated_dir)
            .map(|rd| rd.filter_map(Result::ok).any(|e| e.path().is_dir()))
            .unwrap_or(false);
        if !others && self.generated_dir.exists() {
            std::fs::remove_dir_all(&self.generated_dir).map_err(certs_err)?;
        }
        Ok(())
    }
}
