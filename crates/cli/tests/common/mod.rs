//! What the binary's service tests share: a `patchline serve` child
//! process on a free port, its standard error kept in a file, stopped
//! gracefully (SIGTERM) or killed (SIGKILL, and on drop).

#![allow(dead_code)]

pub mod e2e;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `patchline serve`; SIGKILLed when dropped.
#[derive(Debug)]
pub struct ServeProcess {
    child: Child,
    /// Kept open: the server's standard output must not be closed under it.
    _stdout: BufReader<ChildStdout>,
    /// `HOST:PORT` it listens on.
    pub addr: String,
    /// Its standard error.
    pub log: PathBuf,
}

impl ServeProcess {
    /// Spawns `cmd` (a `patchline … serve --listen 127.0.0.1:0 …` command)
    /// with its standard error appended to `log`, and waits for the
    /// `listening on http://ADDR` line. When it does not start: the line it
    /// printed and its log.
    pub fn spawn(mut cmd: Command, log: &Path) -> Result<ServeProcess, String> {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start serve: {e}"))?;
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let Some(addr) = line.trim().strip_prefix("listening on http://") else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "serve did not start: {line:?}\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            ));
        };
        Ok(ServeProcess {
            addr: addr.to_string(),
            child,
            _stdout: stdout,
            log: log.to_path_buf(),
        })
    }

    /// [`ServeProcess::spawn`], panicking with the log when it did not
    /// start.
    pub fn start(cmd: Command, log: &Path) -> ServeProcess {
        ServeProcess::spawn(cmd, log).unwrap_or_else(|why| panic!("{why}"))
    }

    /// Its standard error so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits (20 s at most) for the graceful stop; answers
    /// the log.
    pub fn stop(self) -> String {
        self.stop_with_status().1
    }

    /// [`ServeProcess::stop`], with the exit status (`None`: it did not
    /// stop in time).
    pub fn stop_with_status(mut self) -> (Option<std::process::ExitStatus>, String) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut status = None;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                status = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        (status, self.log_text())
    }

    /// Its exit status if it has exited (`None`: still running).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
