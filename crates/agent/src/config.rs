//! The agent's configuration: a TOML file, every key optional, overridden by flags and
//! `SHOAL_*` environment variables (the binary maps those onto [`AgentConfig`]).
//!
//! ```toml
//! data_dir = "/var/lib/shoal"        # artifacts, downloads in progress, the embedded catalog
//! node_id = "build-17"               # default: the host name
//! api_listen = "127.0.0.1:7420"      # the local API (gRPC + REST), loopback by default
//! peer_listen = "0.0.0.0:6881"       # BitTorrent
//! advertise_ip = "10.0.0.17"         # the address peers and the tracker see; default: the
//!                                    # address this host uses to reach the control plane
//! control_plane = "http://10.0.0.1:7421"   # absent: run the control plane in-process
//! server_token_file = "/etc/shoal/agent.token"  # this agent's credential for control_plane
//!                                    # (an `agent`-role token: `shoal token issue --role agent`)
//! allowed_roots = ["/srv", "/tmp"]   # where publish may read and retrieve may write
//! on_complete = ["/usr/local/bin/deploy", "--restart"]   # run once per verified artifact,
//!                                    # with its path appended; only this file can set it
//!
//! [labels]
//! region = "eu-west"
//! zone = "a"
//!
//! [server]                           # the embedded control plane, when control_plane is absent
//! api_listen = "0.0.0.0:7421"
//! tracker_listen = "0.0.0.0:6969"
//! announce_url = "http://10.0.0.1:6969/announce"   # default: from advertise_ip and the port
//! trust_loopback = true              # callers on loopback without a token are admins
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The agent's settings. See the module documentation for the file format.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Where everything the agent keeps lives.
    pub data_dir: PathBuf,
    /// This node's id; `None` uses the host name.
    pub node_id: Option<String>,
    /// Labels: `region`, `zone`, `rack`, and free-form ones.
    pub labels: BTreeMap<String, String>,
    /// The local API's address.
    pub api_listen: SocketAddr,
    /// The BitTorrent listener's address.
    pub peer_listen: SocketAddr,
    /// The address other hosts reach this one at; `None` works it out.
    pub advertise_ip: Option<IpAddr>,
    /// The control plane's API URL; `None` embeds one.
    pub control_plane: Option<String>,
    /// A file holding this agent's bearer token for the control plane (read at start);
    /// wins over `server_token`.
    pub server_token_file: Option<PathBuf>,
    /// This agent's bearer token for the control plane; prefer `server_token_file`, which
    /// keeps the secret out of the configuration.
    pub server_token: Option<String>,
    /// Directories that publish may read from and retrieve may write into. Empty means
    /// anywhere the agent's user may.
    pub allowed_roots: Vec<PathBuf>,
    /// Bearer tokens accepted on the local API from callers off loopback.
    pub api_tokens: Vec<String>,
    /// A command run once for each artifact verified on this node, with the artifact's path
    /// appended (no shell): `["/usr/local/bin/deploy", "--restart"]`. Empty for none. Only
    /// this file sets it; the control plane cannot.
    pub on_complete: Vec<String>,
    /// The embedded control plane.
    pub server: EmbeddedServer,
}

/// Settings of the in-process control plane.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedServer {
    /// Its API's address (agents elsewhere point `control_plane` here).
    pub api_listen: SocketAddr,
    /// The HTTP tracker's address.
    pub tracker_listen: SocketAddr,
    /// The announce URL put in torrents; `None` builds it from the advertised address.
    pub announce_url: Option<String>,
    /// Whether a caller on loopback without a token is an admin (default true). Callers off
    /// loopback always need a credential.
    pub trust_loopback: bool,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/shoal"),
            node_id: None,
            labels: BTreeMap::new(),
            api_listen: SocketAddr::from(([127, 0, 0, 1], 7420)),
            peer_listen: SocketAddr::from(([0, 0, 0, 0], 6881)),
            advertise_ip: None,
            control_plane: None,
            server_token_file: None,
            server_token: None,
            allowed_roots: Vec::new(),
            api_tokens: Vec::new(),
            on_complete: Vec::new(),
            server: EmbeddedServer::default(),
        }
    }
}

impl Default for EmbeddedServer {
    fn default() -> Self {
        Self {
            api_listen: SocketAddr::from(([0, 0, 0, 0], 7421)),
            tracker_listen: SocketAddr::from(([0, 0, 0, 0], 6969)),
            announce_url: None,
            trust_loopback: true,
        }
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("the configuration file {path} is not valid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the TOML reader said (line, column, key).
        message: String,
    },
}

impl AgentConfig {
    /// This agent's token for the control plane: the content of `server_token_file` (trimmed),
    /// else `server_token`, else `None`.
    ///
    /// # Errors
    /// [`ConfigError::Read`] when the file cannot be read.
    pub fn control_plane_token(&self) -> Result<Option<String>, ConfigError> {
        match &self.server_token_file {
            Some(path) => std::fs::read_to_string(path)
                .map(|t| Some(t.trim().to_owned()))
                .map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                }),
            None => Ok(self.server_token.clone()),
        }
    }

    /// Reads a configuration file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and the problem.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses a configuration's text.
    ///
    /// # Errors
    /// The TOML reader's message (line, column, key).
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_defaults() {
        assert_eq!(AgentConfig::parse(""), Ok(AgentConfig::default()));
    }

    #[test]
    fn the_documented_example_parses() {
        let text = r#"
            data_dir = "/srv/shoal"
            node_id = "build-17"
            api_listen = "127.0.0.1:7500"
            advertise_ip = "10.0.0.17"
            control_plane = "http://10.0.0.1:7421"
            allowed_roots = ["/srv"]
            [labels]
            region = "eu-west"
            [server]
            tracker_listen = "0.0.0.0:7000"
        "#;
        let config = AgentConfig::parse(text).unwrap_or_default();
        assert_eq!(config.node_id.as_deref(), Some("build-17"));
        assert_eq!(
            config.labels.get("region").map(String::as_str),
            Some("eu-west")
        );
        assert_eq!(config.server.tracker_listen.port(), 7000);
        assert_eq!(config.server.api_listen.port(), 7421);
    }

    #[test]
    fn a_misspelt_key_is_refused_by_name() {
        let e = AgentConfig::parse("data_dri = \"/x\"").unwrap_err();
        assert!(e.contains("data_dri"), "{e}");
    }
}
