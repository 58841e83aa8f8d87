//! [`serve`]: HTTP/1 with a header read timeout until a shutdown signal, then a bounded drain.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::settings::ServeSettings;

/// Resolves on the first SIGTERM (what `docker stop`, Kubernetes and systemd send) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the service gracefully");
                let _ = tokio::signal::ctrl_c().await;
                tracing::info!("SIGINT: shutting down");
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C: shutting down");
    }
}

/// The moment by which a stopping service must be done (`SHUTDOWN_TIMEOUT_SECONDS` after the signal).
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// `after` from now.
    pub fn after(after: Duration) -> Self {
        Deadline {
            at: Instant::now() + after,
        }
    }

    /// Time left (zero once passed).
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// The moment itself.
    pub fn instant(&self) -> Instant {
        self.at
    }

    /// Whether it has passed.
    pub fn passed(&self) -> bool {
        self.remaining().is_zero()
    }

    /// Runs `work` until it finishes or the deadline passes; `None` when cut off.
    pub async fn run<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        tokio::time::timeout(self.remaining(), work).await.ok()
    }
}

/// Serves `app` on `listener` until `shutdown` resolves: each connection gets `HEADER_TIMEOUT_SECONDS` to send
/// its request headers (a slow client is cut off instead of holding a connection forever), and at most
/// `MAX_CONNECTIONS` are open at once (further ones wait in the kernel's listen backlog until one closes). Then it stops
/// accepting, lets in-flight requests finish (idle connections are closed at once) for at most half of
/// `SHUTDOWN_TIMEOUT_SECONDS`, cuts off the connections still open then (a request still running is cancelled, a
/// client still sending its headers or not reading its answer is dropped: logged), and returns the [`Deadline`]
/// (`SHUTDOWN_TIMEOUT_SECONDS` from the signal): the other half at least is left for the service to flush what
/// it holds.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: &ServeSettings,
    shutdown: impl Future<Output = ()>,
) -> Deadline {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout);
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(settings.max_connections));
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break };
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
                let connection = graceful.watch(connection);
                // Reap the connections that ended, so the set holds only open ones.
                while connections.try_join_next().is_some() {}
                connections.spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    drop(slot);
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let deadline = Deadline::after(settings.shutdown_timeout);
    let drain = settings.shutdown_timeout / 2;
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        while connections.try_join_next().is_some() {}
        tracing::warn!(
            connections = connections.len(),
            drain_seconds = drain.as_secs_f64(),
            "connections still open after half the shutdown time were cut off"
        );
        connections.abort_all();
    }
    deadline
}
