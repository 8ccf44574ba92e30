//! `dpdk-discover`: EAL arguments for a DPDK application from what its pod
//! sees, for images with no Rust code of their own. Prints them shell-quoted,
//! or execs `PROGRAM <EAL args> -- APP-ARGS` so the application replaces this
//! process (it becomes the container's main process and gets its signals).
//! What discovery found goes to stderr, one `dpdk-discover: ` line each.

mod args;
mod quote;

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use dpdk_discover::{discover, DiscoverError, EalPlan, Inputs};

use args::{command_line, parse_args, Options, Parsed, USAGE};
use quote::{printable, quote_line};

fn log(msg: &str) {
    eprintln!("dpdk-discover: {}", printable(msg));
}

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args_os().skip(1)) {
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Run(o)) => o,
        Err(msg) => {
            log(&msg);
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let plan = match plan(&opts) {
        Ok(p) => p,
        Err(e) => {
            log(&describe(&e, &opts));
            return ExitCode::FAILURE;
        }
    };
    let eal = plan.args();
    log(&format!("eal-args: {}", quote_line(&eal).to_string_lossy()));
    let Some(program) = &opts.program else {
        return print_line(&quote_line(&eal));
    };
    let argv = command_line(program, &eal, &opts.app_args);
    if opts.print {
        return print_line(&quote_line(&argv));
    }
    // Only returns when the program could not be started.
    let err = Command::new(&argv[0]).args(&argv[1..]).exec();
    log(&format!(
        "cannot run {}: {err}",
        quote_line(&argv[..1]).to_string_lossy()
    ));
    // The shell's codes: 127 not found, 126 found but not executable.
    ExitCode::from(if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    })
}

/// Discovery with the options, its notes and devices logged.
fn plan(opts: &Options) -> dpdk_discover::Result<EalPlan> {
    let mut inputs = Inputs::from_process();
    inputs.mem_mb = opts.mem_mb;
    inputs.huge_dir = opts.huge_dir.clone();
    inputs.file_prefix = opts.file_prefix.clone();
    inputs.lcores = opts.lcores.clone();
    let plan = discover(&inputs)?;
    for note in &plan.notes {
        log(note);
    }
    for d in &plan.devices {
        let numa = d.numa_node.map_or("unknown".to_owned(), |n| n.to_string());
        log(&format!(
            "device {} (NUMA node {numa}) from {}",
            d.kind, d.origin
        ));
    }
    Ok(plan)
}

fn describe(e: &DiscoverError, opts: &Options) -> String {
    match (e, &opts.huge_dir) {
        (DiscoverError::NoHugetlbfsMount { path }, Some(dir)) => format!(
            "--huge-dir {} is not a hugetlbfs mount (none at that path in {})",
            dir.display(),
            path.display()
        ),
        _ => e.to_string(),
    }
}

fn print_line(line: &std::ffi::OsStr) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out
        .write_all(line.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log(&format!("writing to stdout: {e}"));
            ExitCode::FAILURE
        }
    }
}
