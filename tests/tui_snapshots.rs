//! Snapshots of every screen and dialog on ratatui's TestBackend, at 80×24 and 160×48.
//! Models are built from fixed data (no network, no clock); values that would vary
//! (elapsed times, fingerprints) are redacted anyway.

use istio_vault_wizard::tui::fixtures::{self, TOKEN};
use istio_vault_wizard::tui::model::{Confirm, Dialog, Mode, Model, Purpose, Question, Screen};
use istio_vault_wizard::tui::{Msg, update};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

const SIZES: [(u16, u16); 2] = [(80, 24), (160, 48)];

/// Masks elapsed seconds and long hex runs.
fn redact(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < b.len() {
        // "<digits>.<digit>s" -> "N.Ns"
        if b[i].is_ascii_digit() {
            let mut j = i;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if j + 2 < b.len() + 1
                && j + 1 < b.len()
                && b[j] == '.'
                && b[j + 1].is_ascii_digit()
                && j + 2 < b.len()
                && b[j + 2] == 's'
            {
                out.push_str("N.Ns");
                i = j + 3;
                continue;
            }
        }
        // 32+ hex chars -> [hex]
        let mut j = i;
        while j < b.len() && b[j].is_ascii_hexdigit() {
            j += 1;
        }
        if j - i >= 32 {
            out.push_str("[hex]");
            i = j;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn snap(name: &str, m: &mut Model) {
    for (w, h) in SIZES {
        let _ = update(m, Msg::Resize(w, h));
        let text = fixtures::render_text(m, w, h);
        assert!(!text.contains(TOKEN), "{name}: the token is drawn");
        assert!(!text.contains("PRIVATE KEY"), "{name}: key material drawn");
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), redact(&text));
    }
}

fn key(m: &mut Model, c: char) {
    let _ = update(
        m,
        Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)),
    );
}

#[test]
fn connect_screen_without_config() {
    let mut m = fixtures::connect_model();
    snap("connect_empty", &mut m);
    // A cluster added, its kubeconfig missing: live validation shows it.
    key(&mut m, 'a');
    snap("connect_cluster_added", &mut m);
}

#[test]
fn connect_screen_with_status() {
    let mut m = fixtures::full_model();
    m.screen = Screen::Connect;
    snap("connect_status", &mut m);
    m.form.editing = true;
    m.form.focus = 1;
    snap("connect_editing_token", &mut m);
}

#[test]
fn steps_screen() {
    let mut m = fixtures::full_model();
    snap("steps", &mut m);
    m.steps_sel = 10; // the conflicting policy
    snap("steps_conflict_selected", &mut m);
    m.filter = "cluster2".into();
    m.steps_sel = 5;
    snap("steps_filtered", &mut m);
}

#[test]
fn steps_running_shows_progress_and_elapsed() {
    let mut m = fixtures::full_model();
    m.run = Some(istio_vault_wizard::tui::model::Run {
        kind: istio_vault_wizard::tui::model::RunKind::Apply,
        req: 1,
        started: m.now,
        total: 24,
        finished: 3,
    });
    m.steps_sel = 3;
    snap("steps_running", &mut m);
}

#[test]
fn live_screen() {
    let mut m = fixtures::full_model();
    m.screen = Screen::Live;
    snap("live", &mut m);
    key(&mut m, '\t');
    let _ = update(
        &mut m,
        Msg::Key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE)),
    );
    let _ = update(
        &mut m,
        Msg::Key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE)),
    );
    let _ = update(
        &mut m,
        Msg::Key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE)),
    );
    snap("live_kv_focused", &mut m);
}

#[test]
fn logs_screen() {
    let mut m = fixtures::full_model();
    m.screen = Screen::Logs;
    snap("logs_follow", &mut m);
    key(&mut m, 't');
    key(&mut m, '/');
    for c in "permission".chars() {
        key(&mut m, c);
    }
    let _ = update(
        &mut m,
        Msg::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
    );
    snap("logs_search", &mut m);
}

#[test]
fn logs_without_istiod_pod() {
    let mut m = fixtures::full_model();
    m.screen = Screen::Logs;
    m.logs = Default::default();
    m.logs.cluster = Some("cluster1".into());
    m.logs.status = "no istiod pod in istio-system on cluster1 (looking again every 10s)".into();
    snap("logs_no_pod", &mut m);
}

#[test]
fn doctor_screen() {
    let mut m = fixtures::full_model();
    m.screen = Screen::Doctor;
    m.doctor.selected = 2;
    snap("doctor", &mut m);
}

#[test]
fn dialogs() {
    let mut m = fixtures::full_model();
    m.dialog = Some(Dialog::Help { scroll: 0 });
    snap("dialog_help", &mut m);

    let mut m = fixtures::full_model();
    m.steps_sel = 10;
    let _ = update(
        &mut m,
        Msg::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
    );
    snap("dialog_preview_diff", &mut m);

    let mut m = fixtures::full_model();
    key(&mut m, 'A');
    snap("dialog_apply_all", &mut m);

    let mut m = fixtures::full_model();
    key(&mut m, 'U');
    snap("dialog_rollback_all", &mut m);

    let mut m = fixtures::full_model();
    m.steps_sel = 1;
    key(&mut m, 'u');
    snap("dialog_rollback_step", &mut m);

    let mut m = fixtures::full_model();
    m.steps_sel = 10;
    key(&mut m, 'y');
    snap("dialog_apply_conflict", &mut m);

    let mut m = fixtures::full_model();
    m.run = Some(istio_vault_wizard::tui::model::Run {
        kind: istio_vault_wizard::tui::model::RunKind::Apply,
        req: 1,
        started: m.now,
        total: 24,
        finished: 0,
    });
    let (reply, _rx) = tokio::sync::oneshot::channel();
    let row = &m.steps[5];
    let q = Question {
        cluster: row.cluster.clone(),
        step: row.step,
        state: istio_vault_wizard::plan::StepState::Absent,
        preview: row.preview.clone(),
        reply,
    };
    let _ = update(&mut m, Msg::Ask(q));
    snap("dialog_engine_question", &mut m);

    let mut m = fixtures::connect_model();
    m.dialog = Some(Dialog::Confirm(Confirm::new(
        "Reveal the Vault token?",
        vec!["The token will be drawn in clear text on this screen.".into()],
        "Reveal",
        Purpose::RevealToken,
    )));
    snap("dialog_reveal_token", &mut m);
}

#[test]
fn command_and_warnings() {
    let mut m = fixtures::full_model();
    m.mode = Mode::Command("cluster cluster2".into());
    snap("command_mode", &mut m);
    let mut m = fixtures::full_model();
    m.warnings = vec![
        "keymap /home/u/.config/istio-vault-wizard/keymap.toml: unknown action \"nope\" ignored"
            .into(),
    ];
    snap("keymap_warning", &mut m);
}

#[test]
fn no_color_has_no_colours() {
    let mut m = fixtures::full_model();
    m.color = false;
    let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(160, 48)).unwrap();
    t.draw(|f| istio_vault_wizard::tui::view::draw(&m, f))
        .unwrap();
    let buf = t.backend().buffer();
    for c in buf.content() {
        assert!(
            matches!(c.fg, ratatui::style::Color::Reset)
                && matches!(c.bg, ratatui::style::Color::Reset),
            "a coloured cell under NO_COLOR: {c:?}"
        );
    }
    m.color = true;
    t.draw(|f| istio_vault_wizard::tui::view::draw(&m, f))
        .unwrap();
    assert!(
        t.backend()
            .buffer()
            .content()
            .iter()
            .any(|c| c.fg != ratatui::style::Color::Reset)
    );
}
