//! The `mxm-secrets` command ([`main`]; `src/main.rs` only calls it): parses arguments,
//! calls the library, prints the error once and turns it into its exit code. Nothing of ours goes to stdout during `run` (it belongs to the
//! program); the diagnostics and `get` print their answer there.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;

use crate::audit::{self, Audit, LogFormat, Sink};
use crate::complete::{self, COMPLETE_VAR, Kind};
use crate::diagnose::{self, Report, Style};
use crate::error::{EX_USAGE, Error};
use crate::inject::Inherit;
use crate::inputs::Inputs;
use crate::manifest::DEFAULT_MANIFEST;
use crate::run::{RunRequest, run};
use crate::{Caller, RuntimeIdentity, SecretsApi, config::Config};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use clap_complete::engine::{ArgValueCandidates, CompletionCandidate};

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
    /// Where audit records go: stderr; syslog (/dev/log, facility authpriv); journald (its
    /// native protocol, with MXM_* fields); auto (journald when run by systemd with stderr
    /// to the journal, else stderr). Any but stderr implies -v
    #[arg(long, value_enum, default_value = "stderr", value_name = "WHERE", global = true)]
    audit_log: AuditLogArg,
    /// The socket for --audit-log syslog or journald, instead of the system's (for tests)
    #[arg(long, value_name = "PATH", global = true, hide = true)]
    audit_socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inject the manifest's secrets into a program and exec it, or stay as its parent (--supervise)
    #[command(
        after_help = "Examples:\n  mxm-secrets run --role marketdata -- python feed.py\n  mxm-secrets run --role marketdata --secret databento_api_key -- printenv DATABENTO_API_KEY\n  mxm-secrets run --role web --clean-env --keep PATH -- nginx\n  mxm-secrets run --role web --mask --watch 5m -- nginx"
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
        #[command(flatten)]
        broker: BrokerArg,
        /// Print the plan (principal, each name's decision and target) and stop: nothing is
        /// fetched or run; exits as the run would before fetching
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        supervise: SuperviseArgs,
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
        #[arg(add = candidates(Kind::Secret))]
        name: String,
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        identity: IdentityArgs,
        #[command(flatten)]
        jobs: JobsArg,
        #[command(flatten)]
        broker: BrokerArg,
    },
    /// Check that a launch would work: config, manifest, and every name authorized
    #[command(
        after_help = "Examples:\n  mxm-secrets check --role marketdata\n  mxm-secrets check --role marketdata --fetch     # also ask every backend (values discarded)\n  ExecStartPre=/usr/local/bin/mxm-secrets check --role marketdata --manifest /etc/feed/mxm-secrets.yaml"
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
        #[command(flatten)]
        broker: BrokerArg,
    },
    /// Explain how a secret name resolves for an identity, and why it is allowed or denied
    #[command(
        after_help = "Example:\n  mxm-secrets explain databento_api_key --role research --environment prod"
    )]
    Explain {
        /// The secret's public name
        #[arg(add = candidates(Kind::Secret))]
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
        #[command(flatten)]
        broker: BrokerArg,
    },
    /// Serve secrets to local programs over a unix socket, so the policy is a boundary
    #[command(
        after_help = "Examples:\n  mxm-secrets serve --config /etc/mxm/secrets.yaml --socket /run/mxm-secrets/broker.sock --socket-group mxm-clients\n  mxm-secrets run --broker /run/mxm-secrets/broker.sock --role marketdata -- python feed.py\n\nSIGHUP reloads the config (a bad one is refused, the old one kept); SIGTERM drains.\nWith systemd, see examples/systemd/mxm-secrets.socket and mxm-secrets.service."
    )]
    Serve(ServeArgs),
    /// Print a shell completion script
    #[command(after_help = "Example:\n  mxm-secrets completions bash > /etc/bash_completion.d/mxm-secrets")]
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page (roff) of mxm-secrets, or of one of its commands
    #[command(
        after_help = "Example:\n  for page in '' run get check explain list serve completions man; do\n    mxm-secrets man $page > /usr/local/share/man/man1/mxm-secrets${page:+-$page}.1\n  done"
    )]
    Man {
        /// A command's page (`run` -> mxm-secrets-run(1))
        command: Option<String>,
    },
}

/// `mxm-secrets serve`: the broker (docs/broker.md).
#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The broker's socket, created here (its directory must not be writable by everyone;
    /// made 0750 if missing); or none, when systemd passes the sockets
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Also answer systemd's LoadCredential=ID:PATH on this socket
    #[arg(long, value_name = "PATH")]
    credentials_socket: Option<PathBuf>,
    /// The mode of the sockets created here, in octal
    #[arg(long, value_name = "MODE", default_value = "0660", value_parser = parse_mode)]
    socket_mode: u32,
    /// The group of the sockets created here (the users who may ask)
    #[arg(long, value_name = "GROUP")]
    socket_group: Option<String>,
    /// At most N clients served at once, and a quarter of N (at least 1) per uid other than root; past either, 75 (try again)
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = parse_jobs)]
    max_connections: usize,
    /// How long a client has to send its whole request (and to take the answer): seconds, or
    /// a number with a unit (500ms, 30s)
    #[arg(long, value_name = "DURATION", default_value = "10", value_parser = crate::duration::positive)]
    client_timeout: std::time::Duration,
    #[command(flatten)]
    jobs: JobsArg,
}

/// Where values come from instead of a config: a broker.
#[derive(Args)]
struct BrokerArg {
    /// Ask the broker listening on this socket (`mxm-secrets serve`) instead of reading a
    /// config: only the manifest is read here [default: $MXM_SECRETS_BROKER, unless --config
    /// is given]
    #[arg(long, value_name = "SOCKET", conflicts_with = "config")]
    broker: Option<PathBuf>,
}

/// `MXM_SECRETS_BROKER` stands in for `--broker` unless `--config` is given: an explicit
/// config on the line wins over a broker from the environment. Empty means unset.
fn with_env_broker(mut command: Command) -> Command {
    let (broker, config) = match &mut command {
        Command::Run { broker, config, .. }
        | Command::Get { broker, config, .. }
        | Command::Check { broker, config, .. }
        | Command::List { broker, config, .. } => (broker, config),
        _ => return command,
    };
    if broker.broker.is_none() && config.config.is_none() {
        broker.broker = std::env::var_os("MXM_SECRETS_BROKER").filter(|v| !v.is_empty()).map(PathBuf::from);
    }
    command
}

fn parse_mode(value: &str) -> Result<u32, String> {
    u32::from_str_radix(value.trim_start_matches("0o"), 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| "give an octal mode such as 0660".to_owned())
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
    #[arg(long = "secret", value_name = "NAME[=ENV]", add = candidates(Kind::Secret))]
    secrets: Vec<String>,
}

/// The declared runtime identity; never guessed.
#[derive(Args)]
struct IdentityArgs {
    /// The role this program runs as (the principal, unless a `principals:` rule maps it)
    #[arg(long, env = "MXM_ROLE", add = candidates(Kind::Role))]
    role: String,
    /// The deployment environment (prod, staging, ...): a policy with `environments:` allows
    /// only those; `principals:` rules may match on it
    #[arg(long, env = "MXM_ENVIRONMENT", add = candidates(Kind::Environment))]
    environment: Option<String>,
    /// The machine (host name or class): a policy with `machines:` allows only those;
    /// `principals:` rules may match on it
    #[arg(long, env = "MXM_MACHINE", add = candidates(Kind::Machine))]
    machine: Option<String>,
    /// The application, for `principals:` rules that tell apps of one role apart
    #[arg(long, env = "MXM_APP")]
    app: Option<String>,
    /// What runs it (systemd, cron, container, ...), for `principals:` rules that match on it
    #[arg(long, env = "MXM_SUBSTRATE")]
    substrate: Option<String>,
}

/// Staying as the program's parent instead of exec.
#[derive(Args)]
struct SuperviseArgs {
    /// Stay as the program's parent: forward signals, reap orphans, exit with its code
    /// (automatic when mxm-secrets is PID 1)
    #[arg(long, conflicts_with = "exec")]
    supervise: bool,
    /// Exec even as PID 1 (where supervising is the default)
    #[arg(long)]
    exec: bool,
    /// Replace every injected value (and its base64, JSON and URL forms) in the program's
    /// stdout and stderr with *** (implies --supervise)
    #[arg(long, conflicts_with = "exec")]
    mask: bool,
    /// Fetch the secrets again every INTERVAL (give or take 10 %) and restart the program
    /// when a value changed (implies --supervise): seconds, or 500ms, 30s, 5m, 1h
    #[arg(long, value_name = "INTERVAL", value_parser = crate::duration::positive, conflicts_with = "exec", allow_negative_numbers = true)]
    watch: Option<std::time::Duration>,
    /// The signal that stops the program for a restart
    #[arg(long, value_name = "SIGNAL", default_value = "TERM", value_parser = parse_signal, requires = "watch")]
    stop_signal: nix::sys::signal::Signal,
    /// How long the program has to stop before SIGKILL: seconds, or 500ms, 30s, 5m
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::duration::parse, requires = "watch", allow_negative_numbers = true)]
    stop_timeout: std::time::Duration,
}

impl SuperviseArgs {
    /// `None`: exec.
    fn options(self) -> Option<crate::supervise::Options> {
        let asked = self.supervise || self.mask || self.watch.is_some();
        crate::supervise::wanted(asked, self.exec, std::process::id()).then_some(crate::supervise::Options {
            mask: self.mask,
            watch: self.watch,
            stop_signal: self.stop_signal,
            stop_timeout: self.stop_timeout,
        })
    }
}

/// `TERM`, `SIGTERM` or `15`.
fn parse_signal(text: &str) -> Result<nix::sys::signal::Signal, String> {
    let upper = text.to_ascii_uppercase();
    let named = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    named
        .parse()
        .ok()
        .or_else(|| text.parse::<i32>().ok().and_then(|n| nix::sys::signal::Signal::try_from(n).ok()))
        .ok_or_else(|| format!("`{text}` is not a signal: give a name (TERM, INT, QUIT, ...) or a number"))
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

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AuditLogArg {
    Stderr,
    Syslog,
    Journald,
    Auto,
}

#[derive(Clone, Copy, ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl IdentityArgs {
    fn identity(&self) -> Result<RuntimeIdentity, Error> {
        Ok(RuntimeIdentity::declared(
            &self.role,
            self.environment.as_deref(),
            self.machine.as_deref(),
            self.app.as_deref(),
            self.substrate.as_deref(),
        )?)
    }
}

/// The whole command for `args` (the program's name first), as `std::env::args_os()`.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    // Before anything else: the environment may already hold secrets (env backend).
    if let Err(e) = crate::exec::protect_early() {
        eprintln!("mxm-secrets: {e}");
        return ExitCode::from(e.exit_code());
    }
    let args: Vec<OsString> = args.into_iter().collect();
    complete_if_asked(&args);
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            if let Some(tip) = missing_separator(&e, &args) {
                eprintln!("\n{tip}");
            }
            return if e.use_stderr() { ExitCode::from(EX_USAGE) } else { ExitCode::SUCCESS };
        }
    };
    let format = match cli.log_format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    };
    let audit = audit(&cli, format);
    let argv0 = args.first().cloned().unwrap_or_else(|| "mxm-secrets".into());
    match dispatch(cli.command, audit, &argv0) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mxm-secrets: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// `-v`, `--log-format` and `--audit-log` as one [`Audit`]; the identity is added per command.
fn audit(cli: &Cli, format: LogFormat) -> Audit {
    let socket = |default: &str| cli.audit_socket.clone().unwrap_or_else(|| PathBuf::from(default));
    let sink = match cli.audit_log {
        AuditLogArg::Stderr => Sink::Stderr,
        AuditLogArg::Syslog => Sink::Syslog(socket(audit::SYSLOG_SOCKET)),
        AuditLogArg::Journald => Sink::Journald(socket(audit::JOURNALD_SOCKET)),
        AuditLogArg::Auto => Sink::auto(&socket(audit::JOURNALD_SOCKET)),
    };
    // Sending records to a log is asking for them.
    let verbosity = if cli.audit_log == AuditLogArg::Stderr { cli.verbose } else { cli.verbose.max(1) };
    Audit { verbosity, format, sink, context: Default::default() }
}

/// `get`'s answer: the value as it is, and a newline only for a person at a terminal (a
/// script's `$(...)` gets the exact bytes).
fn print_value(value: &crate::secret::SecretValue) -> Result<(), Error> {
    write_stdout(value.expose())?;
    if std::io::stdout().is_terminal() {
        write_stdout(b"\n")?;
    }
    Ok(())
}

fn dispatch(command: Command, audit: Audit, argv0: &std::ffi::OsStr) -> Result<(), Error> {
    let command = with_env_broker(command);
    let style = Style { color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() };
    match command {
        Command::Run { config, manifest, identity, clean_env, keep, jobs, broker, dry_run, supervise, command } => {
            let inputs = match &broker.broker {
                Some(_) => broker_inputs(manifest, &identity, jobs)?,
                None => inputs(config, manifest, &identity, jobs)?,
            };
            if let (Some(socket), true) = (&broker.broker, dry_run) {
                return broker_check(socket, &inputs, Format::Text);
            }
            let audit = audit.about(&inputs.identity, command.first().map(OsString::as_os_str));
            if dry_run {
                let mut report = diagnose::check(&inputs, false, &audit, style)?;
                let shown: Vec<String> = command.iter().map(|a| a.to_string_lossy().into_owned()).collect();
                report.text.push_str(&format!("command    {}\n", shown.join(" ")));
                // As the run would: the program is looked up once every name is allowed.
                let inherit = Inherit { clean: clean_env, keep: keep.clone() };
                let found = Config::load(&Config::discover(inputs.config.as_deref())?)
                    .map_err(Error::from)
                    .and_then(|config| crate::run::find_program(&config, &inherit, &command[0]));
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
            let inherit = Inherit { clean: clean_env, keep };
            let supervise = supervise.options();
            let request = RunRequest { inputs, inherit, command, audit, broker: broker.broker, supervise };
            // Only a supervisor comes back: with the program's exit code.
            std::process::exit(i32::from(run(request)?))
        }
        // One name: `--jobs` is accepted for symmetry with run and check, and has nothing to bound.
        Command::Get { name, config, identity, jobs: _, broker } => {
            let identity = identity.identity()?;
            if let Some(socket) = &broker.broker {
                let _hardened = crate::exec::harden()?;
                let manifest = crate::manifest::Manifest::requested(None, std::slice::from_ref(&name))?;
                // One name asked, so one value back.
                let values = crate::broker::client::fetch(socket, &identity, &manifest)?;
                return values.iter().try_for_each(|(_, value)| print_value(value));
            }
            let api = SecretsApi::from_config(load_config(&config)?).with_audit(audit.about(&identity, None));
            let _hardened = crate::exec::harden()?;
            print_value(&api.get_secret(&name, &identity)?)
        }
        Command::Check { config, manifest, identity, fetch: false, jobs, format, broker: BrokerArg { broker: Some(socket) } } => {
            let _ = config;
            broker_check(&socket, &broker_inputs(manifest, &identity, jobs)?, format.format)
        }
        Command::Check { broker: BrokerArg { broker: Some(_) }, .. } => Err(Error::Usage(
            "check --fetch reads the config and asks the stores itself; through a broker, `run --broker` is the proof".to_owned(),
        )),
        Command::Check { config, manifest, identity, fetch, jobs, format, broker: _ } => {
            let report = inputs(config, manifest, &identity, jobs).and_then(|inputs| {
                diagnose::check(&inputs, fetch, &audit.about(&inputs.identity, None), style)
            });
            print_result("mxm-secrets/check/1", report, format.format)
        }
        Command::Explain { name, config, identity, format } => {
            let report = load_config(&config).and_then(|c| {
                Ok(diagnose::explain(&c, &name, &identity.identity()?, &Caller::local(), style))
            });
            print_result("mxm-secrets/explain/1", report, format.format)
        }
        Command::List { identity, format, broker: BrokerArg { broker: Some(socket) }, .. } => {
            let report = identity.identity().and_then(|identity| crate::broker::client::list(&socket, &identity));
            print_result("mxm-secrets/list/1", report, format.format)
        }
        Command::Serve(serve) => {
            // A broker's records are its reason to exist: at least one per decision.
            let audit = Audit { verbosity: audit.verbosity.max(1), ..audit };
            crate::broker::serve(crate::broker::ServeOptions {
                config: config_path(&serve.config)?,
                socket: serve.socket.map(|p| absolute(&p)),
                credentials_socket: serve.credentials_socket.map(|p| absolute(&p)),
                socket_mode: serve.socket_mode,
                socket_group: serve.socket_group,
                limits: crate::broker::Limits { max_connections: serve.max_connections, timeout: serve.client_timeout },
                jobs: serve.jobs.jobs,
                audit,
            })
        }
        Command::List { config, identity, format, broker: _ } => {
            let report = load_config(&config).and_then(|c| Ok(diagnose::list(&c, &identity.identity()?, &Caller::local())));
            print_result("mxm-secrets/list/1", report, format.format)
        }
        Command::Completions { shell } => {
            use clap_complete::env::EnvCompleter;
            let shell: &dyn EnvCompleter = match shell {
                Shell::Bash => &clap_complete::env::Bash,
                Shell::Zsh => &clap_complete::env::Zsh,
                Shell::Fish => &clap_complete::env::Fish,
            };
            let mut script = Vec::new();
            shell
                .write_registration(
                    COMPLETE_VAR,
                    "mxm-secrets",
                    "mxm-secrets",
                    &completer(argv0),
                    &mut script,
                )
                .map_err(Error::Output)?;
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
            write_stdout(&man_page(page).map_err(Error::Output)?)
        }
    }
}

/// The `--config` on the line being completed, for the candidates of [`complete::words`].
static COMPLETION_CONFIG: OnceLock<Option<PathBuf>> = OnceLock::new();

/// Completes an argument with words from the config (see [`crate::complete`]).
fn candidates(kind: Kind) -> ArgValueCandidates {
    ArgValueCandidates::new(move || {
        let config = COMPLETION_CONFIG.get().cloned().flatten();
        complete::words(kind, config.as_deref()).into_iter().map(CompletionCandidate::new).collect()
    })
}

/// A completion request from the script of `completions SHELL`: answered, then exit, before
/// anything else runs.
fn complete_if_asked(args: &[OsString]) {
    if std::env::var_os(COMPLETE_VAR).is_none() {
        return;
    }
    let line: Vec<OsString> = args.iter().skip_while(|a| *a != "--").skip(1).cloned().collect();
    let _ = COMPLETION_CONFIG.set(complete::config_on_line(&line));
    clap_complete::CompleteEnv::with_factory(Cli::command).var(COMPLETE_VAR).complete();
}

/// How the completion script calls us back: the path we were run by, made absolute when it
/// is a path (so the script works from any directory), else the name found on PATH.
fn completer(argv0: &std::ffi::OsStr) -> String {
    let argv0 = PathBuf::from(argv0);
    let program = if argv0.components().count() > 1 { absolute(&argv0) } else { argv0 };
    program.to_string_lossy().into_owned()
}

/// clap_mangen's page, with the after-help examples as EXAMPLES (clap_mangen calls them
/// EXTRA) and our EXIT STATUS, ENVIRONMENT and FILES before them, in man-pages(7) order.
fn man_page(page: clap::Command) -> std::io::Result<Vec<u8>> {
    let mut roff = Vec::new();
    clap_mangen::Man::new(page).render(&mut roff)?;
    let roff = String::from_utf8_lossy(&roff);
    let ours = crate::manual::SECTIONS;
    let page = match [".SH EXTRA\n", ".SH VERSION\n"].iter().find_map(|h| roff.find(h)) {
        Some(at) => {
            format!("{}{ours}{}", &roff[..at], roff[at..].replacen(".SH EXTRA\n", ".SH EXAMPLES\n", 1))
        }
        None => format!("{roff}{ours}"),
    };
    Ok(page.into_bytes())
}

fn inputs(
    config: ConfigArg,
    manifest: ManifestArgs,
    identity: &IdentityArgs,
    jobs: JobsArg,
) -> Result<Inputs, Error> {
    // The default manifest, named here so that messages show the absolute path read.
    let default_manifest = manifest.secrets.is_empty().then(|| PathBuf::from(DEFAULT_MANIFEST));
    // One launch is one round of fetches: the process-wide bound is the run's own.
    if let Some(jobs) = std::num::NonZeroUsize::new(jobs.jobs) {
        crate::resolve::set_process_fetch_limit(jobs);
    }
    Ok(Inputs {
        jobs: jobs.jobs,
        config: Some(config_path(&config)?),
        manifest: manifest.manifest.or(default_manifest).map(|p| absolute(&p)),
        secrets: manifest.secrets,
        identity: identity.identity()?,
        caller: Caller::local(),
    })
}

/// The inputs of a command that asks a broker: no config is looked for.
fn broker_inputs(manifest: ManifestArgs, identity: &IdentityArgs, jobs: JobsArg) -> Result<Inputs, Error> {
    let default_manifest = manifest.secrets.is_empty().then(|| PathBuf::from(DEFAULT_MANIFEST));
    Ok(Inputs {
        jobs: jobs.jobs,
        config: None,
        manifest: manifest.manifest.or(default_manifest).map(|p| absolute(&p)),
        secrets: manifest.secrets,
        identity: identity.identity()?,
        caller: Caller::local(),
    })
}

/// `check --broker` (and `run --dry-run --broker`): each name's decision as the broker made
/// it for this caller; no value moves.
fn broker_check(socket: &Path, inputs: &Inputs, format: Format) -> Result<(), Error> {
    let manifest = crate::manifest::Manifest::requested(inputs.manifest.as_deref(), &inputs.secrets)?;
    let answer = crate::broker::client::check(socket, &inputs.identity, &manifest)?;
    let secrets = answer["secrets"].as_array().cloned().unwrap_or_default();
    let shown = match format {
        Format::Text => {
            let mut text = format!(
                "broker     {}\nprincipal  {}\n",
                socket.display(),
                answer["principal"].as_str().unwrap_or("?")
            );
            for secret in &secrets {
                let name = secret["name"].as_str().unwrap_or("?");
                let decision = secret["decision"].as_str().unwrap_or("?");
                let decision =
                    if decision == "allowed" { decision.to_owned() } else { decision.to_uppercase() };
                text.push_str(&format!("{name}  {decision}\n"));
            }
            text
        }
        Format::Json => format!(
            "{:#}\n",
            serde_json::json!({
                "schema": "mxm-secrets/check/1", "ok": answer["ok"], "exit_code": answer["exit_code"],
                "broker": socket, "principal": {"name": answer["principal"]}, "secrets": secrets,
            })
        ),
    };
    write_stdout(shown.as_bytes())?;
    crate::broker::client::outcome(&answer)
}

fn load_config(config: &ConfigArg) -> Result<Config, Error> {
    Ok(Config::load(&config_path(config)?)?)
}

/// The config file the command reads, absolute so that every message names it unambiguously.
fn config_path(config: &ConfigArg) -> Result<PathBuf, Error> {
    Ok(absolute(&Config::discover(config.config.as_deref())?))
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// `run --role x python feed.py`: clap says only "unexpected argument 'python'"; the likely
/// cause is a missing `--`, so the corrected line is shown.
fn missing_separator(error: &clap::Error, args: &[OsString]) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if error.kind() != ErrorKind::UnknownArgument || args.iter().any(|a| a == "--") {
        return None;
    }
    // An unknown option (`--bogus`) is a typo, not a program.
    let Some(ContextValue::String(unexpected)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    if unexpected.starts_with('-') {
        return None;
    }
    let run = args.iter().position(|a| a == "run")?;
    let at = run + args[run..].iter().position(|a| a == unexpected.as_str())?;
    let mut fixed: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    fixed[0] = "mxm-secrets".to_owned();
    fixed.insert(at, "--".to_owned());
    Some(format!("tip: the program and its arguments go after `--`: {}", fixed.join(" ")))
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
