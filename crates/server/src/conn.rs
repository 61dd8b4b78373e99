//! Connections: the accept loop with a cap on connections held at once,
//! time-outs on every stage (headers, idle keep-alive, bodies, stalled
//! writes), accept errors logged, and graceful shutdown. Idle sockets with
//! no token must not be able to take the service down.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};

use crate::state::AppState;

/// Descriptors kept free of connections: the database files, the webhook
/// clients' sockets (`inflight_max` of them) and some slack.
pub const FD_RESERVE: usize = 128;
/// How long a graceful shutdown waits for open connections.
pub const SHUTDOWN_GRACE_MS: u64 = 10_000;
/// Least time between two log lines about refused connections.
const LOG_EVERY_MS: u64 = 10_000;

/// Raises the soft descriptor limit to the hard one and answers it.
pub fn raise_fd_limit() -> usize {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => usize::try_from(n).unwrap_or(usize::MAX),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the descriptor limit");
            1024
        }
    }
}

/// The connection cap: the configured one, else the descriptor limit less
/// what the database and the webhook clients need.
pub fn conns_max(st: &AppState, fd_limit: usize) -> usize {
    let room = fd_limit.saturating_sub(FD_RESERVE + st.config.inflight_max);
    st.config.conns_max.unwrap_or(room).clamp(1, room.max(1))
}

/// A stream whose writes fail when they make no progress for `timeout`
/// (a client that stopped reading cannot hold a connection forever).
struct TimedIo<T> {
    inner: T,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> TimedIo<T> {
    fn new(inner: T, timeout: Duration) -> TimedIo<T> {
        TimedIo {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// On a pending write: arm the timer (once) and fail when it fires.
    fn check_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let timeout = self.timeout;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + timeout)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TimedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.check_stall(cx),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.check_stall(cx).map(|r| r.map(|_| ())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.check_stall(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Rate-limits a repeated log line.
struct Every {
    last: Option<Instant>,
    skipped: u64,
}

impl Every {
    fn due(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < Duration::from_millis(LOG_EVERY_MS) => {
                self.skipped += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.skipped))
            }
        }
    }
}

/// Accepts connections until `stop` turns true, then lets open ones
/// finish (bounded by [`SHUTDOWN_GRACE_MS`]).
pub async fn accept_loop(
    st: Arc<AppState>,
    listener: TcpListener,
    app: Router,
    conns_max: usize,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(conns_max));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut refused_log = Every {
        last: None,
        skipped: 0,
    };
    let mut error_log = Every {
        last: None,
        skipped: 0,
    };
    let header_timeout = Duration::from_millis(st.config.header_read_timeout_ms);
    let write_timeout = Duration::from_millis(st.config.write_timeout_ms);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        let (stream, peer): (_, SocketAddr) = match accepted {
            Ok(x) => x,
            Err(e) => {
                st.metrics
                    .accept_errors_total
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(skipped) = error_log.due() {
                    tracing::error!(error = %e, skipped, "cannot accept a connection");
                }
                // Out of descriptors: give the others a moment to close.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // At the cap: close at once rather than hold a descriptor.
            st.metrics
                .connections_refused_total
                .fetch_add(1, Ordering::Relaxed);
            if let Some(skipped) = refused_log.due() {
                tracing::warn!(conns_max, skipped, %peer, "connection cap reached; closing new connections");
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let svc = hyper_util::service::TowerToHyperService::new(
            app.clone()
                .layer(axum::Extension(axum::extract::ConnectInfo(peer))),
        );
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .keep_alive(true)
            .max_buf_size(64 << 10);
        let io = TokioIo::new(TimedIo::new(stream, write_timeout));
        let conn = graceful.watch(builder.serve_connection(io, svc));
        let metrics = st.metrics.clone();
        metrics.connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let _ = conn.await;
            metrics.connections.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(
        Duration::from_millis(SHUTDOWN_GRACE_MS),
        graceful.shutdown(),
    )
    .await;
}
