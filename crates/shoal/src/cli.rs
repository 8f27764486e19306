//! The command-line grammar: every subcommand, flag and default, with the help text people
//! read at 3 a.m.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::units::{parse_duration, parse_size};

/// Shoal distributes large artifacts to many hosts over BitTorrent, verified end to end.
#[derive(Debug, Parser)]
#[command(
    name = "shoal",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent (daemon): store, verify, download and seed artifacts; serve the local API.
    /// Without --control-plane it also runs the control plane in-process.
    Agent(AgentArgs),
    /// Run a standalone control plane: the catalog, the tracker, the node registry.
    Server(ServerArgs),
    /// Publish a file or directory as NAME:TAG (the agent hashes it, seeds it, and binds the tag).
    #[command(after_help = EXIT_CODES)]
    Publish(PublishArgs),
    /// List the catalog (names starting with PREFIX).
    #[command(after_help = EXIT_CODES)]
    Ls(LsArgs),
    /// Describe an artifact; --torrent writes its .torrent for standard clients.
    #[command(after_help = EXIT_CODES)]
    Info(InfoArgs),
    /// Fetch an artifact through the local agent to DEST, with every byte verified.
    #[command(after_help = EXIT_CODES)]
    Get(GetArgs),
    /// Delete the local agent's copy of an artifact (it stops seeding it).
    #[command(after_help = EXIT_CODES)]
    Rm(RmArgs),
    /// What the local agent holds and does.
    #[command(after_help = EXIT_CODES)]
    Status(StatusArgs),
    /// The agents registered with the control plane.
    #[command(after_help = EXIT_CODES)]
    Nodes(NodesArgs),
    /// Place an artifact on every node a label selector matches, now and as nodes join; agents
    /// fetch it on their own. `shoal placement watch NAME` follows it.
    #[command(after_help = SELECTORS)]
    Distribute(DistributeArgs),
    /// List the placements with their progress.
    #[command(after_help = EXIT_CODES)]
    Placements(PlacementsArgs),
    /// Show, follow or remove one placement.
    Placement(PlacementArgs),
    /// List the policies: central rules (rate caps, leech-only, peers, retention, quota) for
    /// the nodes a label selector matches.
    #[command(after_help = EXIT_CODES)]
    Policies(PoliciesArgs),
    /// Set or remove a policy, or see the rules a node is under.
    Policy(PolicyArgs),
    /// Issue or revoke a credential: a bearer token with a role, for callers of the control
    /// plane that are not on its loopback (admins only).
    #[command(after_help = ROLES)]
    Token(TokenArgs),
    /// List the control plane's credentials, valid and revoked; never their tokens (admins
    /// only).
    #[command(after_help = ROLES)]
    Tokens(TokensArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Create and inspect .torrent files and magnet links (no daemon needed).
    Torrent(TorrentArgs),
}

/// `shoal torrent ...`
#[derive(Debug, Args)]
pub struct TorrentArgs {
    /// What to do with torrents.
    #[command(subcommand)]
    pub command: TorrentCommand,
}

/// `shoal torrent` subcommands.
#[derive(Debug, Subcommand)]
pub enum TorrentCommand {
    /// Create a .torrent from a file or directory (hybrid v1+v2 by default).
    #[command(after_help = CREATE_AFTER_HELP)]
    Create(CreateArgs),
    /// Print what a .torrent file or magnet link describes.
    Show(ShowArgs),
    /// Download a torrent's files, verifying every piece; exit 0 only when all bytes are verified.
    #[command(after_help = DOWNLOAD_AFTER_HELP)]
    Download(DownloadArgs),
    /// Serve files you already have to peers (every piece is hash-checked first).
    Seed(SeedArgs),
}

const DOWNLOAD_AFTER_HELP: &str = "\
The download is staged in DIR/.shoal-staging/<info-hash>/ and moved into DIR only when every
piece is verified, so DIR never holds partial or unverified files. Interrupted downloads
(Ctrl-C, crash, full disk) resume where they stopped when run again with the same -o DIR.

Examples:
  shoal torrent download build.torrent -o /srv/builds --peer 10.0.0.5:6881
  shoal torrent download build.torrent -o /srv/builds --peer seed:6881 --seed-for 10m --listen 6881";

/// `shoal torrent download`
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// The .torrent file, or a magnet link (quoted: it contains '&'); a magnet link's metadata
    /// is fetched from peers (BEP 9) and checked against its info-hash first.
    pub torrent: String,
    /// The directory to download into.
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
    /// A peer to connect to, HOST:PORT; repeat for more.
    #[arg(long = "peer", value_name = "HOST:PORT")]
    pub peers: Vec<String>,
    /// A web seed (BEP 19) to download from too, besides those the torrent names: an http://
    /// URL of the file (single-file torrents) or of the directory holding the torrent's
    /// directory. Repeat for more.
    #[arg(long = "web-seed", value_name = "URL")]
    pub web_seeds: Vec<String>,
    /// Keep seeding this long after the download completes (e.g. 30s, 10m, 2h).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub seed_for: Option<std::time::Duration>,
    /// Accept peers on this TCP port (or ADDR:PORT) too (default: outbound connections only).
    #[arg(long, value_name = "[ADDR:]PORT", value_parser = parse_listen)]
    pub listen: Option<std::net::SocketAddr>,
    /// Print the final summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `shoal torrent seed`
#[derive(Debug, Args)]
pub struct SeedArgs {
    /// The .torrent file.
    pub torrent: PathBuf,
    /// The data: the file of a single-file torrent, or the directory holding the torrent's files.
    #[arg(long, value_name = "PATH")]
    pub data: PathBuf,
    /// The TCP port (or ADDR:PORT) to accept peers on.
    #[arg(long, value_name = "[ADDR:]PORT", default_value = "6881", value_parser = parse_listen)]
    pub listen: std::net::SocketAddr,
    /// A peer to connect to, HOST:PORT; repeat for more.
    #[arg(long = "peer", value_name = "HOST:PORT")]
    pub peers: Vec<String>,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub seed_for: Option<std::time::Duration>,
    /// Super-seed (BEP 16): tell each peer of one piece at a time, so that this seed sends each
    /// piece about once and the peers trade the rest. For a lone origin seed with many
    /// downloaders at once; slower for a single downloader.
    #[arg(long)]
    pub super_seed: bool,
    /// The most peers connected at once. When full, a peer that connects to us takes the place
    /// of one picked at random, so that peers who come late still reach this seed.
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_peers: u16,
}

const CREATE_AFTER_HELP: &str = "\
Piece length: by default the smallest power of two from 16 KiB to 16 MiB that keeps the torrent
at or under 4096 pieces (64 MiB -> 16 KiB, 1 GiB -> 256 KiB, 16 GiB -> 4 MiB, >= 64 GiB -> 16 MiB).
v2 and hybrid torrents need a power of two of at least 16 KiB.

Files are sorted by path and hashed on every core. Symbolic links are followed; sockets, FIFOs
and devices are refused. Executable files are marked with the BEP 47 'x' attribute.

Examples:
  shoal torrent create ./build -o build.torrent --tracker http://tracker:6969/announce
  shoal torrent create image.iso -o image.torrent --v1 --piece-length 1MiB";

/// `shoal torrent create`
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The file or directory to share.
    pub path: PathBuf,
    /// Where to write the .torrent file (refuses to overwrite unless --force).
    #[arg(short, long, value_name = "FILE.torrent")]
    pub output: PathBuf,
    /// Write v1 metadata only (SHA-1 pieces; for old clients).
    #[arg(long, group = "meta_version")]
    pub v1: bool,
    /// Write v2 metadata only (SHA-256 Merkle trees; BEP 52 clients only).
    #[arg(long, group = "meta_version")]
    pub v2: bool,
    /// Write both v1 and v2 metadata (the default: every client can join).
    #[arg(long, group = "meta_version")]
    pub hybrid: bool,
    /// Piece length, in bytes or with a unit (16KiB, 4MiB). Default: see below.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub piece_length: Option<u64>,
    /// A tracker announce URL; repeat for more tiers, or separate URLs of one tier with commas.
    #[arg(long = "tracker", short = 't', value_name = "URL")]
    pub trackers: Vec<String>,
    /// A web seed URL (BEP 19); repeat for more.
    #[arg(long = "web-seed", short = 'w', value_name = "URL")]
    pub web_seeds: Vec<String>,
    /// Mark the torrent private (BEP 27): peers come from its trackers only.
    #[arg(long)]
    pub private: bool,
    /// The torrent's name (default: the file or directory name).
    #[arg(long)]
    pub name: Option<String>,
    /// A comment stored in the torrent.
    #[arg(long)]
    pub comment: Option<String>,
    /// Leave out the creation date, so the same input always gives the same file.
    #[arg(long)]
    pub no_date: bool,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    pub force: bool,
    /// Hashing threads (default: one per core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Print the result as JSON (the same document as `shoal torrent show --json`).
    #[arg(long)]
    pub json: bool,
}

/// `shoal torrent show`
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A .torrent file, or a magnet link (quote it: it contains '&').
    pub torrent: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Parses `--listen`: a port (all interfaces) or an `ADDR:PORT`.
fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([0, 0, 0, 0], port)));
    }
    s.parse()
        .map_err(|_| format!("{s:?} is neither a port nor ADDR:PORT"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_grammar_is_consistent() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn server_members_and_raft_timings_parse_or_say_what_is_wrong() {
        assert_eq!(
            super::parse_member("2=10.0.0.2:7421"),
            Ok((2, "10.0.0.2:7421".into()))
        );
        assert!(
            super::parse_member("x=10.0.0.2:7421")
                .unwrap_err()
                .contains("node id")
        );
        assert!(
            super::parse_member("2=10.0.0.2")
                .unwrap_err()
                .contains("HOST:PORT")
        );
        assert_eq!(super::parse_millis_range("400-800"), Ok((400, 800)));
        assert_eq!(super::parse_millis_range(" 1000 - 2000 "), Ok((1000, 2000)));
        assert!(
            super::parse_millis_range("800-400")
                .unwrap_err()
                .contains("below")
        );
        assert!(
            super::parse_millis_range("800")
                .unwrap_err()
                .contains("MIN-MAX")
        );
        assert!(
            super::parse_millis_range("a-9")
                .unwrap_err()
                .contains("milliseconds")
        );
    }

    #[test]
    fn control_plane_takes_a_comma_separated_list_or_repeats() {
        use clap::Parser;
        let cli = super::Cli::try_parse_from([
            "shoal",
            "agent",
            "--control-plane",
            "http://10.0.0.1:7421,http://10.0.0.2:7421",
            "--control-plane",
            "http://10.0.0.3:7421",
        ]);
        let Ok(super::Cli {
            command: super::Command::Agent(args),
            ..
        }) = cli
        else {
            panic!("shoal agent --control-plane does not parse: {cli:?}");
        };
        assert_eq!(
            args.control_plane,
            [
                "http://10.0.0.1:7421",
                "http://10.0.0.2:7421",
                "http://10.0.0.3:7421"
            ]
        );
    }
}

/// `shoal agent`
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The TOML configuration file (every key optional; flags and SHOAL_* variables override it).
    #[arg(long, short, env = "SHOAL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where artifacts, downloads in progress and the embedded catalog live [default: /var/lib/shoal].
    #[arg(long, env = "SHOAL_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// This node's id [default: the host name].
    #[arg(long, env = "SHOAL_NODE_ID")]
    pub node_id: Option<String>,
    /// A label, KEY=VALUE (region, zone, rack, or your own); repeat for more.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// The local API (gRPC and REST) [default: 127.0.0.1:7420].
    #[arg(long, env = "SHOAL_API_LISTEN", value_name = "ADDR")]
    pub api_listen: Option<std::net::SocketAddr>,
    /// The BitTorrent listener [default: 0.0.0.0:6881].
    #[arg(long, env = "SHOAL_PEER_LISTEN", value_name = "ADDR")]
    pub peer_listen: Option<std::net::SocketAddr>,
    /// The address other hosts reach this one at [default: the one used to reach the control plane].
    #[arg(long, env = "SHOAL_ADVERTISE_IP", value_name = "IP")]
    pub advertise_ip: Option<std::net::IpAddr>,
    /// The control plane's API, e.g. http://10.0.0.1:7421; for a cluster every server node,
    /// comma-separated or the flag repeated (the agent fails over between them); without it
    /// this agent runs one in-process.
    #[arg(
        long,
        env = "SHOAL_CONTROL_PLANE",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub control_plane: Vec<String>,
    /// A directory publish may read and retrieve may write; repeat for more [default: anywhere].
    #[arg(long = "allowed-root", value_name = "DIR")]
    pub allowed_roots: Vec<PathBuf>,
    /// The embedded control plane's API [default: 0.0.0.0:7421].
    #[arg(long, env = "SHOAL_SERVER_API_LISTEN", value_name = "ADDR")]
    pub server_api_listen: Option<std::net::SocketAddr>,
    /// The embedded tracker [default: 0.0.0.0:6969].
    #[arg(long, env = "SHOAL_TRACKER_LISTEN", value_name = "ADDR")]
    pub tracker_listen: Option<std::net::SocketAddr>,
    /// A file holding this agent's token for --control-plane (an agent-role credential:
    /// `shoal token issue --role agent NAME`).
    #[arg(long, env = "SHOAL_SERVER_TOKEN_FILE", value_name = "FILE")]
    pub server_token_file: Option<PathBuf>,
    /// The embedded control plane requires a credential from loopback callers too.
    #[arg(long)]
    pub no_trust_loopback: bool,
}

/// `shoal server`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, after_help = SERVER_HELP)]
pub struct ServerArgs {
    /// Manage the control plane instead of running a server node.
    #[command(subcommand)]
    pub command: Option<ServerCommand>,
    /// How to run this server node.
    #[command(flatten)]
    pub run: ServerRunArgs,
}

/// How `shoal server --help` explains clusters.
const SERVER_HELP: &str = "\
A control plane runs on one node, or on 3 or 5 (Raft: a majority must be up). To start a cluster,
run the same command on every server node with its own --node-id, e.g. on 10.0.0.1:
  shoal server --node-id 1 --cluster-secret-file /etc/shoal/cluster.secret \\
    --api-listen 10.0.0.1:7421 --announce-url http://10.0.0.1:6969/announce \\
    --announce-urls http://10.0.0.1:6969/announce,http://10.0.0.2:6969/announce,http://10.0.0.3:6969/announce \\
    --initial-members 1=10.0.0.1:7421,2=10.0.0.2:7421,3=10.0.0.3:7421
Then: `shoal server status`, `shoal server join ID HOST:PORT`, `shoal server leave ID`,
`shoal server backup FILE`, `shoal server restore FILE`.";

/// `shoal server <command>`
#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// This server node's view of the cluster: members, leader, term, commit and applied
    /// index, each member's lag.
    Status(ServerClient),
    /// Add a server node (started with its --node-id and the cluster secret, without
    /// --initial-members) to the cluster: it catches up as a learner, then votes.
    Join(JoinArgs),
    /// Remove a server node from the cluster for good (its id is never used again).
    Leave(LeaveArgs),
    /// Write the whole replicated state (catalog, nodes, placements, policies, credentials)
    /// to FILE, read linearizably.
    Backup(BackupArgs),
    /// Replay a backup into this control plane (tags already bound keep their content).
    Restore(BackupArgs),
}

/// Where a `shoal server` subcommand finds the control plane.
#[derive(Debug, Args)]
pub struct ServerClient {
    /// The control plane (any server node).
    #[command(flatten)]
    pub server: ServerUrl,
    /// Client options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `shoal server join`
#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The new server node's id.
    pub id: u64,
    /// Its API address, HOST:PORT, as the other server nodes reach it.
    pub address: String,
    /// Where and how to call.
    #[command(flatten)]
    pub to: ServerClient,
}

/// `shoal server leave`
#[derive(Debug, Args)]
pub struct LeaveArgs {
    /// The server node's id.
    pub id: u64,
    /// Where and how to call.
    #[command(flatten)]
    pub to: ServerClient,
}

/// `shoal server backup` and `restore`
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The backup file.
    pub file: PathBuf,
    /// Where and how to call.
    #[command(flatten)]
    pub to: ServerClient,
}

/// How `shoal server` runs a server node.
#[derive(Debug, Args)]
pub struct ServerRunArgs {
    /// Where the catalog lives.
    #[arg(
        long,
        env = "SHOAL_DATA_DIR",
        value_name = "DIR",
        default_value = "/var/lib/shoal-server"
    )]
    pub data_dir: PathBuf,
    /// The API (gRPC and REST).
    #[arg(
        long,
        env = "SHOAL_SERVER_API_LISTEN",
        value_name = "ADDR",
        default_value = "0.0.0.0:7421"
    )]
    pub api_listen: std::net::SocketAddr,
    /// The HTTP tracker.
    #[arg(
        long,
        env = "SHOAL_TRACKER_LISTEN",
        value_name = "ADDR",
        default_value = "0.0.0.0:6969"
    )]
    pub tracker_listen: std::net::SocketAddr,
    /// This server node's tracker announce URL, as agents and clients reach it, e.g.
    /// http://10.0.0.1:6969/announce (required to run a server node).
    #[arg(long, env = "SHOAL_ANNOUNCE_URL", value_name = "URL")]
    pub announce_url: Option<String>,
    /// Require a credential from callers on loopback too (by default a loopback caller without
    /// a token is an admin). Use it when other users share this host.
    #[arg(long)]
    pub no_trust_loopback: bool,
    /// Every tracker of the control plane, comma-separated, in the same order on every server
    /// node (this node's among them); put in torrents as one BEP 12 tier each, so agents and
    /// standard clients fail over when a server node is down. Default: just --announce-url.
    #[arg(
        long,
        env = "SHOAL_ANNOUNCE_URLS",
        value_name = "URL,...",
        value_delimiter = ','
    )]
    pub announce_urls: Vec<String>,
    /// Seconds between a client's regular announces to this tracker. Shorter: a client finds
    /// peers again sooner after a server node fails (it re-announces to the next tier), for
    /// more announce traffic.
    #[arg(
        long,
        env = "SHOAL_ANNOUNCE_INTERVAL",
        value_name = "SECONDS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u32).range(5..=3600)
    )]
    pub announce_interval: u32,
    /// Run as member NODE_ID of a replicated control plane (3 or 5 server nodes, Raft). Ids
    /// are chosen by the operator, unique, and never reused. Without it the control plane
    /// runs on this node alone.
    #[arg(
        long,
        env = "SHOAL_NODE_ID",
        value_name = "NODE_ID",
        requires = "cluster_secret_file"
    )]
    pub node_id: Option<u64>,
    /// The file holding the secret every server node of the cluster shares (printable ASCII,
    /// one line); members present it to each other. Keep it mode 0600.
    #[arg(long, env = "SHOAL_CLUSTER_SECRET_FILE", value_name = "FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// The host:port the other server nodes reach this one's API at (replication uses the API
    /// port). Default: --api-listen, when it names an address.
    #[arg(long, env = "SHOAL_ADVERTISE", value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// The voters of a new cluster, ID=HOST:PORT comma-separated, the same on every node's
    /// command line: the node with the smallest id initializes the cluster once every member
    /// answers, and writes the bootstrap admin token to its data directory. Ignored once the
    /// cluster exists. Omit it on a node that will be added with `shoal server join`.
    #[arg(
        long,
        env = "SHOAL_INITIAL_MEMBERS",
        value_name = "ID=HOST:PORT,...",
        value_delimiter = ',',
        value_parser = parse_member,
        requires = "node_id"
    )]
    pub initial_members: Vec<(u64, String)>,
    /// Milliseconds between the Raft leader's heartbeats to the other server nodes. It is also
    /// the time one replication message may take: raise it (and --raft-election-timeout) when
    /// server nodes are joined by slow links, so that the largest catalog entry (an artifact
    /// record: about 52 bytes per piece) crosses within it.
    #[arg(
        long,
        env = "SHOAL_RAFT_HEARTBEAT_MS",
        value_name = "MS",
        default_value_t = 100,
        value_parser = clap::value_parser!(u64).range(10..=60_000)
    )]
    pub raft_heartbeat: u64,
    /// A server node that hears nothing from the leader for a random MIN to MAX milliseconds
    /// starts an election. MIN must be at least 3 heartbeats. Lower: a dead leader is replaced
    /// sooner; too low: needless elections when a host is briefly starved.
    #[arg(
        long,
        env = "SHOAL_RAFT_ELECTION_TIMEOUT_MS",
        value_name = "MIN-MAX",
        default_value = "400-800",
        value_parser = parse_millis_range
    )]
    pub raft_election_timeout: (u64, u64),
}

/// `MIN-MAX`, milliseconds, MIN < MAX.
fn parse_millis_range(s: &str) -> Result<(u64, u64), String> {
    let (min, max) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?} is not MIN-MAX (milliseconds)"))?;
    let parse = |v: &str| {
        v.trim()
            .parse::<u64>()
            .map_err(|_| format!("{v:?} is not a number of milliseconds"))
    };
    let (min, max) = (parse(min)?, parse(max)?);
    if min >= max {
        return Err(format!("MIN ({min}) must be below MAX ({max})"));
    }
    Ok((min, max))
}

/// `ID=HOST:PORT`.
fn parse_member(s: &str) -> Result<(u64, String), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not ID=HOST:PORT"))?;
    let id = id
        .trim()
        .parse()
        .map_err(|_| format!("{id:?} is not a node id (a number)"))?;
    let addr = addr.trim();
    if addr
        .rsplit_once(':')
        .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
    {
        return Err(format!("{addr:?} is not HOST:PORT"));
    }
    Ok((id, addr.to_owned()))
}

/// Where client commands find the agent and the control plane, and how they print.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The local agent's API.
    #[arg(
        long,
        global = true,
        env = "SHOAL_AGENT",
        value_name = "URL",
        default_value = "http://127.0.0.1:7420"
    )]
    pub agent: String,
    /// Print JSON (the API's proto3 JSON) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// A bearer token (`shoal_...`) to present to the control plane and the agent; the agent
    /// passes it on when it publishes. Prefer --token-file: arguments are visible to other
    /// users of this host.
    #[arg(
        long,
        global = true,
        env = "SHOAL_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// A file holding the bearer token (e.g. the control plane's DATA_DIR/admin.token);
    /// --token wins when both are given.
    #[arg(long, global = true, env = "SHOAL_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Seconds to wait for the control plane to answer one call before giving up on that
    /// server node (a stalled or partitioned node accepts connections and never answers).
    #[arg(
        long,
        global = true,
        env = "SHOAL_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    pub timeout: u64,
}

impl ClientArgs {
    /// The bearer token to present: --token, else the content of --token-file, else none.
    ///
    /// # Errors
    /// When the token file cannot be read.
    pub fn token(&self) -> anyhow::Result<Option<String>> {
        use anyhow::Context as _;
        if let Some(token) = &self.token {
            return Ok(Some(token.trim().to_owned()));
        }
        self.token_file
            .as_ref()
            .map(|path| {
                std::fs::read_to_string(path)
                    .map(|t| t.trim().to_owned())
                    .with_context(|| format!("cannot read the token file {}", path.display()))
            })
            .transpose()
    }
}

/// `shoal publish`
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The file or directory to publish (on the agent's host).
    pub path: PathBuf,
    /// The name and tag, e.g. app/build:1234. Tags are immutable.
    #[arg(long, short, value_name = "NAME:TAG")]
    pub name: String,
    /// Bytes per piece (e.g. 4MiB) [default: chosen from the size].
    #[arg(long, value_parser = parse_size)]
    pub piece_length: Option<u64>,
    /// Client options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `shoal ls`
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only names starting with this.
    #[arg(default_value = "")]
    pub prefix: String,
    /// Client options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `shoal info`
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// NAME:TAG, a content id (or a prefix of 12+ hex digits), a magnet link, a .torrent path, or
    /// an http(s) URL of a .torrent (fetched by the agent, which checks https certificates
    /// against its CA store).
    pub reference: String,
    /// Also write the artifact's .torrent file here (for standard BitTorrent clients).
    #[arg(long, value_name = "FILE")]
    pub torrent: Option<PathBuf>,
    /// Client options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `shoal get`
#[derive(Debug, Args)]
pub struct GetArgs {
    /// NAME:TAG, a content id (or a prefix of 12+ hex digits), a magnet link, a .torrent path, or
    /// an http(s) URL of a .torrent (fetched by the agent, which checks https certificates
    /// against its CA store).
    pub reference: String,
    /// Where to put it: the file (single-file artifacts) or directory.
    #[arg(long, short, value_name = "DEST")]
    pub output: PathBuf,
    /// Replace what is at DEST.
    #[arg(long)]
    pub overwrite: bool,
    /// Client options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `shoal rm`
#[derive(Debug, Args)]
pub struct RmArgs {
    /// NAME:TAG or content id of the artifact whose local copy to delete.
    pub reference: String,
    /// Client options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `shoal status`
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Client options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `shoal nodes`
#[derive(Debug, Args)]
pub struct NodesArgs {
    /// The control plane.
    #[command(flatten)]
    pub server: ServerUrl,
    /// Client options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// How `--to` selects nodes.
const SELECTORS: &str = "\
Selectors (all requirements must hold; labels come from each agent's --label):
  role=web,region=eu       both labels have these values
  role!=db                 role is not db (or the node has no role)
  rack in (r1,r2)          rack is r1 or r2;  `rack notin (r1,r2)` for neither
  gpu                      the node has a gpu label;  `!metered` for nodes without one
  \"\"                       every node

Exit codes: 0 placed; 1 error; 3 no such artifact; 4 the name holds another placement;
5 the control plane cannot be reached.";

/// `shoal distribute`
#[derive(Debug, Args)]
pub struct DistributeArgs {
    /// The artifact: NAME:TAG or a content id (or a unique prefix of one).
    #[arg(value_name = "REF")]
    pub reference: String,
    /// Which nodes get it: a label selector (see below).
    #[arg(long, value_name = "SELECTOR")]
    pub to: String,
    /// The placement's name (default: derived from REF and SELECTOR).
    #[arg(long)]
    pub name: Option<String>,
    /// When the placement ends: a duration from now (8h, 7d) or a UTC time
    /// (2026-12-01T18:00:00Z). Default: never.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Keep the placement for this long from now (8h, 7d): the same as --until DURATION.
    #[arg(long, value_name = "DURATION", conflicts_with = "until", value_parser = crate::units::parse_duration)]
    pub retain: Option<std::time::Duration>,
    /// Follow it with a progress bar until every node has it.
    #[arg(long)]
    pub watch: bool,
    /// The control plane.
    #[command(flatten)]
    pub server: ServerUrl,
    /// Client options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `shoal placements`
#[derive(Debug, Args)]
pub struct PlacementsArgs {
    /// The control plane.
    #[command(flatten)]
    pub server: ServerUrl,
    /// Client options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `shoal placement ...`
#[derive(Debug, Args)]
pub struct PlacementArgs {
    /// What to do with the placement.
    #[command(subcommand)]
    pub command: PlacementCommand,
    /// The control plane.
    #[command(flatten)]
    pub server: ServerUrl,
}

/// `shoal placement` subcommands.
#[derive(Debug, Subcommand)]
pub enum PlacementCommand {
    /// Its totals and every node's state (pending, downloading with percent, done, failed
    /// with the reason).
    #[command(after_help = EXIT_CODES)]
    Show(PlacementNameArgs),
    /// A live progress bar: nodes done of total, bytes, rate, ETA; exits when every node is
    /// done.
    #[command(after_help = EXIT_CODES)]
    Watch(PlacementNameArgs),
    /// End it: nodes are no longer assigned the artifact by it (they keep what they have).
    #[command(after_help = EXIT_CODES)]
    Rm(PlacementNameArgs),
}

/// `shoal policies`
#[derive(Debug, Args)]
pub struct PoliciesArgs {
    /// The control plane.
    #[command(flatten)]
    pub server: ServerUrl,
    /// Client options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `shoal policy ...`
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: PolicyCommand,
    /// The control plane.
    #[command(flatten)]
    pub server: ServerUrl,
}

/// How policies combine, for `shoal policy set --help`.
const POLICY_HELP: &str = "\
With no policy a node shares without limits (no tit-for-tat). Where several policies match a
node, each rule takes the strictest value any of them sets. Agents apply a change at once, to
transfers already running. Setting a policy of an existing name replaces it.

Examples:
  shoal policy set metered --to metered=true --leech-only
  shoal policy set eu-wan --to region=eu --upload-rate 20MiB/s --download-rate 50MiB/s
  shoal policy set small-disks --to disk=small --quota 50GiB --retain-after 1h

Exit codes: 0 set; 1 error; 2 bad usage (or a rule that makes no sense, like --quota 0);
5 the control plane cannot be reached; 6 the credential may not change policies.";

/// `shoal policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Create or replace a policy.
    #[command(after_help = POLICY_HELP)]
    Set(PolicySetArgs),
    /// Remove a policy; its nodes go back to what the other policies say.
    #[command(after_help = EXIT_CODES)]
    Rm(PolicyNameArgs),
    /// The rules one node is under now, and the policies they come from.
    #[command(after_help = EXIT_CODES)]
    Node(PolicyNodeArgs),
}

/// `shoal policy set`
#[derive(Debug, Args)]
pub struct PolicySetArgs {
    /// The policy's name: a-z, 0-9 and '-'.
    pub name: String,
    /// Which nodes it governs: a label selector (as for `shoal distribute --to`; "" for all).
    #[arg(long, value_name = "SELECTOR")]
    pub to: String,
    /// Upload cap over all of a node's transfers, per second: 10MiB/s, 500KiB. 0 is the same
    /// as --leech-only.
    #[arg(long, value_name = "RATE", value_parser = crate::units::parse_rate)]
    pub upload_rate: Option<u64>,
    /// Download cap over all of a node's transfers, per second.
    #[arg(long, value_name = "RATE", value_parser = crate::units::parse_rate)]
    pub download_rate: Option<u64>,
    /// Upload nothing at all (metered or VPN links); the nodes still download what they are
    /// assigned.
    #[arg(long, conflicts_with = "upload_rate")]
    pub leech_only: bool,
    /// The most peers a node keeps per artifact.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_peers: Option<u32>,
    /// Once no placement assigns an artifact to a node, keep seeding it this long (30m, 8h,
    /// 7d), then remove it from the node. Default: keep it.
    #[arg(long, value_name = "DURATION", value_parser = crate::units::parse_duration)]
    pub retain_after: Option<std::time::Duration>,
    /// The most bytes of artifacts a node keeps (50GiB). Least recently used artifacts no
    /// placement pins are evicted to make room; an assignment that cannot fit fails with
    /// `quota`.
    #[arg(long, value_name = "SIZE", value_parser = crate::units::parse_size)]
    pub quota: Option<u64>,
    /// Client options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// A policy's name.
#[derive(Debug, Args)]
pub struct PolicyNameArgs {
    /// The policy.
    pub name: String,
    /// Client options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `shoal policy node`
#[derive(Debug, Args)]
pub struct PolicyNodeArgs {
    /// The node's id (as `shoal nodes` lists it).
    pub node_id: String,
    /// Client options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// A placement's name.
#[derive(Debug, Args)]
pub struct PlacementNameArgs {
    /// The placement.
    pub name: String,
    /// Client options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `--server`: where the control plane's API is, for the commands that call it directly.
#[derive(Debug, Args)]
pub struct ServerUrl {
    /// The control plane's API.
    #[arg(
        long = "server",
        global = true,
        env = "SHOAL_SERVER",
        value_name = "URL",
        default_value = "http://127.0.0.1:7421"
    )]
    pub url: String,
}

/// What each role may do, for `shoal token --help`.
const ROLES: &str = "\
Roles:
  admin      everything: placements, policies, credentials, and what the others may do
  publisher  publish (bind NAME:TAG to content) and read
  reader     read: artifacts, nodes, placements, policies
  agent      an agent's own credential: read, register and heartbeat, follow its assignments
             and report progress; it cannot publish or place

Callers on the control plane's loopback interface without a token are admins (unless the server
runs with --no-trust-loopback); everyone else presents a token (--token, --token-file,
SHOAL_TOKEN, SHOAL_TOKEN_FILE). When the control plane first starts it creates the admin
credential `bootstrap` and writes its token to DATA_DIR/admin.token (mode 0600).

Examples:
  shoal token issue --role publisher ci-builds --server http://cp:7421 --token-file admin.token
  shoal token issue --role agent agent-host-17 > /etc/shoal/agent.token
  shoal tokens
  shoal token revoke ci-builds

Exit codes: 0 success; 1 failure; 3 no such credential; 4 the name is taken; 5 the control plane
cannot be reached; 6 not allowed (no token, a revoked one, or not an admin's).";

/// `shoal token ...`
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// What to do with credentials.
    #[command(subcommand)]
    pub command: TokenCommand,
    /// The control plane.
    #[command(flatten)]
    pub server: ServerUrl,
}

/// `shoal token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a credential and print its token, once: store it now (the control plane keeps
    /// only a hash).
    #[command(after_help = ROLES)]
    Issue(TokenIssueArgs),
    /// Revoke the valid credential with this name; calls presenting it are refused from the
    /// next one on.
    #[command(after_help = ROLES)]
    Revoke(TokenNameArgs),
}

/// `shoal token issue`
#[derive(Debug, Args)]
pub struct TokenIssueArgs {
    /// Who or what will hold it: 1 to 128 of letters, digits, '.', '_', '-' and '@' (e.g.
    /// alice@example.com, ci-builds, agent-host-17).
    pub name: String,
    /// What it may do (see below).
    #[arg(long, value_parser = ["admin", "publisher", "reader", "agent"])]
    pub role: String,
    /// Client options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// A credential's name.
#[derive(Debug, Args)]
pub struct TokenNameArgs {
    /// The credential.
    pub name: String,
    /// Client options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `shoal tokens`
#[derive(Debug, Args)]
pub struct TokensArgs {
    /// The control plane.
    #[command(flatten)]
    pub server: ServerUrl,
    /// Client options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `shoal completions`
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

/// Exit codes of the client commands.
pub const EXIT_CODES: &str = "\
Exit codes: 0 success; 1 failure; 2 bad usage; 3 not found; 4 conflict (tag bound to other
content, destination exists); 5 agent or control plane unreachable; 6 permission (no token or a
revoked one, a role that may not do this, a path outside the allowed roots).";
