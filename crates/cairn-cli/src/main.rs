//! `cairn`: one binary for the whole release pipeline.
//!
//! This crate only parses arguments, opens what the command needs and
//! renders results; the work happens in the library crates. Every error
//! ends here as one line on stderr (one JSON object with `--json`, see
//! [`output`]) and exit code 1; usage errors exit 2.

mod cli;
mod cmd;
mod output;
mod reporter;

use clap::Parser;

fn main() {
    // Known before parsing, so that a usage error can be JSON too.
    let json = std::env::args_os().any(|a| a == "--json");
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => usage_error(json, e),
    };
    // The agent runs for days: what it does is logged at info by default.
    let verbose = match cli.command {
        cli::Command::Agent(_) => cli.global.verbose.max(1),
        _ => cli.global.verbose,
    };
    init_tracing(verbose);
    // The caller's umask never reaches what cairn writes: the store's files
    // and the trees it materializes for sandboxes are read by a step that
    // has no privilege over them, and a umask of 077 made every build fail
    // to enter its own input directories (see docs/ARCHITECTURE.md,
    // "Reproducible under variation").
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    // A build's work runs in sandboxes and on the blocking pool, so its
    // async part needs no worker threads of its own: starting them cost a
    // cached build more than the build itself. Long-running commands that
    // serve many clients keep one worker per core.
    let mut runtime = match cli.command {
        cli::Command::Build(_) | cli::Command::Test(_) => {
            tokio::runtime::Builder::new_current_thread()
        }
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = runtime
        .enable_all()
        .build()
        .expect("starting the async runtime");
    let json = cli.global.json;
    match runtime.block_on(cmd::run(cli)) {
        Ok(code) => std::process::exit(code),
        Err(e) if output::is_broken_pipe(&e) => std::process::exit(output::BROKEN_PIPE_EXIT),
        Err(e) => {
            output::report_error(json, &e, 1);
            std::process::exit(1);
        }
    }
}

/// Help and version go to stdout as clap prints them; a usage error is
/// clap's text (with its usage lines), or with `--json` one JSON line.
fn usage_error(json: bool, e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    let informational = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if !json || informational {
        e.exit();
    }
    // clap's text: the message (maybe over several lines), then the usage.
    let text = e.render().to_string();
    let mut message = Vec::new();
    let mut details = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("Usage:") || !details.is_empty() {
            details.push(line.to_string());
        } else {
            message.push(line.strip_prefix("error: ").unwrap_or(line));
        }
    }
    let code = e.exit_code();
    output::report(true, &message.join(" "), &details, code);
    std::process::exit(code);
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(output::LogWriter)
        .with_ansi(output::colours())
        .with_target(false)
        .init();
}
