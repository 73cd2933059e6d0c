//! The `mxm-secrets` command: parses arguments, calls the library, prints the error once and
//! turns it into its exit code. Nothing of ours goes to stdout during `run` (it belongs to the
//! program); the diagnostics and `get` print their answer there.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use mxm_secrets::audit::{Audit, LogFormat};
use mxm_secrets::diagnose::{self, Report, Style};
use mxm_secrets::error::{EX_USAGE, Error};
use mxm_secrets::inject::Inherit;
use mxm_secrets::run::{Inputs, RunRequest, run};
use mxm_secrets::{RuntimeIdentity, SecretsApi, config::Config};

#[derive(Parser)]
#[command(
    name = "mxm-secrets",
    version,
    about = "Authorize, fetch and inject secrets, then exec the program that needs them",
    after_help = "Example:\n  mxm-secrets run --role marketdata -- python feed.py\n\nExit codes: 64 usage, 65 manifest, 66 missing secret, 69 backend failed, 75 backend timed out,\n77 denied, 78 config; after exec, the program's own."
)]
struct Cli {
    /// Audit records on stderr: -v one per decision and fetch, -vv with backend paths
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// How audit records are written
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormatArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inject the manifest's secrets into a program and exec it
    #[command(
        after_help = "Examples:\n  mxm-secrets run --role marketdata -- python feed.py\n  mxm-secrets run --role marketdata --secret databento_api_key -- printenv DATABENTO_API_KEY\n  mxm-secrets run --role web --clean-env --keep PATH -- nginx"
    )]
    Run {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        manifest: ManifestArgs,
        #[command(flatten)]
        identity: IdentityArgs,
        /// Start the program from an empty environment (plus the secrets and --keep)
        #[arg(long)]
        clean_env: bool,
        /// With --clean-env, pass this variable through (repeatable)
        #[arg(long, value_name = "VAR", requires = "clean_env")]
        keep: Vec<String>,
        #[command(flatten)]
        jobs: JobsArg,
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
        after_help = "Example:\n  PGPASSWORD=$(mxm-secrets get postgres_password --role reporting) psql -h db"
    )]
    Get {
        /// The secret's public name
        name: String,
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        identity: IdentityArgs,
        #[command(flatten)]
        jobs: JobsArg,
    },
    /// Check that a launch would work: config, manifest, and every name authorized
    #[command(
        after_help = "Examples:\n  mxm-secrets check --role marketdata\n  mxm-secrets check --role marketdata --fetch     # also ask every backend (values discarded)\n  ExecStartPre=/usr/bin/mxm-secrets check --role marketdata --manifest /etc/feed/mxm-secrets.yaml"
    )]
    Check {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        manifest: ManifestArgs,
        #[command(flatten)]
        identity: IdentityArgs,
        /// Also fetch every secret (values discarded, never printed) to prove the backends answer
        #[arg(long)]
        fetch: bool,
        #[command(flatten)]
        jobs: JobsArg,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Explain how a secret name resolves for an identity, and why it is allowed or denied
    #[command(
        after_help = "Example:\n  mxm-secrets explain databento_api_key --role research --environment prod"
    )]
    Explain {
        /// The secret's public name
        name: String,
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        identity: IdentityArgs,
        #[command(flatten)]
        format: FormatArg,
    },
    /// List the secrets an identity may read, with their store and policy
    #[command(after_help = "Example:\n  mxm-secrets list --role marketdata --format json")]
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        identity: IdentityArgs,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Print a shell completion script
    #[command(after_help = "Example:\n  mxm-secrets completions bash > /etc/bash_completion.d/mxm-secrets")]
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page (roff) of mxm-secrets, or of one of its commands
    #[command(
        after_help = "Example:\n  for page in '' run get check explain list completions man; do\n    mxm-secrets man $page > /usr/local/share/man/man1/mxm-secrets${page:+-$page}.1\n  done"
    )]
    Man {
        /// A command's page (`run` -> mxm-secrets-run(1))
        command: Option<String>,
    },
}

#[derive(Args)]
struct ConfigArg {
    /// The config file [default: $MXM_SECRETS_CONFIG, ~/.config/mxm/secrets.yaml, /etc/mxm/secrets.yaml]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct ManifestArgs {
    /// The manifest of secrets the program needs [default: ./mxm-secrets.yaml]
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// Add a secret, injected as ENV (default: NAME upper-cased); no manifest file is read
    /// unless --manifest is given too
    #[arg(long = "secret", value_name = "NAME[=ENV]")]
    secrets: Vec<String>,
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

#[derive(Args)]
struct JobsArg {
    /// At most N fetches at once (a store's `max_concurrent` bounds its own further)
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = parse_jobs, allow_negative_numbers = true)]
    jobs: usize,
}

fn parse_jobs(value: &str) -> Result<usize, String> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| "give how many fetches may run at once: a whole number, at least 1".to_owned())
}

#[derive(Args)]
struct FormatArg {
    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
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
    let format = match cli.log_format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    };
    let audit = Audit { verbosity: cli.verbose, format };
    match dispatch(cli.command, audit) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mxm-secrets: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn dispatch(command: Command, audit: Audit) -> Result<(), Error> {
    let style = Style { color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() };
    match command {
        Command::Run { config, manifest, identity, clean_env, keep, jobs, dry_run, command } => {
            let inputs = inputs(config, manifest, &identity, jobs)?;
            if dry_run {
                let mut report = diagnose::check(&inputs, false, &audit, style)?;
                let shown: Vec<String> = command.iter().map(|a| a.to_string_lossy().into_owned()).collect();
                report.text.push_str(&format!("command    {}\n", shown.join(" ")));
                // As the run would: the program is looked up once every name is allowed.
                let inherit = Inherit { clean: clean_env, keep: keep.clone() };
                let found = Config::load(&Config::discover(inputs.config.as_deref())?)
                    .and_then(|config| mxm_secrets::run::find_program(&config, &inherit, &command[0]));
                match found {
                    Ok(path) => report.text.push_str(&format!("program    {}\n", path.display())),
                    Err(e) => {
                        report.text.push_str(&format!("program    {e}\n"));
                        if report.outcome.is_ok() {
                            report.outcome = Err(e);
                        }
                    }
                }
                return print_report(report, Format::Text);
            }
            let request = RunRequest { inputs, inherit: Inherit { clean: clean_env, keep }, command, audit };
            match run(request)? {}
        }
        // One name: `--jobs` is accepted for symmetry with run and check, and has nothing to bound.
        Command::Get { name, config, identity, jobs: _ } => {
            let api = SecretsApi::from_config(load_config(&config)?).with_audit(audit);
            let value = api.get_secret(&name, &identity.identity()?)?;
            write_stdout(value.expose())?;
            if std::io::stdout().is_terminal() {
                write_stdout(b"\n")?;
            }
            Ok(())
        }
        Command::Check { config, manifest, identity, fetch, jobs, format } => {
            let report = inputs(config, manifest, &identity, jobs)
                .and_then(|inputs| diagnose::check(&inputs, fetch, &audit, style));
            print_result("mxm-secrets/check/1", report, format.format)
        }
        Command::Explain { name, config, identity, format } => {
            let report = load_config(&config)
                .and_then(|c| Ok(diagnose::explain(&c, &name, &identity.identity()?, style)));
            print_result("mxm-secrets/explain/1", report, format.format)
        }
        Command::List { config, identity, format } => {
            let report = load_config(&config).and_then(|c| Ok(diagnose::list(&c, &identity.identity()?)));
            print_result("mxm-secrets/list/1", report, format.format)
        }
        Command::Completions { shell } => {
            let shell = match shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
            };
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "mxm-secrets", &mut script);
            write_stdout(&script)
        }
        Command::Man { command } => {
            let top = Cli::command();
            let page = match command {
                None => top,
                Some(name) => {
                    let sub = top.find_subcommand(&name).cloned().ok_or_else(|| {
                        let known: Vec<&str> = top.get_subcommands().map(|c| c.get_name()).collect();
                        Error::Usage(format!("no command `{name}` (commands: {})", known.join(", ")))
                    })?;
                    // Named as man(1) expects, so SEE ALSO entries of the top page resolve.
                    sub.name(format!("mxm-secrets-{name}"))
                }
            };
            let mut roff = Vec::new();
            clap_mangen::Man::new(page).render(&mut roff).map_err(Error::Output)?;
            write_stdout(&roff)
        }
    }
}

fn inputs(
    config: ConfigArg,
    manifest: ManifestArgs,
    identity: &IdentityArgs,
    jobs: JobsArg,
) -> Result<Inputs, Error> {
    Ok(Inputs {
        jobs: jobs.jobs,
        config: config.config,
        manifest: manifest.manifest,
        secrets: manifest.secrets,
        identity: identity.identity()?,
    })
}

fn load_config(config: &ConfigArg) -> Result<Config, Error> {
    Config::load(&Config::discover(config.config.as_deref())?)
}

/// A report on stdout, then its outcome; with `--format json` an error that came before any
/// report is JSON on stdout too, so a program reading it always gets JSON.
fn print_result(schema: &str, report: Result<Report, Error>, format: Format) -> Result<(), Error> {
    match report {
        Ok(report) => print_report(report, format),
        Err(error) => {
            if format == Format::Json {
                write_stdout(format!("{}\n", Report::error_json(schema, &error)).as_bytes())?;
            }
            Err(error)
        }
    }
}

fn print_report(report: Report, format: Format) -> Result<(), Error> {
    let shown = match format {
        Format::Text => report.text,
        Format::Json => format!("{:#}\n", report.json),
    };
    write_stdout(shown.as_bytes())?;
    report.outcome
}

/// Straight to the descriptor: std's stdout buffer would keep a copy of a value.
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
