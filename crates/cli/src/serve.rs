//! `patchline serve`: configuration from flags and environment, logging,
//! the runtime.

use std::path::Path;

use anyhow::Context;
use patchline_server::{Config, open_state, serve};

use crate::CmdResult;
use crate::exit::Failure;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_num(name: &str) -> anyhow::Result<Option<i64>> {
    env(name)
        .map(|v| {
            v.trim()
                .parse::<i64>()
                .with_context(|| format!("{name} must be a number"))
        })
        .transpose()
}

/// Reads the service configuration from the environment (documented in
/// README.md).
fn config(data_dir: &Path, workers: bool) -> anyhow::Result<Config> {
    let mut c = Config::new(data_dir.to_path_buf());
    c.workers = workers;
    c.admin_token_hash =
        env("PATCHLINE_ADMIN_TOKEN").map(|t| patchline_server::auth::hash_token(t.trim()));
    c.webhook_policy =
        patchline_webhook::Policy::from_env_value(env("PATCHLINE_WEBHOOK_ALLOW").as_deref())
            .map_err(|e| anyhow::anyhow!("PATCHLINE_WEBHOOK_ALLOW: {e}"))?;
    if let Some(s) = env("PATCHLINE_RETRY_SCHEDULE") {
        c.retry = patchline_webhook::Schedule::parse(&s)
            .map_err(|e| anyhow::anyhow!("PATCHLINE_RETRY_SCHEDULE: {e}"))?;
    }
    if let Some(s) = env_num("PATCHLINE_REMINDER_INTERVAL_S")? {
        c.reminder_interval_ms = s.max(1) * 1000;
    }
    if let Some(n) = env_num("PATCHLINE_ESCALATE_AFTER")? {
        c.escalate_after = n.max(1);
    }
    if let Some(n) = env_num("PATCHLINE_SECRET_OVERLAP_S")? {
        c.secret_overlap_ms = n.max(0) * 1000;
    }
    if let Some(n) = env_num("PATCHLINE_WEBHOOK_TIMEOUT_MS")? {
        c.webhook_timeout_ms = n.clamp(100, 300_000) as u64;
    }
    if let Some(n) = env_num("PATCHLINE_CONNS_MAX")? {
        c.conns_max = Some(n.max(1) as usize);
    }
    if let Some(n) = env_num("PATCHLINE_STREAMS_MAX")? {
        c.streams_max = n.max(1) as usize;
    }
    if let Some(n) = env_num("PATCHLINE_STREAMS_PER_TENANT")? {
        c.streams_per_tenant_max = n.max(1) as usize;
    }
    c.event_source = env("PATCHLINE_EVENT_SOURCE");
    c.scan_roots = env("PATCHLINE_SCAN_ROOTS")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    c.secret_keys = secret_keys()?;
    c.operator_webhook = env("PATCHLINE_OPERATOR_WEBHOOK");
    if let Some(url) = &c.operator_webhook {
        c.webhook_policy
            .check_url(url)
            .map_err(|e| anyhow::anyhow!("PATCHLINE_OPERATOR_WEBHOOK: {e}"))?;
    }
    Ok(c)
}

/// The operator's keys for webhook secrets at rest: `PATCHLINE_SECRET_KEY`
/// (the current key) with `PATCHLINE_SECRET_KEY_PREVIOUS` (comma-separated
/// keys it replaced), or `PATCHLINE_SECRET_KEY_FILE` (one key a line, the
/// current one first). Keys are 32 bytes, as 64 hex digits or base64.
fn secret_keys() -> anyhow::Result<patchline_store::SecretKeys> {
    let previous = env("PATCHLINE_SECRET_KEY_PREVIOUS").unwrap_or_default();
    match (
        env("PATCHLINE_SECRET_KEY"),
        env("PATCHLINE_SECRET_KEY_FILE"),
    ) {
        (Some(_), Some(_)) => {
            anyhow::bail!("set PATCHLINE_SECRET_KEY or PATCHLINE_SECRET_KEY_FILE, not both")
        }
        (Some(key), None) => patchline_store::SecretKeys::new(&key, previous.split(','))
            .map_err(|e| anyhow::anyhow!("PATCHLINE_SECRET_KEY: {e}")),
        (None, Some(file)) => {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(&file)
                .with_context(|| format!("PATCHLINE_SECRET_KEY_FILE: cannot read {file}"))?;
            if meta.permissions().mode() & 0o077 != 0 {
                eprintln!(
                    "warning: {file} can be read by other accounts; make it 0600 (chmod 600 {file})"
                );
            }
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("PATCHLINE_SECRET_KEY_FILE: cannot read {file}"))?;
            patchline_store::SecretKeys::from_file_text(&text)
                .map_err(|e| anyhow::anyhow!("PATCHLINE_SECRET_KEY_FILE {file}: {e}"))
        }
        (None, None) if !previous.is_empty() => anyhow::bail!(
            "PATCHLINE_SECRET_KEY_PREVIOUS needs PATCHLINE_SECRET_KEY (the key that replaces them)"
        ),
        (None, None) => Ok(patchline_store::SecretKeys::none()),
    }
}

pub fn run(data_dir: &Path, listen: std::net::SocketAddr, workers: bool) -> CmdResult {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PATCHLINE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    let config = config(data_dir, workers).map_err(Failure::rejected)?;
    match env("PATCHLINE_ADMIN_TOKEN") {
        None => eprintln!("warning: PATCHLINE_ADMIN_TOKEN is not set: no one can create tenants"),
        Some(t) if t.trim().len() < 16 => eprintln!(
            "warning: PATCHLINE_ADMIN_TOKEN is shorter than 16 characters; use a long random one (openssl rand -hex 32)"
        ),
        Some(_) => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime
        .block_on(async move {
            let state = tokio::task::spawn_blocking(move || open_state(config))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))??;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let addr = listener.local_addr()?;
            println!("listening on http://{addr}");
            use std::io::Write as _;
            let _ = std::io::stdout().flush();
            serve(state, listener).await?;
            Ok::<(), anyhow::Error>(())
        })
        .map_err(|e| match e.downcast::<patchline_engine::EngineError>() {
            Ok(engine) => Failure::from(engine),
            Err(other) => Failure::from(other),
        })?;
    Ok(())
}
