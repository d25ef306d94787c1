//! The verify step's judgement (criterion): istiod startup logs padded with ordinary
//! lines to 10k and 100k lines, as a long-running istiod's `kubectl logs` would be, with
//! the article's agent and discovery lines inside; plus the worst case of the follower,
//! which re-judges after each recognised line.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use istio_vault_wizard::istio::ExpectedCert;
use istio_vault_wizard::plan::istio_steps::judge;

fn fixture(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/istio")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn expected() -> Vec<ExpectedCert> {
    vec![
        ExpectedCert {
            serial_hex: "de:df:29:8a:14:76:81:d6".into(),
            subject: "O=Istio, CN=Intermediate CA, L=istiod-cluster1".into(),
            not_before: "2022-11-17T22:01:54Z".into(),
            not_after: "2024-11-16T22:01:54Z".into(),
        },
        ExpectedCert {
            serial_hex: "00F5BCD7E89BDB6248".into(),
            subject: "O=Istio, CN=Root CA".into(),
            not_before: "2022-11-17T22:01:52Z".into(),
            not_after: "2032-11-14T22:01:52Z".into(),
        },
    ]
}

fn log(total: usize) -> Vec<String> {
    let agent = fixture("article-vault-agent-init.log");
    let discovery = fixture("article-discovery.log");
    let mut lines: Vec<String> = agent.lines().map(str::to_string).collect();
    lines.extend(discovery.lines().map(str::to_string));
    let mut i = 0;
    while lines.len() < total {
        lines.push(format!(
            "2024-05-01T10:00:{:02}.{:06}Z\tinfo\tads\tXDS: Pushing:{i} Services:12 ConnectedEndpoints:3",
            i % 60,
            i % 1_000_000
        ));
        i += 1;
    }
    lines
}

fn judge_logs(c: &mut Criterion) {
    let exp = expected();
    for n in [10_000usize, 100_000] {
        let lines = log(n);
        assert!(judge(&lines, "/vault/secrets", &exp).is_ok());
        let mut g = c.benchmark_group("verify judge");
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("{n} lines"), |b| {
            b.iter(|| judge(black_box(&lines), "/vault/secrets", &exp))
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = judge_logs
}
criterion_main!(benches);
