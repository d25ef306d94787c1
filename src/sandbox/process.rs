//! Process supervision: start a server detached in its own process group with its output in
//! a log file, tell whether a recorded pid is still that server, and stop it.

use std::fs::OpenOptions;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use super::SandboxError;

/// Starts `exe args...` in a new process group, stdout and stderr appended to `log`.
pub fn spawn(exe: &Path, args: &[String], log: &Path) -> Result<u32, SandboxError> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| SandboxError::io(log, e))?;
    let err = out.try_clone().map_err(|e| SandboxError::io(log, e))?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd.spawn().map_err(|e| SandboxError::Spawn {
        exe: exe.display().to_string(),
        reason: e.to_string(),
    })?;
    let pid = child.id();
    // The child is reaped by whoever outlives it (init once this process exits); a
    // background thread reaps it while we live so it never lingers as a zombie.
    std::thread::spawn(move || {
        let mut child = child;
        let _ = child.wait();
    });
    Ok(pid)
}

/// True when `pid` is a live (non-zombie) process whose command line starts with `exe`.
/// Checking the executable guards against pid reuse after a reboot or a long pause.
pub fn is_alive(pid: u32, exe: &Path) -> bool {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s,
        Err(_) => return false,
    };
    // Field 3 (after the parenthesised command name) is the state.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, Some("Z") | Some("X") | None) {
        return false;
    }
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => {
            let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
            argv0 == exe.as_os_str().as_encoded_bytes()
        }
        Err(_) => false,
    }
}

/// SIGTERM the process group, wait up to `grace`, then SIGKILL. Returns true if it was running.
pub fn terminate(pid: u32, exe: &Path, grace: Duration) -> bool {
    if !is_alive(pid, exe) {
        return false;
    }
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    let group = Pid::from_raw(raw);
    let _ = killpg(group, Signal::SIGTERM);
    let _ = kill(group, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !is_alive(pid, exe) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = killpg(group, Signal::SIGKILL);
    let _ = kill(group, Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && is_alive(pid, exe) {
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// True while any process with this pid exists (used by the watchdog for a foreign pid).
pub fn pid_exists(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
}

/// Asks the kernel for a free loopback port (bind to :0, read it, release it).
pub fn free_port() -> Result<u16, SandboxError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| SandboxError::Io {
        path: "127.0.0.1:0".into(),
        reason: e.to_string(),
    })?;
    let port = listener
        .local_addr()
        .map_err(|e| SandboxError::Io {
            path: "127.0.0.1:0".into(),
            reason: e.to_string(),
        })?
        .port();
    Ok(port)
}
