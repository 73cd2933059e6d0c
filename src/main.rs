//! The `mxm-secrets` command: parses arguments, calls the library, prints the error once and
//! turns it into its exit code. Nothing of ours ever goes to stdout except `get`'s value.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use mxm_secrets::error::{EX_USAGE, Error};
use mxm_secrets::inject::Inherit;
use mxm_secrets::run::{RunRequest, run};
use mxm_secrets::{RuntimeIdentity, SecretsApi, config::Config};

#[derive(Parser)]
#[command(
    name = "mxm-secrets",
    version,
    about = "Authorize, fetch and inject secrets, then exec the program that needs them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inject the manifest's secrets into a program's environment and exec it
    #[command(
        after_help = "Example:\n  mxm-secrets run --role marketdata -- python feed.py\n  mxm-secrets run --role marketdata --secret databento_api_key -- printenv DATABENTO_API_KEY"
    )]
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// The manifest of secrets the program needs [default: ./mxm-secrets.yaml]
        #[arg(long, value_name = "FILE")]
        manifest: Option<PathBuf>,
        /// Add a secret, injected as ENV (default: NAME upper-cased); no manifest file is
        /// read unless --manifest is given too
        #[arg(long = "secret", value_name = "NAME[=ENV]")]
        secrets: Vec<String>,
        #[command(flatten)]
        identity: IdentityArgs,
        /// Start the program from an empty environment (plus the secrets and --keep)
        #[arg(long)]
        clean_env: bool,
        /// With --clean-env, pass this variable through (repeatable)
        #[arg(long, value_name = "VAR", requires = "clean_env")]
        keep: Vec<String>,
        /// Print the plan (principal, each name's decision and target) and stop: nothing is
        /// fetched or run; exits as the run would before fetching
        #[arg(long)]
        dry_run: bool,
        /// The program and its arguments
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<OsString>,
    },
    /// Print one secret's value to stdout, for scripts
    #[command(
        after_help = "Example:\n  PGPASSWORD=$(mxm-secrets get postgres_password --role reporting) psql ..."
    )]
    Get {
        /// The secret's public name
        name: String,
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        identity: IdentityArgs,
    },
}

#[derive(Args)]
struct ConfigArg {
    /// The config file [default: $MXM_SECRETS_CONFIG, ~/.config/mxm/secrets.yaml, /etc/mxm/secrets.yaml]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// The declared runtime identity; never guessed.
#[derive(Args)]
struct IdentityArgs {
    /// The role this program runs as (the principal, unless a `principals:` rule maps it)
    #[arg(long, env = "MXM_ROLE")]
    role: String,
    #[arg(long, env = "MXM_ENVIRONMENT")]
    environment: Option<String>,
    #[arg(long, env = "MXM_MACHINE")]
    machine: Option<String>,
    #[arg(long, env = "MXM_APP")]
    app: Option<String>,
    #[arg(long, env = "MXM_SUBSTRATE")]
    substrate: Option<String>,
}

impl IdentityArgs {
    fn identity(&self) -> Result<RuntimeIdentity, Error> {
        RuntimeIdentity::declared(
            &self.role,
            self.environment.as_deref(),
            self.machine.as_deref(),
            self.app.as_deref(),
            self.substrate.as_deref(),
        )
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(EX_USAGE) } else { ExitCode::SUCCESS };
        }
    };
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mxm-secrets: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn dispatch(command: Command) -> Result<(), Error> {
    match command {
        Command::Run { config, manifest, secrets, identity, clean_env, keep, dry_run, command } => {
            let inherit = Inherit { clean: clean_env, keep };
            let request = RunRequest {
                config: config.config,
                manifest,
                secrets,
                identity: identity.identity()?,
                inherit,
                command,
            };
            if dry_run {
                let plan = mxm_secrets::run::dry_run(&request)?;
                write_stdout(plan.report.as_bytes())?;
                return plan.outcome;
            }
            match run(request)? {}
        }
        Command::Get { name, config, identity } => {
            let api = SecretsApi::from_config(Config::load(&Config::discover(config.config.as_deref())?)?);
            let value = api.get_secret(&name, &identity.identity()?)?;
            write_stdout(value.expose())?;
            if std::io::stdout().is_terminal() {
                write_stdout(b"\n")?;
            }
            Ok(())
        }
    }
}

/// Straight to the descriptor: std's stdout buffer would keep a copy of the value.
fn write_stdout(mut bytes: &[u8]) -> Result<(), Error> {
    while !bytes.is_empty() {
        match nix::unistd::write(std::io::stdout(), bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(Error::Output(e.into())),
        }
    }
    Ok(())
}
