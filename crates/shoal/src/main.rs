//! The `shoal` binary: parses the command line and hands it to [`run`]. Every role (agent,
//! server, client, torrent tool) is a subcommand of this one program.

mod cli;
mod client;
mod cluster;
mod credentials;
mod daemon;
mod output;
mod placements;
mod policies;
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
            match error.downcast_ref::<client::CallFailed>() {
                Some(failed) => ExitCode::from(failed.exit_code()),
                None => ExitCode::FAILURE,
            }
        }
    }
}

/// Runs one parsed command line.
fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Agent(args) => daemon::agent(args),
        cli::Command::Server(args) => match args.command {
            Some(command) => cluster::run(command),
            None => daemon::server(args.run),
        },
        cli::Command::Publish(args) => client::publish(args),
        cli::Command::Ls(args) => client::ls(args),
        cli::Command::Info(args) => client::info(args),
        cli::Command::Get(args) => client::get(args),
        cli::Command::Rm(args) => client::rm(args),
        cli::Command::Status(args) => client::status(args),
        cli::Command::Nodes(args) => client::nodes(args),
        cli::Command::Distribute(args) => placements::distribute(args),
        cli::Command::Placements(args) => placements::list(args),
        cli::Command::Placement(args) => placements::placement(args),
        cli::Command::Policies(args) => policies::list(args),
        cli::Command::Policy(args) => policies::policy(args),
        cli::Command::Token(args) => credentials::token(args),
        cli::Command::Tokens(args) => credentials::list(args),
        cli::Command::Completions(args) => {
            use clap::CommandFactory;
            let mut command = cli::Cli::command();
            clap_complete::generate(args.shell, &mut command, "shoal", &mut std::io::stdout());
            Ok(())
        }
        cli::Command::Torrent(torrent) => match torrent.command {
            cli::TorrentCommand::Create(args) => torrent::create::run(args),
            cli::TorrentCommand::Show(args) => torrent::show::run(args),
            cli::TorrentCommand::Download(args) => torrent::transfer::download(args),
            cli::TorrentCommand::Seed(args) => torrent::transfer::seed(args),
        },
    }
}
