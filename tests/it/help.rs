//! `--help` and the man page: every identity flag says what it is for and which variable
//! stands in for it; the man page has the sections man-pages(7) expects of a command.

use crate::util::Fixture;

#[test]
fn every_identity_flag_is_described_with_its_variable() {
    let f = Fixture::new();
    let flags = [
        ("--role", "The role this program runs as", "MXM_ROLE"),
        ("--environment", "The deployment environment", "MXM_ENVIRONMENT"),
        ("--machine", "The machine", "MXM_MACHINE"),
        ("--app", "The application", "MXM_APP"),
        ("--substrate", "What runs it", "MXM_SUBSTRATE"),
    ];
    for command in ["run", "get", "check", "explain", "list"] {
        let run = f.run([command, "--help"]);
        run.code(0);
        let help = run.stdout();
        for (flag, words, variable) in flags {
            // The option's entry: its line and any wrapped lines up to the next option.
            let entry: Vec<&str> = help
                .lines()
                .skip_while(|l| !l.trim_start().starts_with(flag))
                .enumerate()
                .take_while(|(i, l)| *i == 0 || !l.trim_start().starts_with('-'))
                .map(|(_, l)| l.trim())
                .collect();
            let entry = entry.join(" ");
            assert!(entry.contains(words), "{command} --help: {flag} lacks {words:?}:\n{help}");
            assert!(
                entry.contains(&format!("[env: {variable}")),
                "{command} --help: {flag} lacks {variable}:\n{help}"
            );
        }
    }
}

#[test]
fn the_man_page_has_exit_status_environment_and_files() {
    let f = Fixture::new();
    for page in [None, Some("run"), Some("get")] {
        let run = f.run(["man"].into_iter().chain(page));
        run.code(0);
        let roff = run.stdout();
        for section in [
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH OPTIONS",
            ".SH \"EXIT STATUS\"",
            ".SH ENVIRONMENT",
            ".SH FILES",
            ".SH EXAMPLES",
        ] {
            assert!(roff.contains(section), "{page:?} lacks {section}");
        }
        assert!(!roff.contains("EXTRA"), "{page:?} has an EXTRA section");
        assert!(!roff.contains("audit\\-socket"), "a hidden flag is documented");
        for words in ["\\fB78\\fR", "\\fBMXM_ROLE\\fR", "\\fBMXM_SECRETS_CONFIG\\fR", "/etc/mxm/secrets.yaml"]
        {
            assert!(roff.contains(words), "{page:?} lacks {words}");
        }
        // In man-pages(7) order.
        let at = |s: &str| roff.find(s).unwrap();
        assert!(at(".SH OPTIONS") < at(".SH \"EXIT STATUS\""));
        assert!(at(".SH \"EXIT STATUS\"") < at(".SH ENVIRONMENT"));
        assert!(at(".SH ENVIRONMENT") < at(".SH FILES"));
        assert!(at(".SH FILES") < at(".SH EXAMPLES"));
    }
}
