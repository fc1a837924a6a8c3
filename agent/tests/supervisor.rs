//! Worker supervision without a GPU: stand-in workers (shell scripts speaking the
//! protocol) that hang, die or chatter, and a supervisor that must survive them all.

use std::time::{Duration, Instant};

use nightshift::worker::protocol::{Request, Response};
use nightshift::worker::supervisor::{Reply, Supervisor, SupervisorError, WorkerCommand};

const READY: &str = r#"{"kind":"ready","protocol":1,"device":{"ordinal":0,"name":"stand-in","uuid":"GPU-00000000-0000-0000-0000-000000000000","compute_capability":[9,0],"arch":"sm_90","sms":132,"l2_bytes":52428800,"total_mem_bytes":85899345920,"max_threads_per_block":1024,"max_threads_per_sm":2048,"max_shared_per_block_optin":232448,"max_shared_per_sm":233472,"regs_per_sm":65536,"sm_clock_khz":1980000,"mem_clock_khz":2619000,"mem_bus_bits":5120,"driver_version":13000}}"#;

/// A stand-in worker: answers hello, then does `on_ceilings` for a ceilings request.
fn fake(on_ceilings: &str) -> WorkerCommand {
    let script = format!(
        r#"while IFS= read -r line; do
  case "$line" in
    *'"hello"'*) echo '{READY}' ;;
    *'"ceilings"'*) {on_ceilings} ;;
    *'"shutdown"'*) exit 0 ;;
  esac
done"#
    );
    WorkerCommand {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script],
        launched: false,
    }
}

fn call(sup: &mut Supervisor) -> Reply {
    sup.call(&Request::Ceilings, &mut |_| {})
        .expect("the worker starts")
}

#[test]
fn a_hung_worker_is_killed_by_the_watchdog_and_replaced() {
    let mut sup = Supervisor::new(fake("sleep 600"), Duration::from_millis(300));
    let start = Instant::now();
    match call(&mut sup) {
        Reply::Hung { waited, .. } => assert!(waited >= Duration::from_millis(300)),
        other => panic!("expected Hung, got {other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "the watchdog fired late"
    );
    assert!(!sup.is_running(), "the hung worker was killed");
    // The next request gets a fresh worker.
    assert!(matches!(call(&mut sup), Reply::Hung { .. }));
    assert_eq!(sup.restarts, 1);
}

#[test]
fn a_worker_that_exits_is_reported_dead_and_restarted() {
    let mut sup = Supervisor::new(fake("exit 3"), Duration::from_secs(10));
    match call(&mut sup) {
        Reply::Died { status, .. } => assert!(status.contains('3'), "{status}"),
        other => panic!("expected Died, got {other:?}"),
    }
    assert!(matches!(call(&mut sup), Reply::Died { .. }));
    assert_eq!(sup.restarts, 1);
}

#[test]
fn progress_keeps_a_slow_worker_alive() {
    // Four progress lines 150 ms apart: 600 ms in all, twice the watchdog, never silent for long.
    let work = r#"for i in 1 2 3 4; do sleep 0.15; echo '{"kind":"progress","stage":"step"}'; done; echo '{"kind":"error","message":"done"}'"#;
    let mut sup = Supervisor::new(fake(work), Duration::from_millis(400));
    let mut seen = 0;
    let r = sup.call(&Request::Ceilings, &mut |s| {
        assert_eq!(s, "step");
        seen += 1;
    });
    assert_eq!(
        r.unwrap(),
        Reply::Done(Response::Error {
            message: "done".into()
        })
    );
    assert_eq!(seen, 4);
}

#[test]
fn lines_that_are_not_protocol_are_ignored() {
    let work = r#"echo 'printf from a kernel'; echo '{"kind":"error","message":"ok"}'"#;
    let mut sup = Supervisor::new(fake(work), Duration::from_secs(10));
    assert_eq!(
        call(&mut sup),
        Reply::Done(Response::Error {
            message: "ok".into()
        })
    );
}

#[test]
fn a_worker_that_refuses_to_start_is_a_clear_error() {
    let cmd = WorkerCommand {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), r#"read -r line; echo '{"kind":"error","message":"cannot open CUDA device 0: no CUDA driver"}'; exit 2"#.into()],
        launched: false,
    };
    let mut sup = Supervisor::new(cmd, Duration::from_secs(10));
    match sup.call(&Request::Ceilings, &mut |_| {}) {
        Err(SupervisorError::Handshake(m)) => assert!(m.contains("no CUDA driver"), "{m}"),
        other => panic!("expected a handshake error, got {other:?}"),
    }
}

#[test]
fn a_missing_worker_program_is_a_clear_error() {
    let cmd = WorkerCommand {
        program: "/nonexistent/nightshift".into(),
        args: vec![],
        launched: false,
    };
    let mut sup = Supervisor::new(cmd, Duration::from_secs(1));
    let e = sup.call(&Request::Hello, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/nightshift"), "{e}");
}

#[test]
fn an_unreadable_answer_ends_the_request_at_once_instead_of_waiting_for_the_watchdog() {
    // Regression: a response the parent could not parse was ignored, so a kernel that
    // wrote NaN was reported as hung once the watchdog fired.
    let work = r#"echo '{"kind":"evaluated","report":null}'; sleep 600"#;
    let mut sup = Supervisor::new(fake(work), Duration::from_secs(30));
    let start = Instant::now();
    match call(&mut sup) {
        Reply::Died { status, .. } => assert!(status.contains("unreadable"), "{status}"),
        other => panic!("expected Died, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_worker_that_reports_a_crash_is_retired_before_the_next_request() {
    // Regression: the worker exits after a sticky CUDA error; the next candidate was
    // sent to the dead worker and reported as crashed itself.
    let crash = r#"echo '{"kind":"evaluated","report":{"outcome":{"outcome":"crashed","stage":"candidate","error":"CUDA_ERROR_ILLEGAL_ADDRESS"},"function":null,"checks":[],"measurement":null,"occupancy":null,"validate_ms":1.0,"measure_ms":0.0}}'; exit 3"#;
    let mut sup = Supervisor::new(fake(crash), Duration::from_secs(10));
    assert!(matches!(
        call(&mut sup),
        Reply::Done(Response::Evaluated { .. })
    ));
    assert!(!sup.is_running(), "retired right after reporting the crash");
    assert!(
        matches!(call(&mut sup), Reply::Done(Response::Evaluated { .. })),
        "the next request is answered by a fresh worker"
    );
    assert_eq!(sup.restarts, 1);
}

#[test]
fn a_worker_lost_under_a_request_is_replaced_and_the_request_sent_once_more() {
    // The first worker dies under the request (a lost node); the second answers.
    let d = tempfile::tempdir().unwrap();
    let mark = d.path().join("lost-once");
    let on = format!(
        "if [ -f {m} ]; then echo '{{\"kind\":\"error\",\"message\":\"second worker\"}}'; else touch {m}; exit 9; fi",
        m = mark.display()
    );
    let mut sup = Supervisor::new(fake(&on), Duration::from_secs(10));
    let (reply, why) = sup
        .call_retrying(&Request::Ceilings, &mut |_| {})
        .expect("the worker starts");
    assert_eq!(
        reply,
        Reply::Done(Response::Error {
            message: "second worker".into()
        })
    );
    let why = why.expect("said why it was sent again");
    assert!(why.contains("died") && why.contains('9'), "{why}");
    assert_eq!(sup.restarts, 1);
    // Once only: a request that kills every worker comes back Died.
    let mut sup = Supervisor::new(fake("exit 3"), Duration::from_secs(10));
    let (reply, why) = sup.call_retrying(&Request::Ceilings, &mut |_| {}).unwrap();
    assert!(matches!(reply, Reply::Died { .. }), "{reply:?}");
    assert!(why.is_some());
    assert_eq!(sup.restarts, 1);
    // An answer the first time is not sent again.
    let mut sup = Supervisor::new(
        fake("echo '{\"kind\":\"error\",\"message\":\"x\"}'"),
        Duration::from_secs(10),
    );
    let (_, why) = sup.call_retrying(&Request::Ceilings, &mut |_| {}).unwrap();
    assert!(why.is_none());
    assert_eq!(sup.restarts, 0);
}

/// A stand-in worker that says `ready2` instead of `READY` once `mark` exists, and
/// dies on a ceilings request (creating `mark`).
fn changing(mark: &std::path::Path, ready2: &str) -> WorkerCommand {
    let script = format!(
        r#"while IFS= read -r line; do
  case "$line" in
    *'"hello"'*) if [ -f {m} ]; then echo '{ready2}'; else echo '{READY}'; fi ;;
    *'"ceilings"'*) touch {m}; exit 7 ;;
    *'"shutdown"'*) exit 0 ;;
  esac
done"#,
        m = mark.display()
    );
    WorkerCommand {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script],
        launched: false,
    }
}

#[test]
fn a_restarted_worker_on_another_device_model_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let other = READY.replace("\"stand-in\"", "\"another GPU\"");
    let mut sup = Supervisor::new(
        changing(&d.path().join("m"), &other),
        Duration::from_secs(10),
    );
    // The first worker dies; its replacement says it is on another device: the death
    // stands as the answer, with why no fresh worker took the request.
    let (reply, why) = sup.call_retrying(&Request::Ceilings, &mut |_| {}).unwrap();
    assert!(matches!(reply, Reply::Died { .. }), "{reply:?}");
    let why = why.unwrap();
    assert!(
        why.contains("another device") && why.contains("another GPU"),
        "{why}"
    );
    // The next request says so too, as the infrastructure failing.
    match sup.call(&Request::Ceilings, &mut |_| {}) {
        Err(SupervisorError::Handshake(m)) => assert!(m.contains("another device"), "{m}"),
        other => panic!("expected a refused handshake, got {other:?}"),
    }
    // The same model on another GPU of it (another UUID) is accepted.
    let d = tempfile::tempdir().unwrap();
    let twin = READY.replace("GPU-00000000", "GPU-11111111");
    let mut sup = Supervisor::new(
        changing(&d.path().join("m"), &twin),
        Duration::from_secs(10),
    );
    let (reply, _) = sup.call_retrying(&Request::Ceilings, &mut |_| {}).unwrap();
    // The replacement took the request (and died on it too: the mark exists).
    assert!(matches!(reply, Reply::Died { .. }), "{reply:?}");
    assert_eq!(sup.restarts, 1);
    assert!(sup.device.as_ref().unwrap().uuid.contains("11111111"));
}

#[test]
fn a_hung_worker_behind_a_launcher_is_asked_to_end_before_it_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("term");
    // A launcher (as srun would) that passes SIGTERM on to the worker it started.
    let launcher = format!(
        r#"exec 3<&0; trap 'echo term > {}; kill $w; exit 143' TERM; "$@" <&3 3<&- & w=$!; wait $w; wait $w"#,
        mark.display()
    );
    let cmd =
        fake("sleep 600").through(&["/bin/sh".into(), "-c".into(), launcher, "launcher".into()]);
    assert!(cmd.launched);
    let mut sup = Supervisor::new(cmd, Duration::from_millis(300));
    let start = Instant::now();
    assert!(matches!(call(&mut sup), Reply::Hung { .. }));
    assert!(!sup.is_running());
    assert_eq!(
        std::fs::read_to_string(&mark).unwrap_or_default().trim(),
        "term",
        "the launcher never heard SIGTERM"
    );
    // It ended on the SIGTERM, well inside the grace before SIGKILL.
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
}
