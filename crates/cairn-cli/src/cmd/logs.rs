//! `cairn logs SERVICE [-f]`: the service's output on this machine, from
//! the agent's state directory; and the hidden `cairn log-pump` the agent
//! starts for each service process.
//!
//! A service logs what its clients send it (a request's path, a header),
//! so its output is shown escaped (`cairn_escape::lines`: control
//! characters and bytes that are not UTF-8 made visible, lines kept); the
//! log files keep the raw bytes.

use std::path::PathBuf;

use anyhow::{Context, Result};
use cairn_agent::config::LogLimits;
use cairn_agent::logs::{pump as pump_lines, LogFiles, PumpSettings};
use cairn_agent::AgentConfig;

use crate::cli::{LogPumpArgs, LogsArgs};

/// Runs `cairn logs`.
pub async fn run(args: LogsArgs) -> Result<i32> {
    cairn_trust::document::validate_name("service", &args.service)?;
    let state_dir = match (&args.config, &args.state_dir) {
        (Some(file), _) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            AgentConfig::parse(file, &text)?.state_dir
        }
        (None, Some(dir)) => dir.clone(),
        (None, None) => PathBuf::from("/var/lib/cairn").join(&args.service),
    };
    let dir = state_dir.join("logs");
    if !dir.is_dir() {
        anyhow::bail!(
            "no logs for {} in {} (give the agent's --config or --state-dir)",
            args.service,
            dir.display()
        );
    }
    let files = LogFiles::new(dir, &args.service);
    let follow = args.follow;
    tokio::task::spawn_blocking(move || {
        let mut out = crate::output::Escaped::new(std::io::stdout().lock());
        if follow {
            files.follow(&mut out, &|| false)?;
        } else {
            files.print(&mut out)?;
        }
        out.finish()
    })
    .await?
    .context("printing the logs")?;
    Ok(0)
}

/// Runs the hidden `cairn log-pump`: stdin to the rotated log files.
pub fn pump(args: LogPumpArgs) -> Result<i32> {
    let settings = PumpSettings {
        files: LogFiles::new(args.dir, &args.service),
        tag: args.tag,
        limits: LogLimits {
            max_bytes: args.max_bytes,
            keep: args.keep,
        },
    };
    pump_lines(std::io::stdin().lock(), &settings).context("writing the service's log")?;
    Ok(0)
}
