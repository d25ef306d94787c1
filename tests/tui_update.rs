//! `update` driven by sequences of `Msg`: no terminal, no network.

use istio_vault_wizard::plan::engine::{Event, Outcome, PlannedStep, RunReport};
use istio_vault_wizard::plan::{Decision, Phase, Preview, StepId, StepState};
use istio_vault_wizard::tui::fixtures;
use istio_vault_wizard::tui::keymap::Keymap;
use istio_vault_wizard::tui::model::{
    DeciderMode, Dialog, Effect, LiveData, Model, Purpose, Question, RowState, Screen,
};
use istio_vault_wizard::tui::{Msg, update};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

fn k(m: &mut Model, c: char) -> Vec<Effect> {
    update(
        m,
        Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)),
    )
}
fn code(m: &mut Model, c: KeyCode) -> Vec<Effect> {
    update(m, Msg::Key(KeyEvent::new(c, KeyModifiers::NONE)))
}
fn typed(m: &mut Model, s: &str) {
    for c in s.chars() {
        k(m, c);
    }
}

fn planned(cluster: &str, step: StepId, state: StepState) -> PlannedStep {
    PlannedStep {
        cluster: cluster.into(),
        step,
        title: format!("{step}"),
        state,
        preview: Preview::default(),
    }
}

fn question(m: &Model, i: usize) -> (Question, tokio::sync::oneshot::Receiver<Decision>) {
    let (reply, rx) = tokio::sync::oneshot::channel();
    let r = &m.steps[i];
    (
        Question {
            cluster: r.cluster.clone(),
            step: r.step,
            state: StepState::Absent,
            preview: r.preview.clone(),
            reply,
        },
        rx,
    )
}

fn start_run(m: &mut Model) -> u64 {
    // `A` then `y`: one confirmation, then the apply effect.
    k(m, 'A');
    let fx = k(m, 'y');
    match fx.as_slice() {
        [
            Effect::Apply {
                req, mode, opts, ..
            },
        ] => {
            assert_eq!(*mode, DeciderMode::Approved { overwrite: false });
            // The Vault phase first (the fixture has Vault steps left), not the Istio one.
            assert!(!opts.istio && !opts.steps.is_empty());
            assert!(opts.steps.iter().all(|s| s.phase() == Phase::Vault));
            *req
        }
        other => panic!("expected one Apply effect, got {other:?}"),
    }
}

#[test]
fn stale_plan_answers_are_dropped() {
    let mut m = fixtures::full_model();
    m.steps.clear();
    let fx = k(&mut m, 'r');
    let req = fx
        .iter()
        .find_map(|f| match f {
            Effect::Plan { req, .. } => Some(*req),
            _ => None,
        })
        .expect("refresh plans");
    update(
        &mut m,
        Msg::Planned {
            req: req - 1,
            result: Ok(vec![planned(
                "cluster1",
                StepId::Namespace,
                StepState::Absent,
            )]),
        },
    );
    assert!(m.steps.is_empty(), "stale plan applied");
    update(
        &mut m,
        Msg::Planned {
            req,
            result: Ok(vec![
                planned("cluster1", StepId::Namespace, StepState::Matches),
                planned(
                    "cluster1",
                    StepId::Policy,
                    StepState::Conflict { what: "x".into() },
                ),
            ]),
        },
    );
    assert_eq!(m.steps.len(), 2);
    assert_eq!(m.steps[0].state, RowState::Present);
    assert_eq!(m.steps[1].state, RowState::Conflict("x".into()));
}

#[test]
fn navigation_filter_and_cluster_command() {
    let mut m = fixtures::full_model();
    k(&mut m, 'j');
    k(&mut m, 'j');
    assert_eq!(m.steps_sel, 2);
    k(&mut m, 'G');
    // 2 clusters x (12 Vault + injector, istiod, verify) rows.
    assert_eq!(m.steps_sel, 29);
    k(&mut m, 'g');
    assert_eq!(m.steps_sel, 0);
    k(&mut m, '/');
    typed(&mut m, "kv-");
    code(&mut m, KeyCode::Enter);
    assert_eq!(m.visible_steps().len(), 4);
    code(&mut m, KeyCode::Esc);
    assert_eq!(m.visible_steps().len(), 30);
    k(&mut m, ':');
    typed(&mut m, "cluster cluster2");
    code(&mut m, KeyCode::Enter);
    assert_eq!(m.cluster.as_deref(), Some("cluster2"));
    assert!(
        m.visible_steps()
            .iter()
            .all(|&i| m.steps[i].cluster == "cluster2")
    );
    k(&mut m, ':');
    typed(&mut m, "cluster nope");
    code(&mut m, KeyCode::Enter);
    assert!(m.message.as_deref().unwrap().contains("unknown cluster"));
    k(&mut m, ':');
    typed(&mut m, "ctx");
    code(&mut m, KeyCode::Enter);
    assert_eq!(m.screen, Screen::Connect);
    k(&mut m, ':');
    typed(&mut m, "q");
    let fx = code(&mut m, KeyCode::Enter);
    assert!(m.quit && matches!(fx.as_slice(), [Effect::Quit]));
}

#[test]
fn confirmations_default_to_no() {
    let mut m = fixtures::full_model();
    k(&mut m, 'A');
    assert!(
        matches!(&m.dialog, Some(Dialog::Confirm(c)) if !c.on_yes && c.purpose == Purpose::ApplyAll)
    );
    let fx = code(&mut m, KeyCode::Enter);
    assert!(fx.is_empty() && m.dialog.is_none() && m.run.is_none());
    k(&mut m, 'U');
    let fx = k(&mut m, 'n');
    assert!(fx.is_empty() && m.run.is_none());
    // Toggle to Yes then Enter runs it.
    k(&mut m, 'U');
    code(&mut m, KeyCode::Tab);
    let fx = code(&mut m, KeyCode::Enter);
    assert!(matches!(
        fx.as_slice(),
        [Effect::Rollback { only: None, .. }]
    ));
}

#[test]
fn rollback_of_the_selected_step() {
    let mut m = fixtures::full_model();
    m.steps_sel = 1;
    k(&mut m, 'u');
    let fx = k(&mut m, 'y');
    match fx.as_slice() {
        [
            Effect::Rollback {
                only: Some((c, s)), ..
            },
        ] => {
            assert_eq!(c, "cluster1");
            assert_eq!(*s, StepId::ServiceAccount);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn engine_events_drive_row_states_and_stale_ones_are_dropped() {
    let mut m = fixtures::full_model();
    let req = start_run(&mut m);
    let ev = |event| Msg::Engine { req, event };
    update(
        &mut m,
        ev(Event::Started {
            cluster: "cluster1".into(),
            step: StepId::AuthMount,
        }),
    );
    assert_eq!(m.steps[5].state, RowState::Running);
    update(
        &mut m,
        Msg::Engine {
            req: req + 100,
            event: Event::Done {
                cluster: "cluster1".into(),
                step: StepId::AuthMount,
                outcome: Outcome::Applied,
            },
        },
    );
    assert_eq!(m.steps[5].state, RowState::Running, "stale event applied");
    update(
        &mut m,
        ev(Event::Done {
            cluster: "cluster1".into(),
            step: StepId::AuthMount,
            outcome: Outcome::Applied,
        }),
    );
    assert_eq!(m.steps[5].state, RowState::Done);
    update(
        &mut m,
        ev(Event::Failed {
            cluster: "cluster1".into(),
            step: StepId::AuthConfig,
            error: "boom".into(),
            hint: Some("h".into()),
            conflict: false,
        }),
    );
    assert!(matches!(&m.steps[6].state, RowState::Failed { error, .. } if error == "boom"));
    assert_eq!(m.run.as_ref().unwrap().finished, 2);
    // A second run is refused while one is in progress.
    k(&mut m, 'A');
    assert!(k(&mut m, 'y').is_empty());
    let fx = update(
        &mut m,
        Msg::RunFinished {
            req,
            result: Ok(RunReport::default()),
        },
    );
    assert!(m.run.is_none());
    assert!(
        fx.iter().any(|f| matches!(f, Effect::Plan { .. })),
        "re-plans after a run"
    );
    assert!(
        m.last_report
            .as_deref()
            .unwrap()
            .starts_with("apply finished")
    );
}

#[test]
fn engine_questions_round_trip_through_the_dialog() {
    let mut m = fixtures::full_model();
    k(&mut m, 'a');
    let fx = k(&mut m, 'y');
    assert!(matches!(
        fx.as_slice(),
        [Effect::Apply {
            mode: DeciderMode::Ask,
            ..
        }]
    ));
    let (q1, _rx1) = question(&m, 5);
    let (q2, _rx2) = question(&m, 17);
    let (q3, _rx3) = question(&m, 18);
    update(&mut m, Msg::Ask(q1));
    update(&mut m, Msg::Ask(q2));
    update(&mut m, Msg::Ask(q3));
    assert_eq!(m.questions.len(), 3);
    assert!(
        matches!(&m.dialog, Some(Dialog::Confirm(c)) if c.title.contains("auth-mount") && c.title.contains("cluster1"))
    );
    // Enter on the default answers Skip.
    let fx = code(&mut m, KeyCode::Enter);
    assert!(matches!(
        fx.as_slice(),
        [Effect::Answer {
            decision: Decision::Skip,
            ..
        }]
    ));
    assert!(
        matches!(&m.dialog, Some(Dialog::Confirm(c)) if c.title.contains("cluster2")),
        "next question shown"
    );
    let fx = k(&mut m, 'y');
    assert!(matches!(
        fx.as_slice(),
        [Effect::Answer {
            decision: Decision::Apply,
            ..
        }]
    ));
    // x stops the run: this and every queued question get Abort.
    let fx = k(&mut m, 'x');
    assert!(fx.iter().all(|f| matches!(
        f,
        Effect::Answer {
            decision: Decision::Abort,
            ..
        }
    )));
    assert!(m.questions.is_empty() && m.dialog.is_none());
}

#[test]
fn questions_without_a_run_are_aborted() {
    let mut m = fixtures::full_model();
    let (q, _rx) = question(&m, 0);
    let fx = update(&mut m, Msg::Ask(q));
    assert!(matches!(
        fx.as_slice(),
        [Effect::Answer {
            decision: Decision::Abort,
            ..
        }]
    ));
}

#[test]
fn stale_live_and_log_answers_are_dropped() {
    let mut m = fixtures::full_model();
    let before = m.live.data.mounts.len();
    update(
        &mut m,
        Msg::Live {
            req: 999,
            data: Box::new(LiveData::default()),
        },
    );
    assert_eq!(m.live.data.mounts.len(), before);
    let n = m.logs.buf.len();
    update(
        &mut m,
        Msg::LogLines {
            req: 999,
            lines: fixtures::log_lines(10),
        },
    );
    assert_eq!(m.logs.buf.len(), n);
    let req = m.reqs.logs;
    update(
        &mut m,
        Msg::LogLines {
            req,
            lines: fixtures::log_lines(10),
        },
    );
    assert_eq!(m.logs.buf.len(), n + 10);
}

#[test]
fn logs_keys_autoscroll_search_wrap() {
    let mut m = fixtures::full_model();
    m.screen = Screen::Logs;
    update(&mut m, Msg::Resize(120, 40));
    assert!(m.logs.autoscroll);
    k(&mut m, 's');
    assert!(!m.logs.autoscroll);
    let top = m.logs.view_top(30);
    let req = m.reqs.logs;
    update(
        &mut m,
        Msg::LogLines {
            req,
            lines: fixtures::log_lines(50),
        },
    );
    assert_eq!(m.logs.view_top(30), top, "autoscroll stays off");
    k(&mut m, 'w');
    k(&mut m, 't');
    assert!(m.logs.wrap && m.logs.timestamps);
    k(&mut m, '/');
    typed(&mut m, "permission");
    code(&mut m, KeyCode::Enter);
    let first = m.logs.current.expect("a match");
    k(&mut m, 'n');
    assert_ne!(m.logs.current, Some(first));
    k(&mut m, 'N');
    assert_eq!(m.logs.current, Some(first));
    k(&mut m, 'c');
    assert_eq!(m.logs.only, Some(0));
    let fx = k(&mut m, 'S');
    assert!(matches!(fx.as_slice(), [Effect::SaveLogs { .. }]));
}

#[test]
fn keymap_override_changes_dispatch() {
    let mut km = Keymap::default();
    let w = km.apply_overrides("[keys]\nquit = \"Q\"\nbogus = \"x\"\n", "test");
    assert_eq!(w.len(), 1);
    let c = fixtures::config();
    let prefill = istio_vault_wizard::tui::connect::Prefill::from_config(&c);
    let mut m = Model::new(Some(c), prefill, km, w);
    assert!(k(&mut m, 'q').is_empty());
    assert!(matches!(k(&mut m, 'Q').as_slice(), [Effect::Quit]));
    assert_eq!(m.warnings.len(), 1);
}

#[test]
fn connect_form_reveal_add_remove_and_validation() {
    let mut m = fixtures::connect_model();
    assert_eq!(m.screen, Screen::Connect);
    // Reveal needs a confirmation; the default (No) keeps it masked.
    k(&mut m, 'R');
    code(&mut m, KeyCode::Enter);
    assert!(!m.form.revealed);
    k(&mut m, 'R');
    k(&mut m, 'y');
    assert!(m.form.revealed);
    // Edit the address: live validation.
    m.form.focus = 0;
    code(&mut m, KeyCode::Enter);
    assert!(m.form.editing);
    for _ in 0..40 {
        code(&mut m, KeyCode::Backspace);
    }
    typed(&mut m, "not a url");
    assert!(m.form.fields[0].check.is_err());
    for _ in 0..20 {
        code(&mut m, KeyCode::Backspace);
    }
    typed(&mut m, "http://127.0.0.1:8200");
    assert!(m.form.fields[0].check.is_ok());
    code(&mut m, KeyCode::Esc);
    assert!(!m.form.editing);
    k(&mut m, 'a');
    k(&mut m, 'a');
    assert_eq!(m.form.cluster_count(), 2);
    assert!(m.form.toml_text().contains("name = \"cluster2\""));
    assert!(!m.form.toml_text().contains(fixtures::TOKEN), "token saved");
    k(&mut m, 'd');
    assert_eq!(m.form.cluster_count(), 1);
    // Contexts arrive: completion cycles through them.
    update(
        &mut m,
        Msg::Contexts {
            cluster: 0,
            result: Ok(vec!["dev".into(), "prod".into()]),
        },
    );
    let ctx = m.form.fields.len() - 1;
    m.form.focus = ctx;
    code(&mut m, KeyCode::Enter);
    code(&mut m, KeyCode::Tab);
    assert_eq!(m.form.fields[ctx].value(), "dev");
    code(&mut m, KeyCode::Tab);
    assert_eq!(m.form.fields[ctx].value(), "prod");
    let fx = {
        code(&mut m, KeyCode::Esc);
        k(&mut m, 's')
    };
    assert!(matches!(fx.as_slice(), [Effect::SaveConfig { .. }]) || m.message.is_some());
}

#[test]
fn mouse_scroll_and_click() {
    use ratatui::crossterm::event::{MouseButton, MouseEvent, MouseEventKind};
    let mut m = fixtures::full_model();
    update(&mut m, Msg::Resize(160, 48));
    let ev = |kind, column, row| MouseEvent {
        kind,
        column,
        row,
        modifiers: KeyModifiers::NONE,
    };
    update(&mut m, Msg::Mouse(ev(MouseEventKind::ScrollDown, 10, 10)));
    assert_eq!(m.steps_sel, 1);
    update(
        &mut m,
        Msg::Mouse(ev(MouseEventKind::Down(MouseButton::Left), 10, 6)),
    );
    assert_eq!(m.steps_sel, 4);
    update(
        &mut m,
        Msg::Mouse(ev(MouseEventKind::Down(MouseButton::Left), 45, 0)),
    );
    assert_eq!(m.screen, Screen::Logs);
}

#[test]
fn a_failed_verification_hands_over_to_the_doctor() {
    let mut m = fixtures::full_model();
    let req = start_run(&mut m);
    let fx = update(
        &mut m,
        Msg::Engine {
            req,
            event: Event::Failed {
                cluster: "cluster1".into(),
                step: StepId::Verify,
                error: "istiod is NOT using the Vault CA".into(),
                hint: None,
                conflict: false,
            },
        },
    );
    assert!(
        matches!(fx.as_slice(), [Effect::Doctor { .. }]),
        "the doctor runs: {fx:?}"
    );
    assert!(m.message.as_deref().unwrap_or_default().contains("doctor"));
    // Any other failed step does not start the doctor by itself.
    let fx = update(
        &mut m,
        Msg::Engine {
            req,
            event: Event::Failed {
                cluster: "cluster1".into(),
                step: StepId::Istiod,
                error: "boom".into(),
                hint: None,
                conflict: false,
            },
        },
    );
    assert!(fx.is_empty(), "{fx:?}");
}

#[test]
fn apply_all_moves_to_the_istio_phase_once_the_vault_phase_is_done() {
    let mut m = fixtures::full_model();
    for r in m
        .steps
        .iter_mut()
        .filter(|r| r.step.phase() == Phase::Vault)
    {
        r.state = RowState::Done;
    }
    k(&mut m, 'A');
    match &m.dialog {
        Some(Dialog::Confirm(c)) => assert!(c.title.starts_with("Istio"), "{}", c.title),
        other => panic!("{other:?}"),
    }
    let fx = k(&mut m, 'y');
    match fx.as_slice() {
        [Effect::Apply { opts, .. }] => {
            assert!(opts.istio);
            assert!(opts.steps.iter().all(|s| s.phase() == Phase::Istio));
            assert!(opts.steps.contains(&StepId::Verify));
        }
        other => panic!("{other:?}"),
    }
}
