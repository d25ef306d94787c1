//! `wire`: after Vault is ready, wire istiod to it per cluster. Detects the Vault agent
//! injector (or says exactly what to install), and patches an existing istiod Deployment
//! by server-side apply with our own field manager (or prints the helm commands with the
//! generated values when there is none). `--rollback` removes exactly what we added.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use super::{Output, Report, WireArgs, exit, runtime};
use crate::istio::{
    injector_helm_command, istiod_helm_commands, patch, values_for_cluster, wiring_for,
};

#[derive(Debug, serde::Serialize)]
struct ClusterWiring {
    cluster: String,
    injector: Option<String>,
    injector_fix: Option<String>,
    deployment: Option<String>,
    added: Vec<String>,
    conflicts: Vec<String>,
    action: String,
    commands: Vec<String>,
}

pub fn run(config: Option<PathBuf>, args: WireArgs, output: Output) -> Result<u8, Report> {
    let config = super::headless::load_config(config)?;
    for c in &args.clusters {
        if !config.clusters.iter().any(|x| &x.name == c) {
            return Err(Report::usage(format!("unknown cluster {c:?}")));
        }
    }
    if !args.yes && !std::io::stdin().is_terminal() {
        return Err(Report::usage(
            "wire asks before changing a Deployment and no terminal is attached: pass --yes",
        ));
    }
    let rt = runtime()?;
    let results = rt.block_on(async {
        let mut out = Vec::new();
        for c in config
            .clusters
            .iter()
            .filter(|c| args.clusters.is_empty() || args.clusters.contains(&c.name))
        {
            let kube = crate::kube::connect(c.kubeconfig.as_deref(), c.context.as_deref())
                .await
                .map_err(|e| Report::new(format!("cluster {}: {e}", c.name), exit::FAILED))?;
            let wiring = wiring_for(c, config.kv_version);
            let injector = crate::kube::has_vault_injector_webhook(&kube)
                .await
                .map_err(|e| Report::new(format!("cluster {}: {e}", c.name), exit::FAILED))?;
            let mut row = ClusterWiring {
                cluster: c.name.clone(),
                injector_fix: injector
                    .is_none()
                    .then(|| injector_helm_command(&config.vault.address)),
                injector,
                deployment: None,
                added: vec![],
                conflicts: vec![],
                action: String::new(),
                commands: vec![],
            };
            let deployment = crate::kube::istiod_deployment(&kube, &c.names.namespace)
                .await
                .map_err(|e| Report::new(format!("cluster {}: {e}", c.name), exit::FAILED))?;
            let Some(d) = deployment else {
                // No istiod yet: write the values and say how to install it.
                let dir = config.state_dir.join("values");
                crate::fsutil::create_private_dir(&dir)
                    .map_err(|e| Report::new(e.to_string(), exit::FAILED))?;
                let file = dir.join(format!("{}.yaml", c.name));
                std::fs::write(&file, values_for_cluster(&config, c))
                    .map_err(|e| Report::new(e.to_string(), exit::FAILED))?;
                row.action = format!(
                    "no istiod Deployment in {}: install it with the generated values",
                    c.names.namespace
                );
                row.commands = istiod_helm_commands(c, &file, &args.chart_repo);
                out.push(row);
                continue;
            };
            row.deployment = d.metadata.name.clone();
            if args.rollback {
                patch::rollback(&kube, &d)
                    .await
                    .map_err(|e| Report::new(e.to_string(), exit::FAILED))?;
                row.action = "removed the fields owned by field manager istio-vault-wizard".into();
                out.push(row);
                continue;
            }
            let plan = patch::plan(&d, &wiring);
            row.added = plan.add.clone();
            row.conflicts = plan.conflicts.clone();
            if plan.is_noop() {
                row.action = "already wired: nothing to change".into();
            } else if !plan.conflicts.is_empty() && !args.force {
                row.action =
                    "conflict: fields exist with other values (pass --force to take them over)"
                        .into();
            } else if args.yes || confirm(&c.name, &plan) {
                patch::apply(&kube, &d, &wiring, args.force)
                    .await
                    .map_err(|e| Report::new(e.to_string(), exit::FAILED))?;
                row.action = format!(
                    "patched {} field(s) by server-side apply",
                    plan.add.len() + plan.conflicts.len()
                );
            } else {
                row.action = "skipped".into();
            }
            out.push(row);
        }
        Ok::<_, Report>(out)
    })?;
    let conflict = results.iter().any(|r| r.action.starts_with("conflict"));
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({ "ok": !conflict, "clusters": results })
        ),
        Output::Text => {
            for r in &results {
                println!("cluster {}", r.cluster);
                match (&r.injector, &r.injector_fix) {
                    (Some(name), _) => println!("  injector: MutatingWebhookConfiguration {name}"),
                    (None, Some(fix)) => {
                        println!("  injector: NOT FOUND; install it with:\n    {fix}")
                    }
                    _ => {}
                }
                println!("  {}", r.action);
                for a in &r.added {
                    println!("    + {a}");
                }
                for c in &r.conflicts {
                    println!("    ! {c}");
                }
                for cmd in &r.commands {
                    println!("    $ {cmd}");
                }
            }
        }
    }
    Ok(if conflict { exit::CONFLICT } else { exit::OK })
}

fn confirm(cluster: &str, plan: &patch::PatchPlan) -> bool {
    eprintln!("[{cluster}] patch the istiod Deployment:");
    for a in &plan.add {
        eprintln!("  + {a}");
    }
    eprint!("Apply? [y/N] ");
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    matches!(line.trim(), "y" | "yes")
}
