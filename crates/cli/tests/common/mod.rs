//! Helpers shared by the binary's test files.

use std::io::BufRead;
use std::process::{Command, Output};

/// Runs the `hyperctl` binary with `args` and collects its output.
pub fn hyperctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hyperctl"))
        .args(args)
        .output()
        .expect("the binary should start")
}

/// Reads the `listening on ADDR` line a started `hyperctl serve` prints and returns its port.
#[allow(dead_code)] // not every test file serves
pub fn listening_port(child: &mut std::process::Child) -> u16 {
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().expect("stdout is piped"))
        .read_line(&mut line)
        .expect("the server prints its address");
    line.trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("expected `listening on ADDR`, got {line:?}"))
}
