//! `weft`: the control plane server and its CLI. Everything lives in the library; see
//! `weft --help`.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    weft::run()
}
