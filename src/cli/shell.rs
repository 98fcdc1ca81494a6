//! `kvmlab completions` and `kvmlab manpage`: what a shell and `man` need, made by
//! clap's own generators from the same definitions as `--help`; and the hidden
//! `kvmlab __complete`, which the completion scripts ask for the names of labs,
//! VMs and bridges (they change as labs come and go, so no script can hold them).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::CommandFactory;

use super::Cli;
use crate::lab::names::{self, NameKind};
use crate::state::StateRoot;

/// A shell that `kvmlab completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    /// GNU Bash.
    Bash,
    /// Z shell.
    Zsh,
    /// fish.
    Fish,
}

/// Print a shell completion script (commands, options, and lab, VM and bridge names)
///
/// Names of labs, VMs and bridges are completed from the labs that exist, for the
/// commands that take them (status, console, logs, stats, inspect, down --lab).
///
/// Example:
///
///     kvmlab completions bash > ~/.local/share/bash-completion/completions/kvmlab
///     echo 'source <(kvmlab completions zsh)' >> ~/.zshrc
///     kvmlab completions fish > ~/.config/fish/completions/kvmlab.fish
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Print kvmlab's man page (roff), every command in it
///
/// Example:
///
///     kvmlab manpage > /usr/local/share/man/man1/kvmlab.1 && man kvmlab
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct ManpageArgs {}

/// Lists names for the completion scripts, one a line.
#[derive(Debug, clap::Args)]
pub struct CompleteArgs {
    /// `labs`, `vms` or `bridges`.
    #[arg(value_name = "KIND")]
    pub kind: String,
    /// The lab (for `vms` and `bridges`).
    #[arg(value_name = "LAB")]
    pub lab: Option<String>,
    /// Where lab state lives [default: $KVMLAB_STATE_DIR or /run/kvmlab].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// Where each command's names go: the shell functions below find the command and
/// the words before the cursor and ask `kvmlab __complete` for the names that fit.
const BASH_NAMES: &str = r#"
# Lab, VM and bridge names, from the labs that exist (`kvmlab __complete`).
_kvmlab_names() {
    local cur="${COMP_WORDS[COMP_CWORD]}" sub="" i w
    local -a plain=() state=() kind=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${COMP_WORDS[i]}"
        case "$w" in
            --state-dir) state=(--state-dir "${COMP_WORDS[i+1]}"); ((i++)) ;;
            --lab|--netns|--output|-o|--ready-timeout) ((i++)) ;;
            -*) ;;
            *) plain+=("$w") ;;
        esac
    done
    sub="${plain[0]}"
    case "$sub:$((${#plain[@]} - 1))" in
        status:0|console:0|logs:0|stats:0|inspect:0) kind=(labs) ;;
        console:1|logs:1|stats:1) kind=(vms "${plain[1]}") ;;
        inspect:1) kind=(bridges "${plain[1]}") ;;
    esac
    if [[ "$sub" == down && "${COMP_WORDS[COMP_CWORD-1]}" == --lab ]]; then
        kind=(labs)
    fi
    if [[ ${#kind[@]} -gt 0 && "$cur" != -* ]]; then
        COMPREPLY=($(compgen -W "$(kvmlab __complete "${state[@]}" "${kind[@]}" 2>/dev/null)" -- "$cur"))
        return 0
    fi
    _kvmlab "$@"
}
complete -F _kvmlab_names -o bashdefault -o default kvmlab
"#;

const ZSH_NAMES: &str = r#"
# Lab, VM and bridge names, from the labs that exist (`kvmlab __complete`).
_kvmlab_names() {
    local sub="" i w
    local -a plain state kind names
    for ((i = 2; i < CURRENT; i++)); do
        w=${words[i]}
        case $w in
            --state-dir) state=(--state-dir ${words[i+1]}); ((i++)) ;;
            --lab|--netns|--output|-o|--ready-timeout) ((i++)) ;;
            -*) ;;
            *) plain+=($w) ;;
        esac
    done
    sub=${plain[1]}
    case "$sub:$((${#plain} - 1))" in
        status:0|console:0|logs:0|stats:0|inspect:0) kind=(labs) ;;
        console:1|logs:1|stats:1) kind=(vms ${plain[2]}) ;;
        inspect:1) kind=(bridges ${plain[2]}) ;;
    esac
    [[ $sub == down && ${words[CURRENT-1]} == --lab ]] && kind=(labs)
    if (( ${#kind} )) && [[ ${words[CURRENT]} != -* ]]; then
        names=(${(f)"$(kvmlab __complete $state $kind 2>/dev/null)"})
        names=(${names:#})
        compadd -a names
        return
    fi
    _kvmlab "$@"
}
compdef _kvmlab_names kvmlab
"#;

const FISH_NAMES: &str = r#"
# Lab, VM and bridge names, from the labs that exist (`kvmlab __complete`); fails
# (so the line below stays out of the way) where the command takes no name.
function __kvmlab_names
    set -l words (commandline -opc)
    set -l state
    set -l plain
    set -l i 2
    while test $i -le (count $words)
        switch $words[$i]
            case --state-dir
                set i (math $i + 1)
                set state --state-dir $words[$i]
            case --lab --netns --output -o --ready-timeout
                set i (math $i + 1)
            case '-*'
            case '*'
                set plain $plain $words[$i]
        end
        set i (math $i + 1)
    end
    set -l kind
    switch "$plain[1]:"(math (count $plain) - 1)
        case status:0 console:0 logs:0 stats:0 inspect:0
            set kind labs
        case console:1 logs:1 stats:1
            set kind vms $plain[2]
        case inspect:1
            set kind bridges $plain[2]
    end
    if test "$plain[1]" = down; and test "$words[-1]" = --lab
        set kind labs
    end
    test (count $kind) -gt 0; or return 1
    kvmlab __complete $state $kind 2>/dev/null
end
complete -c kvmlab -n '__kvmlab_names >/dev/null' -f -a '(__kvmlab_names)'
# fish completes an option's value from that option's own lines only.
complete -c kvmlab -n '__fish_kvmlab_using_subcommand down' -l lab -r -f -a '(__kvmlab_names)'
"#;

/// Runs `kvmlab completions`.
pub fn run_completions(args: &CompletionsArgs) -> ExitCode {
    let mut command = Cli::command();
    let (shell, names) = match args.shell {
        Shell::Bash => (clap_complete::Shell::Bash, BASH_NAMES),
        Shell::Zsh => (clap_complete::Shell::Zsh, ZSH_NAMES),
        Shell::Fish => (clap_complete::Shell::Fish, FISH_NAMES),
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "kvmlab", &mut script);
    script.extend_from_slice(names.as_bytes());
    let _ = std::io::stdout().write_all(&script);
    ExitCode::SUCCESS
}

/// Runs `kvmlab manpage`: the page of `kvmlab`, then a section per command (its
/// synopsis, description and options as subsections), as one page.
pub fn run_manpage(_args: &ManpageArgs) -> ExitCode {
    let command = Cli::command();
    let mut page = Vec::new();
    let rendered = clap_mangen::Man::new(command.clone()).render(&mut page);
    let mut commands = Vec::new();
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("kvmlab {}", sub.get_name());
        let man = clap_mangen::Man::new(sub.clone().bin_name(name.clone()));
        let mut section = Vec::new();
        let rendered = man
            .render_synopsis_section(&mut section)
            .and_then(|()| man.render_description_section(&mut section))
            .and_then(|()| man.render_options_section(&mut section))
            .and_then(|()| {
                if sub.has_subcommands() {
                    man.render_subcommands_section(&mut section)
                } else {
                    Ok(())
                }
            });
        if let Err(e) = rendered {
            eprintln!("kvmlab: rendering the man page: {e}");
            return ExitCode::FAILURE;
        }
        // The command's own sections become subsections of its section.
        commands.push(format!(".SH \"{}\"", name.to_uppercase()));
        let text = String::from_utf8_lossy(&section).into_owned();
        commands.extend(text.lines().map(|line| match line.strip_prefix(".SH ") {
            Some(title) => format!(".SS {title}"),
            None => line.to_string(),
        }));
    }
    if let Err(e) = rendered {
        eprintln!("kvmlab: rendering the man page: {e}");
        return ExitCode::FAILURE;
    }
    page.extend_from_slice(commands.join("\n").as_bytes());
    page.push(b'\n');
    let _ = std::io::stdout().write_all(&page);
    ExitCode::SUCCESS
}

/// Runs `kvmlab __complete`.
pub fn run_complete(args: &CompleteArgs) -> ExitCode {
    let kind = match args.kind.as_str() {
        "labs" => NameKind::Labs,
        "vms" => NameKind::Vms,
        "bridges" => NameKind::Bridges,
        _ => return ExitCode::FAILURE,
    };
    let root = StateRoot::resolve(args.state_dir.as_deref());
    let mut out = std::io::stdout();
    for name in names::complete(&root, kind, args.lab.as_deref()) {
        let _ = writeln!(out, "{name}");
    }
    ExitCode::SUCCESS
}
