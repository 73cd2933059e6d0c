//! The `mxm-secrets` command; all of it is [`mxm_secrets::cli`], as `just` does it.

fn main() -> std::process::ExitCode {
    mxm_secrets::cli::main(std::env::args_os())
}
