//! Hidden `netdrop docs DIR`: shell completions and man pages generated from the very
//! command-line definition the binary parses, so they cannot drift from it. `cargo xtask
//! docs` calls it.

use std::{fs, path::Path};

use clap::CommandFactory as _;
use clap_complete::Shell;

use crate::{cli::Cli, error::Error};

/// Writes `netdrop.bash`, `_netdrop` (zsh), `netdrop.fish`, `netdrop.1` and one
/// `netdrop-SUBCOMMAND.1` per visible subcommand into `dir`, creating it.
pub fn run(dir: &Path) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let mut cmd = Cli::command();
    let mut visible = without_hidden_subcommands(&cmd);
    cmd.build();
    for (shell, file) in [
        (Shell::Bash, "netdrop.bash"),
        (Shell::Zsh, "_netdrop"),
        (Shell::Fish, "netdrop.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut visible, "netdrop", &mut buf);
        write(&dir.join(file), &buf)?;
    }
    write_man(dir, "netdrop", cmd.clone())?;
    // `help` has its page as `netdrop help`; a page of its own would say nothing more.
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("netdrop-{}", sub.get_name());
        let page = sub
            .clone()
            .display_name(&name)
            .bin_name(format!("netdrop {}", sub.get_name()));
        write_man(dir, &name, page)?;
    }
    println!("wrote completions and man pages to {}", dir.display());
    Ok(())
}

/// `cmd` without its hidden subcommands (bench-pipeline, docs), which clap_complete would
/// otherwise offer; clap_mangen leaves them out by itself.
fn without_hidden_subcommands(cmd: &clap::Command) -> clap::Command {
    let mut visible = clap::Command::new("netdrop")
        .version(env!("CARGO_PKG_VERSION"))
        .args(cmd.get_arguments().cloned())
        .subcommand_required(true);
    if let Some(about) = cmd.get_about() {
        visible = visible.about(about.clone());
    }
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        visible = visible.subcommand(sub.clone());
    }
    visible
}

/// Renders the man page of `cmd` to `dir/NAME.1`.
fn write_man(dir: &Path, name: &str, cmd: clap::Command) -> Result<(), Error> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd)
        .title(name)
        .render(&mut buf)
        .map_err(Error::io(format!("rendering the man page {name}.1")))?;
    write(&dir.join(format!("{name}.1")), &buf)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    fs::write(path, bytes).map_err(Error::io(format!("writing {}", path.display())))
}
