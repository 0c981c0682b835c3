//! Where log lines go and how they look: stderr, filtered by `RUST_LOG` (the service's INFO
//! lines by default, only warnings for one-shot commands), coloured only on a terminal and
//! never with `NO_COLOR` set. Under systemd, when stderr is the journal's stream
//! (`$JOURNAL_STREAM` names it), each line starts with its syslog priority (`<3>` error,
//! `<4>` warning, `<6>` info, `<7>` debug) and without the time the journal adds itself, so
//! `journalctl -p warning -u jkmon` shows exactly the warnings and errors.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Starts logging; `service` for the long-running commands.
pub fn init(service: bool) {
    let default_filter = if service { "warn,jkmon=info" } else { "warn" };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if stderr_is_journal(std::env::var("JOURNAL_STREAM").ok().as_deref()) {
        let format = Priority(tracing_subscriber::fmt::format().without_time());
        builder.with_ansi(false).event_format(format).init();
    } else {
        builder.with_ansi(colour()).init();
    }
}

/// Prints the line that says why a command failed: `error: …`, with the error priority in
/// front (`<3>`) where stderr is the journal's stream, so `journalctl -p err -u jkmon` shows
/// why jkmon stopped.
pub fn error_line(message: impl std::fmt::Display) {
    let priority = if stderr_is_journal(std::env::var("JOURNAL_STREAM").ok().as_deref()) {
        "<3>"
    } else {
        ""
    };
    eprintln!("{priority}error: {message}");
}

/// Colour only on a terminal, and not when the owner asks for none (<https://no-color.org>).
fn colour() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Whether stderr is the stream `$JOURNAL_STREAM` (`<device>:<inode>`) names: systemd sets
/// it for the service; a program the service started with stderr elsewhere inherits the
/// variable but not the stream.
fn stderr_is_journal(journal_stream: Option<&str>) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some((dev, ino)) = journal_stream.and_then(|v| v.split_once(':')) else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

/// An event format with the syslog priority of the event's level in front.
struct Priority<F>(F);

impl<S, N, F> FormatEvent<S, N> for Priority<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let priority = match *event.metadata().level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            _ => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}
