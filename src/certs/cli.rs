//! `certs` subcommand: generate, check, inspect.

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};

use crate::cli::{Output, Report, exit};
use crate::config::{CertsSection, KeyType};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KeyTypeArg {
    Rsa4096,
    Rsa2048,
    EcP256,
    EcP384,
}

impl From<KeyTypeArg> for KeyType {
    fn from(k: KeyTypeArg) -> Self {
        match k {
            KeyTypeArg::Rsa4096 => KeyType::Rsa4096,
            KeyTypeArg::Rsa2048 => KeyType::Rsa2048,
            KeyTypeArg::EcP256 => KeyType::EcP256,
            KeyTypeArg::EcP384 => KeyType::EcP384,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum CertsAction {
    /// Generate a root CA (once) and one intermediate per cluster, in Istio's layout.
    Generate {
        /// Output directory: root-cert.pem, root-key.pem, and <cluster>/ with the four files.
        #[arg(long)]
        out: PathBuf,
        /// Cluster name (repeatable); each gets an intermediate with L=<cluster>.
        #[arg(long = "cluster", required = true)]
        clusters: Vec<String>,
        /// Key algorithm (Istio's default is RSA 4096).
        #[arg(long, value_enum, default_value_t = KeyTypeArg::Rsa4096)]
        key_type: KeyTypeArg,
        /// Root validity in days.
        #[arg(long, default_value_t = 3650)]
        root_days: u32,
        /// Intermediate validity in days.
        #[arg(long, default_value_t = 730)]
        int_days: u32,
        /// Reuse the root (root-cert.pem + root-key.pem) in this directory.
        #[arg(long)]
        root_dir: Option<PathBuf>,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Check a cluster directory (ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem).
    Check {
        /// The cluster directory.
        dir: PathBuf,
    },
}

pub fn run(action: CertsAction, output: Output) -> Result<u8, Report> {
    match action {
        CertsAction::Generate {
            out,
            clusters,
            key_type,
            root_days,
            int_days,
            root_dir,
            force,
        } => {
            let settings = CertsSection {
                key_type: key_type.into(),
                root_dir,
                root_days,
                intermediate_days: int_days,
            };
            for c in &clusters {
                let dir = out.join(c);
                if dir.join("ca-key.pem").exists() && !force {
                    return Err(Report::new(
                        format!(
                            "{} already exists: pass --force to overwrite",
                            dir.display()
                        ),
                        exit::FAILED,
                    ));
                }
                if force && dir.exists() {
                    std::fs::remove_dir_all(&dir).map_err(|e| {
                        Report::new(format!("{}: {e}", dir.display()), exit::FAILED)
                    })?;
                }
                super::generate_into(&out, c, &settings)
                    .map_err(|e| Report::new(e.to_string(), exit::FAILED))?;
            }
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::json!({ "ok": true, "out": out, "clusters": clusters })
                ),
                Output::Text => println!(
                    "wrote root and {} intermediate(s) to {}",
                    clusters.len(),
                    out.display()
                ),
            }
            Ok(exit::OK)
        }
        CertsAction::Check { dir } => {
            if !dir.is_dir() {
                return Err(Report::usage(format!(
                    "{} is not a directory",
                    dir.display()
                )));
            }
            let read = |n: &str| std::fs::read_to_string(dir.join(n)).ok();
            let (k, c, ch, r) = (
                read("ca-key.pem"),
                read("ca-cert.pem"),
                read("cert-chain.pem"),
                read("root-cert.pem"),
            );
            let findings =
                super::check_bundle_pems(k.as_deref(), c.as_deref(), ch.as_deref(), r.as_deref());
            let usable = !findings.iter().any(|f| f.is_error());
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::json!({ "ok": usable, "findings": findings })
                ),
                Output::Text => {
                    for f in &findings {
                        println!("{f}");
                    }
                    println!("{}", if usable { "usable" } else { "NOT usable" });
                }
            }
            Ok(if usable { exit::OK } else { exit::FAILED })
        }
    }
}
