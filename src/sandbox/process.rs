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
    let Some(stat) = live_stat(pid) else {
        return false;
    };
    let argv0 = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.split(|b| *b == 0).next().unwrap_or_default().to_vec())
        .unwrap_or_default();
    if !argv0.is_empty() {
        return argv0 == exe.as_os_str().as_encoded_bytes();
    }
    // Right after exec the kernel may not expose argv yet (cmdline reads empty): fall back
    // to the command name in stat, which the kernel truncates to 15 bytes.
    let comm = stat
        .split_once('(')
        .and_then(|(_, r)| r.rsplit_once(')'))
        .map(|(c, _)| c)
        .unwrap_or("");
    let name = exe
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    !comm.is_empty() && name.as_bytes().starts_with(comm.as_bytes())
}

/// Why `is_alive` says no, for error messages.
pub fn liveness_detail(pid: u32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| format!("no /proc entry ({e})"));
    let argv0 = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            String::from_utf8_lossy(c.split(|b| *b == 0).next().unwrap_or_default()).into_owned()
        })
        .unwrap_or_default();
    format!(
        "stat: {} argv0: {argv0}",
        stat.chars().take(60).collect::<String>()
    )
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
    live_stat(pid).is_some()
}

/// `/proc/<pid>/stat` of a process that exists and is neither a zombie nor dead.
fn live_stat(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 3 (after the parenthesised command name) is the state.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    (!matches!(state, Some("Z") | Some("X") | None)).then_some(stat)
}

/// A free loopback port *below* the kernel's ephemeral range. Ports from `bind(:0)` come
/// from that range, which outgoing connections (API server to etcd, probes) also draw from:
/// between picking such a port and the server binding it, a client socket can take it.
/// Below the range only another explicit bind competes, and we check with a bind.
pub fn free_port() -> Result<u16, SandboxError> {
    let (low, _) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|x| x.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    let (start, end) = (10000u16, low.max(10001));
    let span = u32::from(end - start);
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        ^ u64::from(std::process::id()).rotate_left(32);
    for _ in 0..200 {
        // xorshift: cheap and good enough to spread concurrent sandboxes apart.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let port = start + (seed % u64::from(span)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(SandboxError::Io {
        path: "127.0.0.1".into(),
        reason: "no free port below the ephemeral range".into(),
    })
}
