//! The `jkmon` binary: load `.env`, parse the command line, start logging, dispatch.

use std::process::ExitCode;

use clap::Parser;

/// glibc's `malloc_trim(0)`: hands the free memory of every arena back to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heap() {
    extern "C" {
        fn malloc_trim(pad: usize) -> std::os::raw::c_int;
    }
    // SAFETY: malloc_trim only walks glibc's own free lists; it takes no pointer of ours and
    // is safe to call from any thread at any time.
    unsafe {
        malloc_trim(0);
    }
}

/// At most two glibc malloc arenas (unless `MALLOC_ARENA_MAX` says otherwise): each thread that
/// served a long response would otherwise keep an arena of its own, memory a Pi Zero does not
/// have.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn few_arenas() {
    extern "C" {
        fn mallopt(param: std::os::raw::c_int, value: std::os::raw::c_int) -> std::os::raw::c_int;
    }
    // an owner's own MALLOC_ARENA_MAX (read by glibc at start) wins
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    const M_ARENA_MAX: std::os::raw::c_int = -8;
    // SAFETY: mallopt only changes glibc's allocator settings; called first thing in main,
    // before any other thread exists.
    unsafe {
        mallopt(M_ARENA_MAX, 2);
    }
}

/// Where the Debian package keeps the configuration (`/etc/jkmon/jkmon.env`, the systemd
/// units' EnvironmentFile): read when the working directory has no `.env`, so `jkmon doctor`
/// and `jkmon set` on an installed system see what the service sees.
const SYSTEM_ENV: &str = "/etc/jkmon/jkmon.env";

/// Loads `.env` from the working directory, else [`SYSTEM_ENV`]; variables already set win.
fn load_env() -> Result<(), ExitCode> {
    let malformed = |path: &str, e: dotenvy::Error| {
        jkmon::cli::logging::error_line(format_args!(
            "could not read {path}: {e} (each line must look like NAME=value)"
        ));
        Err(ExitCode::from(jkmon::cli::EX_CONFIG))
    };
    match dotenvy::dotenv() {
        Ok(_) => return Ok(()),
        Err(e) if e.not_found() => {}
        Err(e) => return malformed(".env", e),
    }
    match dotenvy::from_path(SYSTEM_ENV) {
        Ok(()) => Ok(()),
        Err(e) if e.not_found() => Ok(()),
        Err(dotenvy::Error::Io(e)) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!("note: {SYSTEM_ENV} is not readable by this user, so its settings are not used here (run as its group: sudo -u jkmon jkmon …)");
            Ok(())
        }
        Err(e) => malformed(SYSTEM_ENV, e),
    }
}

fn main() -> ExitCode {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        few_arenas();
        let _ = jkmon::store::HEAP_TRIM.set(trim_heap);
    }
    // .env first, so that its values feed both clap's `env` options and the typed config.
    // A missing .env is normal; a malformed one is an error that names the line.
    if let Err(code) = load_env() {
        return code;
    }
    // "blank means the default", as for every other variable: clap would parse "" and name a
    // flag the owner never typed
    for name in jkmon::cli::VARIABLES {
        if std::env::var_os(name).is_some_and(|v| v.to_string_lossy().trim().is_empty()) {
            std::env::remove_var(name);
        }
    }
    let cli = jkmon::cli::Cli::parse();
    // Long-running commands log every session state change (INFO) by default; one-shot commands
    // only warnings and errors.
    jkmon::cli::logging::init(cli.command.is_service());
    // A misspelt variable would silently fall back to its default: say so.
    let known: Vec<&'static str> = jkmon::config::VARIABLES
        .iter()
        .chain(jkmon::cli::VARIABLES)
        .copied()
        .collect();
    let names: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .collect();
    for (name, closest) in
        jkmon::config::unknown_variables(names.iter().map(String::as_str), &known)
    {
        tracing::warn!("{name} is not a variable jkmon reads (ignored); did you mean {closest}?");
    }
    jkmon::cli::run(cli)
}
