//! `cairn`: one binary for the whole release pipeline.
//!
//! This crate only parses arguments, opens what the command needs and
//! renders results; the work happens in the library crates. Every error
//! ends here as one line on stderr and exit code 1 (clap exits 2 for usage
//! errors).

mod cli;
mod cmd;
mod output;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    init_tracing(cli.global.verbose);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the async runtime");
    let result = runtime.block_on(cmd::run(cli));
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            std::process::exit(1);
        }
    }
}

/// The error and its causes on one line, without repeating a cause whose
/// text its parent already includes.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
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
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
