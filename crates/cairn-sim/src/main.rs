//! `cairn-sim`: runs seeded simulations of the rollout protocol.
//!
//! ```text
//! cairn-sim --seed 7 --agents 100 --kind rolling --trace   replay one run, printing every event
//! cairn-sim --seeds 1000 --agents 10000 --kind rolling --max-unavailable 10%
//! cairn-sim --seeds 200 --agents 10,100,1000 --kind mixed --json out.json
//! ```
//!
//! Exits 1 if any run broke an invariant, printing each failure with the
//! command that replays it.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use cairn_rollout::{Amount, Plan};
use cairn_sim::{run, Kind, Outcome, Scenario, Summary};

struct Args {
    first_seed: u64,
    seeds: u64,
    agents: Vec<u32>,
    kind: Option<Kind>,
    max_unavailable: Option<Amount>,
    trace: bool,
    json: Option<String>,
    threads: usize,
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1).collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cairn-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let mut failed = false;
    let mut sizes = Vec::new();
    println!("{}", Summary::header());
    for &agents in &args.agents {
        let outcomes = sweep(&args, agents);
        let mut summary = Summary::default();
        for o in &outcomes {
            summary.add(o);
            if !o.violations.is_empty() {
                failed = true;
                eprintln!("{}", o.failure());
            }
        }
        println!("{}", summary.row());
        sizes.push(summary.to_json());
    }
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "kind": args.kind.map_or("mixed".to_string(), |k| k.to_string()),
            "max_unavailable": args.max_unavailable.map(|a| a.to_string()),
            "first_seed": args.first_seed,
            "seeds": args.seeds,
            "sizes": sizes,
        });
        let text = serde_json::to_string_pretty(&doc).expect("JSON");
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("cairn-sim: cannot write {path}: {e}");
            return ExitCode::from(2);
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs every seed at one size, on `threads` threads.
fn sweep(args: &Args, agents: u32) -> Vec<Outcome> {
    let next = AtomicU64::new(args.first_seed);
    let end = args.first_seed + args.seeds;
    let out = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..args.threads.max(1) {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= end {
                    break;
                }
                let kind = args
                    .kind
                    .unwrap_or(Kind::ALL[(seed % Kind::ALL.len() as u64) as usize]);
                let sc = Scenario::draw(seed, agents, kind, args.max_unavailable);
                let o = run(sc, args.trace);
                out.lock().expect("no panics").push(o);
            });
        }
    });
    let mut v = out.into_inner().expect("no panics");
    v.sort_by_key(|o| o.seed);
    v
}

fn parse(argv: Vec<String>) -> Result<Args, String> {
    let mut a = Args {
        first_seed: 0,
        seeds: 1,
        agents: vec![100],
        kind: None,
        max_unavailable: None,
        trace: false,
        json: None,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let mut it = argv.into_iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--seed" => {
                a.first_seed = number(&value()?)?;
                a.seeds = 1;
            }
            "--first-seed" => a.first_seed = number(&value()?)?,
            "--seeds" => a.seeds = number(&value()?)?,
            "--agents" => {
                a.agents = value()?
                    .split(',')
                    .map(|n| number(n).map(|n| n as u32))
                    .collect::<Result<_, _>>()?
            }
            "--kind" => {
                let v = value()?;
                a.kind = match v.as_str() {
                    "mixed" => None,
                    k => Some(Kind::parse(k).ok_or(format!(
                        "unknown kind {k:?}; one of mixed, {}",
                        Kind::ALL.map(|k| k.to_string()).join(", ")
                    ))?),
                }
            }
            "--max-unavailable" => {
                let v = value()?;
                let plan = serde_json::json!({ "max_unavailable": amount_json(&v) });
                a.max_unavailable = Some(
                    Plan::from_json(&plan)
                        .map_err(|e| e.to_string())?
                        .max_unavailable,
                );
            }
            "--trace" => a.trace = true,
            "--json" => a.json = Some(value()?),
            "--threads" => a.threads = number(&value()?)? as usize,
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    if a.agents.contains(&0) {
        return Err("--agents must be at least 1".into());
    }
    Ok(a)
}

fn number(text: &str) -> Result<u64, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))
}

fn amount_json(text: &str) -> serde_json::Value {
    match text.parse::<u64>() {
        Ok(n) => serde_json::json!(n),
        Err(_) => serde_json::json!(text),
    }
}
