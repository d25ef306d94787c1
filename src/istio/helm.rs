//! The helm CLI, aimed at one cluster. The same argument vectors are run and shown in
//! previews, so what the operator reads is what runs. Helm is invoked, not linked: the
//! operator's helm (its repos, its plugins, its credentials) is the one that installs.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::Deserialize;

use crate::config::IstioSection;
use crate::shell::quote;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelmError {
    #[error("helm is not available ({bin}): {reason}")]
    NotFound { bin: String, reason: String },
    #[error("chart {chart} is not reachable: {reason}")]
    ChartUnreachable { chart: String, reason: String },
    #[error("`{command}` failed (exit {status}): {stderr}")]
    Failed {
        command: String,
        status: i32,
        stderr: String,
    },
    #[error("unexpected output of `{command}`: {reason}")]
    Output { command: String, reason: String },
}

/// The public chart repositories the `[istio]` defaults name, by alias.
const KNOWN_REPOS: &[(&str, &str)] = &[
    ("hashicorp", "https://helm.releases.hashicorp.com"),
    (
        "istio",
        "https://istio-release.storage.googleapis.com/charts",
    ),
];

/// `(alias, url)` when `chart` is `<alias>/<name>` of a well-known repository (and not a
/// local directory that happens to look like one).
pub fn known_repo(chart: &str) -> Option<(&'static str, &'static str)> {
    let (alias, _) = chart.split_once('/')?;
    if Path::new(chart).exists() {
        return None;
    }
    KNOWN_REPOS.iter().copied().find(|(a, _)| *a == alias)
}

impl HelmError {
    /// The helm lines that make an unreachable `<alias>/<chart>` reachable: `repo add` when
    /// helm has no such repository, `repo update` when it has one whose index lacks the
    /// chart. Only for the well-known aliases (an operator's own alias has a URL we cannot
    /// guess) and never for local chart directories.
    pub fn repo_setup(&self, helm: &Helm) -> Vec<String> {
        let HelmError::ChartUnreachable { chart, reason } = self else {
            return vec![];
        };
        let Some((alias, url)) = known_repo(chart) else {
            return vec![];
        };
        if reason.contains(&format!("repo {alias} not found")) {
            vec![
                helm.command_line(&["repo", "add", alias, url]),
                helm.command_line(&["repo", "update", alias]),
            ]
        } else if reason.contains("not found") {
            vec![helm.command_line(&["repo", "update", alias])]
        } else {
            vec![]
        }
    }
}

/// One release as `helm list -o json` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Release {
    pub name: String,
    pub namespace: String,
    /// helm prints the revision as a string.
    #[serde(deserialize_with = "revision_number")]
    pub revision: u32,
    pub status: String,
    pub chart: String,
    #[serde(default)]
    pub app_version: String,
}

fn revision_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Rev {
        S(String),
        N(u32),
    }
    match Rev::deserialize(d)? {
        Rev::N(n) => Ok(n),
        Rev::S(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

/// The parts of `Chart.yaml` the wizard reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChartMeta {
    pub name: String,
    pub version: String,
    #[serde(default, rename = "appVersion")]
    pub app_version: Option<String>,
}

impl ChartMeta {
    /// The application version, else the chart version (Istio versions them alike).
    pub fn istio_version(&self) -> &str {
        self.app_version.as_deref().unwrap_or(&self.version)
    }
}

/// What `upgrade --install` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct Install<'a> {
    pub release: &'a str,
    pub chart: &'a str,
    pub namespace: &'a str,
    pub values_files: Vec<PathBuf>,
    pub set: Vec<(String, String)>,
    pub create_namespace: bool,
    /// Keep the values of the installed release and merge ours on top.
    pub reuse_values: bool,
}

/// The Vault agent injector in injector-only mode: `global.externalVaultAddr` (chart >=
/// 0.21, replacing the deprecated `injector.externalVaultAddr` the article uses) points the
/// injected agents at the external Vault and leaves the in-cluster server disabled.
pub fn injector_install<'a>(s: &'a IstioSection, vault_address: &str) -> Install<'a> {
    Install {
        release: &s.injector_release,
        chart: &s.injector_chart,
        namespace: &s.injector_namespace,
        set: vec![
            ("global.externalVaultAddr".into(), vault_address.to_string()),
            ("injector.enabled".into(), "true".into()),
        ],
        create_namespace: true,
        ..Install::default()
    }
}

pub const BASE_RELEASE: &str = "istio-base";
pub const ISTIOD_RELEASE: &str = "istio-istiod";

/// `istio-base` (CRDs and cluster-wide objects) into the istio namespace.
pub fn istio_base_install<'a>(s: &'a IstioSection, namespace: &'a str) -> Install<'a> {
    Install {
        release: BASE_RELEASE,
        chart: &s.base_chart,
        namespace,
        create_namespace: true,
        ..Install::default()
    }
}

/// `istio-istiod` with the generated values (and the revision, when configured).
pub fn istiod_install<'a>(
    s: &'a IstioSection,
    namespace: &'a str,
    values_file: PathBuf,
    reuse_values: bool,
) -> Install<'a> {
    let set = s
        .revision
        .as_deref()
        .filter(|r| !r.is_empty())
        .map(|r| vec![("revision".to_string(), r.to_string())])
        .unwrap_or_default();
    Install {
        release: ISTIOD_RELEASE,
        chart: &s.istiod_chart,
        namespace,
        values_files: vec![values_file],
        set,
        reuse_values,
        ..Install::default()
    }
}

#[derive(Debug, Clone)]
pub struct Helm {
    pub bin: String,
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

impl Helm {
    pub fn new(bin: &str, kubeconfig: Option<&Path>, context: Option<&str>) -> Helm {
        Helm {
            bin: bin.to_string(),
            kubeconfig: kubeconfig.map(Path::to_path_buf),
            context: context.map(str::to_string),
        }
    }

    fn target_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(k) = &self.kubeconfig {
            a.push("--kubeconfig".into());
            a.push(k.display().to_string());
        }
        if let Some(c) = &self.context {
            a.push("--kube-context".into());
            a.push(c.clone());
        }
        a
    }

    /// The shell line for `args`, as previews and runbooks show it.
    pub fn command_line<S: AsRef<str>>(&self, args: &[S]) -> String {
        std::iter::once(quote(&self.bin))
            .chain(args.iter().map(|a| quote(a.as_ref())))
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn upgrade_install_args(&self, i: &Install) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "upgrade".into(),
            "--install".into(),
            i.release.into(),
            i.chart.into(),
        ];
        a.extend(self.target_args());
        a.extend(["--namespace".into(), i.namespace.into()]);
        if i.create_namespace {
            a.push("--create-namespace".into());
        }
        if i.reuse_values {
            a.push("--reuse-values".into());
        }
        for f in &i.values_files {
            a.extend(["--values".into(), f.display().to_string()]);
        }
        for (k, v) in &i.set {
            a.extend(["--set".into(), format!("{k}={v}")]);
        }
        a
    }

    pub fn uninstall_args(&self, release: &str, namespace: &str) -> Vec<String> {
        let mut a: Vec<String> = vec!["uninstall".into(), release.into()];
        a.extend(self.target_args());
        a.extend(["--namespace".into(), namespace.into()]);
        a
    }

    pub fn rollback_args(&self, release: &str, namespace: &str, revision: u32) -> Vec<String> {
        let mut a: Vec<String> = vec!["rollback".into(), release.into(), revision.to_string()];
        a.extend(self.target_args());
        a.extend(["--namespace".into(), namespace.into()]);
        a
    }

    async fn run(&self, args: &[String]) -> Result<String, HelmError> {
        let out = tokio::process::Command::new(&self.bin)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| HelmError::NotFound {
                bin: self.bin.clone(),
                reason: e.to_string(),
            })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(HelmError::Failed {
                command: self.command_line(args),
                status: out.status.code().unwrap_or(-1),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    /// `helm version --short`: proves the binary runs.
    pub async fn version(&self) -> Result<String, HelmError> {
        match self.run(&["version".into(), "--short".into()]).await {
            Ok(v) => Ok(v.trim().to_string()),
            Err(HelmError::Failed { stderr, .. }) => Err(HelmError::NotFound {
                bin: self.bin.clone(),
                reason: stderr,
            }),
            Err(e) => Err(e),
        }
    }

    /// `helm show chart`: the chart (repo alias path or local directory) can be loaded;
    /// its metadata says which Istio version will render the values.
    pub async fn chart_reachable(&self, chart: &str) -> Result<ChartMeta, HelmError> {
        match self
            .run(&["show".into(), "chart".into(), chart.into()])
            .await
        {
            Ok(text) => serde_yaml::from_str(&text).map_err(|e| HelmError::Output {
                command: format!("helm show chart {chart}"),
                reason: e.to_string(),
            }),
            Err(HelmError::Failed { stderr, .. }) => Err(HelmError::ChartUnreachable {
                chart: chart.into(),
                reason: stderr,
            }),
            Err(e) => Err(e),
        }
    }

    /// The release, if installed in `namespace` (any status).
    pub async fn release(&self, name: &str, namespace: &str) -> Result<Option<Release>, HelmError> {
        let mut args: Vec<String> = vec![
            "list".into(),
            "--all".into(),
            "--filter".into(),
            format!("^{}$", regex_escape(name)),
            "--output".into(),
            "json".into(),
        ];
        args.extend(self.target_args());
        args.extend(["--namespace".into(), namespace.into()]);
        let out = self.run(&args).await?;
        let list: Vec<Release> =
            serde_json::from_str(out.trim()).map_err(|e| HelmError::Output {
                command: self.command_line(&args),
                reason: e.to_string(),
            })?;
        Ok(list.into_iter().find(|r| r.name == name))
    }

    /// The user-supplied values of the installed release (`helm get values -o json`).
    pub async fn values(
        &self,
        name: &str,
        namespace: &str,
    ) -> Result<serde_json::Value, HelmError> {
        let mut args: Vec<String> = vec![
            "get".into(),
            "values".into(),
            name.into(),
            "--output".into(),
            "json".into(),
        ];
        args.extend(self.target_args());
        args.extend(["--namespace".into(), namespace.into()]);
        let out = self.run(&args).await?;
        serde_json::from_str(out.trim()).map_err(|e| HelmError::Output {
            command: self.command_line(&args),
            reason: e.to_string(),
        })
    }

    pub async fn upgrade_install(&self, i: &Install<'_>) -> Result<(), HelmError> {
        self.run(&self.upgrade_install_args(i)).await.map(|_| ())
    }

    pub async fn uninstall(&self, release: &str, namespace: &str) -> Result<(), HelmError> {
        self.run(&self.uninstall_args(release, namespace))
            .await
            .map(|_| ())
    }

    pub async fn rollback(
        &self,
        release: &str,
        namespace: &str,
        revision: u32,
    ) -> Result<(), HelmError> {
        self.run(&self.rollback_args(release, namespace, revision))
            .await
            .map(|_| ())
    }
}

/// helm's `--filter` is a Go regexp; release names are DNS labels, but be exact anyway.
fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                vec![c]
            } else {
                vec!['\\', c]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_repos_get_their_repo_add_lines() {
        let h = Helm::new("helm", None, None);
        assert_eq!(
            known_repo("hashicorp/vault"),
            Some(("hashicorp", "https://helm.releases.hashicorp.com"))
        );
        assert_eq!(known_repo("mycorp/vault"), None);
        assert_eq!(known_repo("vault"), None);
        let missing = HelmError::ChartUnreachable {
            chart: "istio/istiod".into(),
            reason: "Error: repo istio not found".into(),
        };
        assert_eq!(
            missing.repo_setup(&h),
            [
                "helm repo add istio https://istio-release.storage.googleapis.com/charts",
                "helm repo update istio"
            ]
        );
        let stale = HelmError::ChartUnreachable {
            chart: "istio/istiod".into(),
            reason: "Error: chart \"istiod\" matching  not found in istio index".into(),
        };
        assert_eq!(stale.repo_setup(&h), ["helm repo update istio"]);
        let offline = HelmError::ChartUnreachable {
            chart: "istio/istiod".into(),
            reason: "Error: Get \"https://...\": dial tcp: lookup failed".into(),
        };
        assert!(offline.repo_setup(&h).is_empty());
        let own = HelmError::ChartUnreachable {
            chart: "mycorp/istiod".into(),
            reason: "Error: repo mycorp not found".into(),
        };
        assert!(own.repo_setup(&h).is_empty(), "no URL is guessed");
    }

    #[test]
    fn install_line_names_release_namespace_and_values() {
        let h = Helm::new(
            "helm",
            Some(Path::new("/tmp/kube config")),
            Some("cluster1"),
        );
        let line = h.command_line(&h.upgrade_install_args(&Install {
            release: "vault-inject",
            chart: "hashicorp/vault",
            namespace: "vault",
            set: vec![
                ("global.externalVaultAddr".into(), "https://v:8200".into()),
                ("injector.enabled".into(), "true".into()),
            ],
            create_namespace: true,
            ..Install::default()
        }));
        assert_eq!(
            line,
            "helm upgrade --install vault-inject hashicorp/vault --kubeconfig '/tmp/kube config' --kube-context cluster1 --namespace vault --create-namespace --set global.externalVaultAddr=https://v:8200 --set injector.enabled=true"
        );
    }

    #[test]
    fn list_output_parses_string_revisions() {
        let r: Vec<Release> = serde_json::from_str(
            r#"[{"name":"vault-inject","namespace":"vault","revision":"3","updated":"x","status":"deployed","chart":"vault-0.28.1","app_version":"1.17"}]"#,
        )
        .expect("parses");
        assert_eq!(r[0].revision, 3);
        assert_eq!(regex_escape("a.b"), "a\\.b");
    }
}
