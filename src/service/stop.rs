//! The stop order: the writer's last commit first, then the rest within [`STOP_DEADLINE`].

use super::{Parts, STOP_DEADLINE};

use anyhow::Context;
use tokio::time::Instant;

impl Parts {
    /// Stops every part: the writer first (its last commit, and the batteries out of the
    /// merge at once, before anything that may take a while), then the rest within
    /// [`STOP_DEADLINE`] in all, since systemd and Docker wait 10–90 s and then kill.
    pub(super) async fn stop(self) -> anyhow::Result<()> {
        drop(self.events);
        // the poller stops with the token; a poll in flight is dropped, its row never written
        if let Some(inverter) = self.inverter {
            drop(inverter.events);
            let _ = tokio::time::timeout(STOP_DEADLINE, inverter.task).await;
        }
        let closed = match self.writer {
            Some(w) => Some(w.stop().await),
            None => None,
        };
        let deadline = Instant::now() + STOP_DEADLINE;
        if let Some(fleet) = self.fleet {
            if tokio::time::timeout_at(deadline, fleet.release())
                .await
                .is_err()
            {
                tracing::warn!("stopping: not every BMS link was released in time");
            }
        }
        if let Some(task) = self.web {
            let _ = tokio::time::timeout_at(deadline, task).await;
        }
        for mut task in self.side_tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
            }
        }
        if let Some(charts) = self.charts {
            let stopped = tokio::task::spawn_blocking(move || charts.stop());
            let _ = tokio::time::timeout_at(deadline, stopped).await;
        }
        if let Some(closed) = closed {
            let stats = closed.context("the database was not closed cleanly")?;
            tracing::info!(
                "database closed after {} commit(s) ({} failed)",
                stats.commits,
                stats.failed_commits
            );
        }
        Ok(())
    }
}
