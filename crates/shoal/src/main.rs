//! The `shoal` binary: parses the command line and hands it to [`run`]. Every role (agent,
//! server, client, torrent tool) is a subcommand of this one program.

mod cli;
mod output;
mod torrent;
mod units;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    output::init_logging();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            output::report_error(&error);
            ExitCode::FAILURE
        }
    }
}

/// Runs one parsed command line.
fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Torrent(torrent) => match torrent.command {
            cli::TorrentCommand::Create(args) => torrent::create::run(args),
            cli::TorrentCommand::Show(args) => torrent::show::run(args),
            cli::TorrentCommand::Download(args) => torrent::transfer::download(args),
            cli::TorrentCommand::Seed(args) => torrent::transfer::seed(args),
        },
    }
}
