//! `certs` subcommand: generate, check, inspect.

use std::path::PathBuf;

use clap::Subcommand;
use time::OffsetDateTime;

use super::{
    CertsError, ClusterBundle, GenerateOptions, KeyType, PemItem, Severity, generate::write_layout,
};
use crate::cli::{Output, Report, exit};

#[derive(Debug, Subcommand)]
pub enum CertsAction {
    /// Generate a root CA and one intermediate per cluster, in Istio's layout
    /// (OUT/root-{cert,key}.pem, OUT/<cluster>/{ca-key,ca-cert,cert-chain,root-cert}.pem).
    Generate {
        /// Output directory (created 0700 if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Cluster name (repeatable); each gets an intermediate with L=<cluster> in OUT/<cluster>/.
        #[arg(long = "cluster", value_name = "NAME", required = true)]
        clusters: Vec<String>,
        /// Key algorithm of the root and the intermediates.
        #[arg(long, value_enum, default_value_t = KeyType::Rsa4096)]
        key_type: KeyType,
        /// Root subject O= (Istio's ROOTCA_ORG).
        #[arg(long, default_value = "Istio")]
        root_org: String,
        /// Root subject CN= (Istio's ROOTCA_CN).
        #[arg(long, default_value = "Root CA")]
        root_cn: String,
        /// Root validity in days (Istio's ROOTCA_DAYS).
        #[arg(long, default_value_t = 3650, value_name = "N")]
        root_days: u32,
        /// Intermediate subject O= (Istio's INTERMEDIATE_ORG).
        #[arg(long, default_value = "Istio")]
        int_org: String,
        /// Intermediate subject CN= (Istio's INTERMEDIATE_CN).
        #[arg(long, default_value = "Intermediate CA")]
        int_cn: String,
        /// Intermediate validity in days (Istio's INTERMEDIATE_DAYS).
        #[arg(long, default_value_t = 730, value_name = "N")]
        int_days: u32,
        /// DNS subject alternative name of the intermediates (repeatable; replaces the
        /// default istiod.istio-system.svc).
        #[arg(long = "san", value_name = "DNS")]
        sans: Vec<String>,
        /// Reuse the root in this directory (root-cert.pem + root-key.pem) instead of
        /// generating one; its key is not copied into OUT.
        #[arg(long, value_name = "DIR")]
        root_dir: Option<PathBuf>,
        /// Replace existing files (default: refuse to overwrite anything).
        #[arg(long)]
        force: bool,
    },
    /// Check a cluster directory (ca-key.pem, ca-cert.pem, cert-chain.pem, root-cert.pem)
    /// as istiod will use it. Exit 0 if usable (warnings allowed), 1 if not.
    Check {
        /// The cluster directory.
        dir: PathBuf,
    },
    /// Describe the certificates in PEM files (subject, issuer, serial, SHA-256
    /// fingerprint, validity, key, CA flag, SANs). Private keys are named, never shown.
    Inspect {
        /// PEM files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

fn failed(e: CertsError) -> Report {
    match e {
        CertsError::Exists { .. } => Report::new(e.to_string(), exit::FAILED)
            .hint("pass --force to replace the existing files, or choose another --out"),
        CertsError::InvalidOption(m) => Report::usage(m),
        e => Report::new(e.to_string(), exit::FAILED),
    }
}

pub fn run(action: CertsAction, output: Output) -> Result<u8, Report> {
    match action {
        CertsAction::Generate {
            out,
            clusters,
            key_type,
            root_org,
            root_cn,
            root_days,
            int_org,
            int_cn,
            int_days,
            sans,
            root_dir,
            force,
        } => {
            let mut opts = GenerateOptions {
                key_type,
                root_org,
                root_cn,
                root_days,
                int_org,
                int_cn,
                int_days,
                ..GenerateOptions::default()
            };
            if !sans.is_empty() {
                opts.int_sans = sans;
            }
            generate(out, clusters, root_dir, &opts, force, output)
        }
        CertsAction::Check { dir } => check(dir, output),
        CertsAction::Inspect { files } => inspect(files, output),
    }
}

fn generate(
    out: PathBuf,
    clusters: Vec<String>,
    root_dir: Option<PathBuf>,
    opts: &GenerateOptions,
    force: bool,
    output: Output,
) -> Result<u8, Report> {
    let mut seen = std::collections::HashSet::new();
    for c in &clusters {
        super::generate::check_cluster_name(c).map_err(failed)?;
        if !seen.insert(c) {
            return Err(Report::usage(format!("cluster {c:?} given twice")));
        }
    }
    if out.exists() && !out.is_dir() {
        return Err(Report::usage(format!(
            "{} is not a directory",
            out.display()
        )));
    }
    let (root, with_key) = match &root_dir {
        Some(d) => {
            if !d.is_dir() {
                return Err(Report::usage(format!(
                    "--root-dir {} is not a directory",
                    d.display()
                )));
            }
            let same = d
                .canonicalize()
                .ok()
                .is_some_and(|d| out.canonicalize().ok() == Some(d));
            (super::load_root_dir(d).map_err(failed)?, same)
        }
        None => (super::generate_root(opts).map_err(failed)?, true),
    };
    let bundles: Vec<ClusterBundle> = clusters
        .iter()
        .map(|c| super::generate_intermediate(&root, c, opts))
        .collect::<Result<_, _>>()
        .map_err(failed)?;
    let pairs: Vec<(&str, &ClusterBundle)> = clusters
        .iter()
        .map(String::as_str)
        .zip(bundles.iter())
        .collect();
    let written = write_layout(&out, &root, with_key, &pairs, force).map_err(failed)?;
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "ok": true,
                "out": out,
                "clusters": clusters,
                "root_reused": root_dir.is_some(),
                "written": written,
            })
        ),
        Output::Text => {
            for p in &written {
                println!("wrote {}", p.display());
            }
            println!(
                "{} root and {} intermediate(s) in {}",
                if root_dir.is_some() {
                    "reused"
                } else {
                    "generated"
                },
                clusters.len(),
                out.display()
            );
        }
    }
    Ok(exit::OK)
}

fn check(dir: PathBuf, output: Output) -> Result<u8, Report> {
    if !dir.is_dir() {
        return Err(Report::usage(format!(
            "{} is not a directory (give a cluster directory holding ca-key.pem, ca-cert.pem, cert-chain.pem, root-cert.pem)",
            dir.display()
        )));
    }
    let findings = super::check_dir(&dir).map_err(|e| Report::usage(e.to_string()))?;
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
    let usable = errors == 0;
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "ok": usable,
                "dir": dir,
                "errors": errors,
                "warnings": warnings,
                "findings": findings,
            })
        ),
        Output::Text => {
            for f in &findings {
                println!("{f}");
            }
            if usable {
                println!("verdict: usable by istiod ({warnings} warning(s))");
            } else {
                println!(
                    "verdict: NOT usable by istiod ({errors} error(s), {warnings} warning(s))"
                );
            }
        }
    }
    Ok(if usable { exit::OK } else { exit::FAILED })
}

fn inspect(files: Vec<PathBuf>, output: Output) -> Result<u8, Report> {
    for f in &files {
        if !f.is_file() {
            return Err(Report::usage(format!("{} is not a file", f.display())));
        }
    }
    let now = OffsetDateTime::now_utc();
    let mut code = exit::OK;
    let mut docs = Vec::new();
    for f in &files {
        let items = std::fs::read(f).map_err(|e| e.to_string()).and_then(|b| {
            super::inspect_items(&String::from_utf8_lossy(&b), now).map_err(|e| e.to_string())
        });
        match items {
            Ok(items) => {
                if items
                    .iter()
                    .any(|i| matches!(i, PemItem::Unreadable { .. }))
                {
                    code = exit::FAILED;
                }
                if output == Output::Text {
                    println!("{}:", f.display());
                    for (n, item) in items.iter().enumerate() {
                        print_item(n + 1, item);
                    }
                }
                docs.push(serde_json::json!({ "file": f, "items": items }));
            }
            Err(e) => {
                code = exit::FAILED;
                if output == Output::Text {
                    println!("{}:\n  error: {e}", f.display());
                }
                docs.push(serde_json::json!({ "file": f, "error": e }));
            }
        }
    }
    if output == Output::Json {
        println!(
            "{}",
            serde_json::json!({ "ok": code == exit::OK, "files": docs })
        );
    }
    Ok(code)
}

fn print_item(n: usize, item: &PemItem) {
    match item {
        PemItem::Certificate(c) => {
            println!("  [{n}] certificate");
            println!("      subject:     {}", c.subject);
            println!("      issuer:      {}", c.issuer);
            println!("      serial:      {}", c.serial);
            println!("      sha256:      {}", c.sha256_fingerprint);
            println!("      not before:  {}", c.not_before);
            println!(
                "      not after:   {} ({} days left)",
                c.not_after, c.days_left
            );
            println!("      key:         {} {} bits", c.key_type, c.key_bits);
            println!(
                "      CA:          {}{}{}",
                if c.is_ca { "yes" } else { "no" },
                c.path_len
                    .map(|p| format!(", pathlen:{p}"))
                    .unwrap_or_default(),
                if c.self_signed { ", self-signed" } else { "" }
            );
            println!(
                "      key usage:   {}",
                if c.key_usage.is_empty() {
                    "(none)".into()
                } else {
                    c.key_usage.join(", ")
                }
            );
            println!(
                "      SANs:        {}",
                if c.sans.is_empty() {
                    "(none)".into()
                } else {
                    c.sans.join(", ")
                }
            );
            println!("      signature:   {}", c.signature_algorithm);
        }
        PemItem::PrivateKey(k) => {
            println!(
                "  [{n}] private key: {} {} bits, {} (content not shown)",
                k.key_type, k.key_bits, k.format
            );
        }
        PemItem::Other { label } => println!("  [{n}] {label} (not described)"),
        PemItem::Unreadable { label, reason } => println!("  [{n}] {label}: unreadable: {reason}"),
    }
}
