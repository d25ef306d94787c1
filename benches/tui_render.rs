//! TUI benchmarks (criterion): steps screen with live panes at 200×50, the log pane
//! ingesting 1,000,000 lines and rendering with the buffer full, start to first frame.
//! Resident memory after the 1M-line ingest is printed (VmRSS from /proc).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use istio_vault_wizard::tui::fixtures;
use istio_vault_wizard::tui::keymap::Keymap;
use istio_vault_wizard::tui::logs::{LogBuffer, LogLine};
use istio_vault_wizard::tui::model::{Model, Screen};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn raw_lines(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "2024-05-01T10:{:02}:{:02}.{:09}Z info ads XDS: Pushing:{i} Services:12 ConnectedEndpoints:3 Version:2024-05-01T10:00:00Z/{i}",
                (i / 60) % 60,
                i % 60,
                i % 1_000_000_000
            )
        })
        .collect()
}

fn steps_render(c: &mut Criterion) {
    let mut m = fixtures::full_model();
    m.screen = Screen::Steps;
    m.size = (200, 50);
    let mut t = Terminal::new(TestBackend::new(200, 50)).unwrap();
    c.bench_function("render steps+live panes 200x50", |b| {
        b.iter(|| fixtures::render_into(&mut t, black_box(&m)))
    });
}

fn logs_ingest(c: &mut Criterion) {
    let raw = raw_lines(1_000_000);
    let before = rss_kib();
    {
        let mut buf = LogBuffer::default();
        for r in &raw {
            buf.push(LogLine::parse(1, r));
        }
        let after = rss_kib();
        if let (Some(b), Some(a)) = (before, after) {
            eprintln!(
                "log buffer after 1,000,000 lines (cap {}): {} lines kept, RSS growth {:.1} MiB (total RSS {:.1} MiB incl. the 1M input strings)",
                buf.cap(),
                buf.len(),
                (a.saturating_sub(b)) as f64 / 1024.0,
                a as f64 / 1024.0
            );
        }
    }
    let mut g = c.benchmark_group("logs");
    g.sample_size(10);
    g.throughput(Throughput::Elements(raw.len() as u64));
    g.bench_function("ingest 1,000,000 lines (parse + ring buffer)", |b| {
        b.iter(|| {
            let mut buf = LogBuffer::default();
            for r in &raw {
                buf.push(LogLine::parse(1, black_box(r)));
            }
            black_box(buf.len())
        })
    });
    g.finish();
}

fn logs_render_full(c: &mut Criterion) {
    let mut m = fixtures::full_model();
    m.screen = Screen::Logs;
    m.size = (200, 50);
    let lines: Vec<LogLine> = raw_lines(150_000)
        .iter()
        .map(|r| LogLine::parse(1, r))
        .collect();
    m.logs.ingest(lines);
    assert_eq!(m.logs.buf.len(), m.logs.buf.cap());
    let mut t = Terminal::new(TestBackend::new(200, 50)).unwrap();
    c.bench_function("render logs, buffer full (100k), 200x50", |b| {
        b.iter(|| fixtures::render_into(&mut t, black_box(&m)))
    });
    m.logs.search = "Pushing:149".into();
    m.logs.wrap = true;
    m.logs.timestamps = true;
    c.bench_function("render logs, buffer full, search+wrap+ts, 200x50", |b| {
        b.iter(|| fixtures::render_into(&mut t, black_box(&m)))
    });
}

fn first_frame(c: &mut Criterion) {
    c.bench_function(
        "start to first frame (model from config + draw) 200x50",
        |b| {
            b.iter(|| {
                let cfg = fixtures::config();
                let prefill = istio_vault_wizard::tui::connect::Prefill::from_config(&cfg);
                let m = Model::new(Some(cfg), prefill, Keymap::default(), Vec::new());
                let mut t = Terminal::new(TestBackend::new(200, 50)).unwrap();
                fixtures::render_into(&mut t, &m);
                black_box(t.backend().buffer().area)
            })
        },
    );
}

criterion_group!(
    benches,
    steps_render,
    logs_ingest,
    logs_render_full,
    first_frame
);
criterion_main!(benches);
