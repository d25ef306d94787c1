//! `doctor` headless: one diagnosis per cluster, the first failing link and its fix last.

use crate::cli::{Output, Report, exit};
use crate::config::Config;

use super::{Diagnosis, DoctorTarget, LinkStatus, diagnose};

pub fn run(
    config: Config,
    only: Option<String>,
    output: Output,
    _quiet: bool,
) -> Result<u8, Report> {
    if let Some(c) = &only
        && !config.clusters.iter().any(|x| &x.name == c)
    {
        return Err(Report::usage(format!("unknown cluster {c:?}")));
    }
    let rt = crate::cli::runtime()?;
    let diagnoses: Vec<Diagnosis> = rt.block_on(async {
        let targets = targets(&config, only.as_deref()).await?;
        let runs = targets.iter().map(diagnose);
        Ok::<_, Report>(futures::future::join_all(runs).await)
    })?;
    let healthy = diagnoses.iter().all(Diagnosis::healthy);
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({ "ok": healthy, "clusters": diagnoses })
        ),
        Output::Text => print_text(&diagnoses),
    }
    Ok(if healthy { exit::OK } else { exit::FAILED })
}

/// Connects to Vault and the clusters without requiring anything to be set up.
pub async fn targets(config: &Config, only: Option<&str>) -> Result<Vec<DoctorTarget>, Report> {
    let vault = crate::vault::VaultTarget::connect(config.vault.clone())
        .map_err(|e| Report::new(e.to_string(), exit::USAGE))?;
    vault
        .ensure_usable()
        .await
        .map_err(|e| Report::new(e.to_string(), exit::FAILED))?;
    let mut out = Vec::new();
    for c in config
        .clusters
        .iter()
        .filter(|c| only.is_none_or(|o| o == c.name))
    {
        let kube = crate::kube::connect(c.kubeconfig.as_deref(), c.context.as_deref())
            .await
            .map_err(|e| Report::new(format!("cluster {}: {e}", c.name), exit::FAILED))?;
        out.push(DoctorTarget {
            cluster: c.clone(),
            kube,
            vault: vault.clone(),
            kv_version: config.kv_version,
            istio: config.istio.clone(),
        });
    }
    Ok(out)
}

fn print_text(diagnoses: &[Diagnosis]) {
    for d in diagnoses {
        println!("cluster {}", d.cluster);
        for (i, l) in d.links.iter().enumerate() {
            let mark = match l.status {
                LinkStatus::Ok => "OK     ",
                LinkStatus::Fail => "FAIL   ",
                LinkStatus::Skipped => "SKIPPED",
            };
            println!("  {}. [{mark}] {}", i + 1, l.title);
            for e in &l.evidence {
                println!("       {e}");
            }
        }
    }
    let failures: Vec<(&str, &super::Link)> = diagnoses
        .iter()
        .filter_map(|d| d.first_failure().map(|l| (d.cluster.as_str(), l)))
        .collect();
    if failures.is_empty() {
        println!("all links OK");
    }
    for (cluster, l) in failures {
        println!("\n[{cluster}] first broken link: {}", l.title);
        if let Some(fix) = &l.fix {
            println!("fix:\n  {}", fix.replace('\n', "\n  "));
        }
    }
}
