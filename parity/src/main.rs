//! `parity`: the API parity suite between Linux's `ovpn` module and `ovpnd`.
//!
//! ```text
//! parity script                       print the case list as an nlprobe script
//! parity daemon DIR SCRIPT [--wait-ms N]   run a script against ovpnd's run dir
//! parity compare KERNEL DAEMON TABLE DETAILS   compare two transcripts
//! parity list                         the cases with their descriptions
//! parity show TRANSCRIPT              a transcript in normal form, case by case
//! ```
//!
//! `parity/run` drives the whole thing (VM boot, daemon in a namespace,
//! comparison); see `parity/README.md`.

mod cases;
mod compare;
mod exec;
mod msg;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: parity script | list | show TRANSCRIPT | daemon DIR SCRIPT [--wait-ms N] | compare KERNEL DAEMON TABLE DETAILS";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["script"] => {
            print!("{}", cases::script(&cases::all()));
            Ok(())
        }
        ["show", transcript] => std::fs::read_to_string(transcript)
            .map_err(|e| format!("{transcript}: {e}"))
            .map(|text| print!("{}", compare::show(&text, &cases::all()))),
        ["list"] => {
            for c in cases::all() {
                println!("{:28} {}", c.name, c.about);
            }
            Ok(())
        }
        ["daemon", dir, script, rest @ ..] => {
            let wait = match rest {
                ["--wait-ms", ms] => ms.parse().map_err(|_| "bad --wait-ms".to_owned()),
                [] => Ok(3000),
                _ => Err(USAGE.to_owned()),
            };
            wait.and_then(|ms| {
                let text = std::fs::read_to_string(script).map_err(|e| format!("{script}: {e}"))?;
                exec::run(
                    Path::new(dir),
                    &text,
                    Duration::from_millis(ms),
                    std::io::stdout().lock(),
                )
            })
        }
        ["compare", kernel, daemon, table, details] => (|| {
            let k = std::fs::read_to_string(kernel).map_err(|e| format!("{kernel}: {e}"))?;
            let d = std::fs::read_to_string(daemon).map_err(|e| format!("{daemon}: {e}"))?;
            let outcomes = compare::compare(&k, &d, &cases::all());
            let (t, det) = compare::report(&outcomes);
            std::fs::write(table, &t).map_err(|e| format!("{table}: {e}"))?;
            std::fs::write(details, det).map_err(|e| format!("{details}: {e}"))?;
            print!("{t}");
            Ok(())
        })(),
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parity: {e}");
            ExitCode::FAILURE
        }
    }
}
