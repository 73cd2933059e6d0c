//! The man page's own sections, which clap cannot derive: what the exit status means, which
//! variables are read, which files. Roff, as `mxm-secrets man` prints it after the options.

/// EXIT STATUS, ENVIRONMENT and FILES, in roff.
pub const SECTIONS: &str = r#".SH "EXIT STATUS"
Before the program is started, sysexits(3) codes, so that systemd can be told which not to
restart (\fBRestartPreventExitStatus=\fR). After exec the launcher is gone and the status is
the program's own.
.TP
\fB0\fR
Success (\fBcheck\fR, \fBexplain\fR, \fBlist\fR, \fBget\fR, \fBcompletions\fR, \fBman\fR).
.TP
\fB64\fR
Bad command line, or an identity that cannot be a principal.
.TP
\fB65\fR
Bad manifest or \fB\-\-secret\fR, including a name the config does not define.
.TP
\fB66\fR
A required secret does not exist in its store.
.TP
\fB69\fR
A backend is unavailable or failed.
.TP
\fB71\fR
A system call the launcher needs failed.
.TP
\fB74\fR
The value could not be written to stdout (\fBget\fR).
.TP
\fB75\fR
A backend timed out; retrying may help.
.TP
\fB77\fR
Denied by policy, or by the secret service's own access control.
.TP
\fB78\fR
Bad or unsafe configuration.
.TP
\fB126\fR, \fB127\fR
The program cannot be executed, or was not found (as env(1)).
.SH ENVIRONMENT
.TP
\fBMXM_ROLE\fR, \fBMXM_ENVIRONMENT\fR, \fBMXM_MACHINE\fR, \fBMXM_APP\fR, \fBMXM_SUBSTRATE\fR
The declared identity, when \fB\-\-role\fR, \fB\-\-environment\fR, \fB\-\-machine\fR,
\fB\-\-app\fR, \fB\-\-substrate\fR are not given. Removed from the program's environment.
.TP
\fBMXM_SECRETS_CONFIG\fR
The config file, when \fB\-\-config\fR is not given. Removed from the program's environment.
.TP
\fBXDG_CONFIG_HOME\fR, \fBHOME\fR
Where the user's config is looked for.
.TP
\fBJOURNAL_STREAM\fR
With \fB\-\-audit\-log auto\fR: set by systemd, it sends audit records to journald.
.TP
\fBNO_COLOR\fR
No colour in text output, even on a terminal.
.TP
\fBGNUPGHOME\fR, \fBPASSWORD_STORE_DIR\fR, \fBVAULT_ADDR\fR, \fBVAULT_TOKEN\fR (or \fBBAO_ADDR\fR, \fBBAO_TOKEN\fR), \fBCREDENTIALS_DIRECTORY\fR
Read by the backends (gpg, pass, gopass, vault) and by store roots that name them.
.SH FILES
.TP
\fI./mxm\-secrets.yaml\fR
The manifest: which secrets the program needs and where each goes.
.TP
\fI$XDG_CONFIG_HOME/mxm/secrets.yaml\fR, \fI~/.config/mxm/secrets.yaml\fR
The user's config.
.TP
\fI/etc/mxm/secrets.yaml\fR
The system config. A config must be owned by root or the user and not writable by group or
others.
.TP
\fI/dev/log\fR, \fI/run/systemd/journal/socket\fR
Where \fB\-\-audit\-log syslog\fR and \fB\-\-audit\-log journald\fR send records.
"#;
