//! `patchline serve`: the configuration (flags, environment, file: see
//! [`crate::config`]), logging, the runtime.

use anyhow::Context;
use patchline_server::{open_state, serve};

use crate::CmdResult;
use crate::config::{self, Flags, LogFormat, Settings};
use crate::exit::Failure;

/// The process environment; blank values count as unset.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `serve --check-config`: validates the configuration and prints it, with
/// secrets redacted, on standard output; warnings go to standard error.
pub fn check_config(flags: &Flags) -> CmdResult {
    let settings = config::resolve(flags, &env).map_err(Failure::rejected)?;
    for w in &settings.warnings {
        eprintln!("warning: {w}");
    }
    print!("{}", settings.render());
    Ok(())
}

/// Logs go to standard error: JSON lines when it is not a terminal (or
/// when asked), readable text on a terminal; colours only on a terminal.
fn init_logging(settings: &Settings) {
    use std::io::IsTerminal as _;
    let terminal = std::io::stderr().is_terminal();
    let json = match settings.log_format.value {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !terminal,
    };
    // Validated by the configuration already.
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(&settings.log_level.value)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .with_current_span(false)
            .with_span_list(false)
            .with_ansi(false)
            .try_init()
    } else {
        builder.with_ansi(terminal).try_init()
    };
}

pub fn run(flags: &Flags) -> CmdResult {
    let settings = config::resolve(flags, &env).map_err(Failure::rejected)?;
    init_logging(&settings);
    for w in &settings.warnings {
        tracing::warn!("{w}");
    }
    if let Some(file) = &settings.file {
        tracing::info!(file = %file.display(), "configuration read");
    }
    let listen = settings.listen.value;
    let config = settings.server_config();
    drop(settings);
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
