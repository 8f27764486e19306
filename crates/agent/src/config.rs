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
//! control_plane = "http://10.0.0.1:7421"   # absent: run the control plane in-process; a
//!                                    # cluster: every server node, as an array
//!                                    # ["http://10.0.0.1:7421", "http://10.0.0.2:7421"] or
//!                                    # one string "http://10.0.0.1:7421,http://10.0.0.2:7421"
//! server_token_file = "/etc/shoal/agent.token"  # this agent's credential for control_plane
//!                                    # (an `agent`-role token: `shoal token issue --role agent`)
//! allowed_roots = ["/srv", "/tmp"]   # where publish may read and retrieve may write
//! on_complete = ["/usr/local/bin/deploy", "--restart"]   # run once per verified artifact,
//!                                    # with its path appended; only this file can set it
//!
//! [labels]                           # `site` (else region.zone) groups hosts behind one WAN
//! region = "eu-west"                 # link: peers are found in the same site first
//! zone = "a"
//!
//! [server]                           # the embedded control plane, when control_plane is absent
//! api_listen = "0.0.0.0:7421"
//! tracker_listen = "0.0.0.0:6969"
//! announce_url = "http://10.0.0.1:6969/announce"   # default: from advertise_ip and the port
//! trust_loopback = true              # callers on loopback without a token are admins
//! ```
//!
//! With several control-plane URLs the agent talks to one server node at a time, starting with
//! the first, and moves to the next when one cannot be reached, does not answer in time or
//! says it is unavailable (see [`crate::control`]). Every URL is `http://HOST:PORT` (the
//! control plane listens on 7421 by default); a URL that is not is refused when the
//! configuration is read, naming it.

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
    /// The control plane's API URLs, one per server node; `None` embeds a control plane.
    pub control_plane: Option<ControlPlanes>,
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

/// The control plane's API URLs, one per server node, in the order the agent tries them: at
/// least one, each `http://HOST:PORT` (no path, query or user), none twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlPlanes(Vec<String>);

/// Why a list of control-plane URLs cannot be used. The messages name the URL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlPlaneError {
    /// No URL at all (an empty string or array).
    #[error(
        "no control plane URL given: write http://HOST:PORT (e.g. http://10.0.0.1:7421), several separated by commas, or leave control_plane out to run one in-process"
    )]
    Empty,
    /// An empty entry: two commas in a row, or one at either end.
    #[error(
        "an empty control plane URL in {list:?} (two commas in a row, a comma at either end, or \"\" in an array): write http://HOST:PORT,http://HOST:PORT"
    )]
    EmptyEntry {
        /// The whole string that held it.
        list: String,
    },
    /// A URL this agent cannot use.
    #[error(
        "{url:?} is not a control plane URL: {reason}; write http://HOST:PORT (e.g. http://10.0.0.1:7421)"
    )]
    Invalid {
        /// The URL as written.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The same URL twice: the agent would try the same server node twice.
    #[error("the control plane URL {url:?} is listed twice; list each server node once")]
    Duplicate {
        /// The URL.
        url: String,
    },
}

impl ControlPlanes {
    /// Parses one string: a URL, or several separated by commas (spaces around them allowed).
    ///
    /// # Errors
    /// [`ControlPlaneError`] naming the URL that cannot be used.
    pub fn parse(text: &str) -> Result<Self, ControlPlaneError> {
        Self::from_list([text])
    }

    /// Parses a list of strings, each a URL or several separated by commas (a flag given more
    /// than once, a TOML array), in order.
    ///
    /// # Errors
    /// [`ControlPlaneError`] naming the URL that cannot be used.
    pub fn from_list<S: AsRef<str>>(
        items: impl IntoIterator<Item = S>,
    ) -> Result<Self, ControlPlaneError> {
        let items: Vec<S> = items.into_iter().collect();
        if items.iter().all(|item| item.as_ref().trim().is_empty()) {
            return Err(ControlPlaneError::Empty);
        }
        let mut urls: Vec<String> = Vec::new();
        for item in &items {
            let item = item.as_ref();
            for url in item.split(',') {
                let url = url.trim();
                if url.is_empty() {
                    return Err(ControlPlaneError::EmptyEntry {
                        list: item.to_owned(),
                    });
                }
                let url = control_plane_url(url)?;
                if urls.contains(&url) {
                    return Err(ControlPlaneError::Duplicate { url });
                }
                urls.push(url);
            }
        }
        Ok(Self(urls))
    }

    /// The URLs, in order (at least one).
    pub fn urls(&self) -> &[String] {
        &self.0
    }
}

impl std::fmt::Display for ControlPlanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

/// One control-plane URL, checked: `http://HOST:PORT` with an optional trailing `/`, which
/// is dropped.
fn control_plane_url(url: &str) -> Result<String, ControlPlaneError> {
    let invalid = |reason: &str| ControlPlaneError::Invalid {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: http::Uri =
        url.parse()
            .map_err(|e: http::uri::InvalidUri| ControlPlaneError::Invalid {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(invalid(
                "https is not supported yet (the agent speaks plain HTTP/2 to the control plane)",
            ));
        }
        Some(_) => return Err(invalid("the scheme must be http://")),
        None => return Err(invalid("it has no scheme (start it with http://)")),
    }
    let Some(authority) = uri.authority() else {
        return Err(invalid("it names no host"));
    };
    if authority.as_str().contains('@') {
        return Err(invalid(
            "it holds a user name; the agent's credential goes in server_token_file",
        ));
    }
    if authority.host().is_empty() {
        return Err(invalid("it names no host"));
    }
    if authority.port_u16().is_none() {
        return Err(invalid(
            "it names no port (the control plane listens on 7421 unless told otherwise)",
        ));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(invalid(
            "it has a path or a query; the control plane serves its API at the root",
        ));
    }
    Ok(format!("http://{authority}"))
}

impl<'de> Deserialize<'de> for ControlPlanes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Urls;
        impl<'de> serde::de::Visitor<'de> for Urls {
            type Value = ControlPlanes;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a control plane URL, several separated by commas, or an array of URLs")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                ControlPlanes::parse(text).map_err(E::custom)
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    items.push(item);
                }
                ControlPlanes::from_list(&items).map_err(serde::de::Error::custom)
            }
        }
        deserializer.deserialize_any(Urls)
    }
}

impl AgentConfig {
    /// The site this host is in, for peer selection: the `site` label, else `region.zone`
    /// when both are set, else none. A site is the hosts that share a LAN behind one WAN
    /// link; trackers name peers of the same site so data crosses into a site about once.
    pub fn site(&self) -> Option<String> {
        if let Some(site) = self.labels.get("site") {
            return Some(site.clone());
        }
        match (self.labels.get("region"), self.labels.get("zone")) {
            (Some(region), Some(zone)) => Some(format!("{region}.{zone}")),
            _ => None,
        }
    }

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
    fn the_site_is_the_site_label_else_region_and_zone() {
        let site = |labels: &str| {
            AgentConfig::parse(&format!("[labels]\n{labels}"))
                .unwrap()
                .site()
        };
        assert_eq!(
            site("site = \"lab-2\"\nregion = \"eu\""),
            Some("lab-2".into())
        );
        assert_eq!(
            site("region = \"eu-west\"\nzone = \"a\""),
            Some("eu-west.a".into())
        );
        assert_eq!(site("region = \"eu-west\""), None);
        assert_eq!(site(""), None);
    }

    #[test]
    fn a_misspelt_key_is_refused_by_name() {
        let e = AgentConfig::parse("data_dri = \"/x\"").unwrap_err();
        assert!(e.contains("data_dri"), "{e}");
    }

    #[test]
    fn control_plane_is_one_url_a_comma_separated_list_or_an_array() {
        let urls = |text: &str| {
            AgentConfig::parse(text)
                .map(|c| c.control_plane.map(|c| c.urls().to_vec()))
                .map_err(|e| e.to_string())
        };
        let one = vec!["http://10.0.0.1:7421".to_owned()];
        let three = vec![
            "http://10.0.0.1:7421".to_owned(),
            "http://10.0.0.2:7421".to_owned(),
            "http://10.0.0.3:7421".to_owned(),
        ];
        assert_eq!(
            urls(r#"control_plane = "http://10.0.0.1:7421""#),
            Ok(Some(one))
        );
        assert_eq!(
            urls(
                r#"control_plane = "http://10.0.0.1:7421, http://10.0.0.2:7421,http://10.0.0.3:7421/""#
            ),
            Ok(Some(three.clone()))
        );
        assert_eq!(
            urls(
                r#"control_plane = ["http://10.0.0.1:7421", "http://10.0.0.2:7421", "http://10.0.0.3:7421"]"#
            ),
            Ok(Some(three.clone()))
        );
        assert_eq!(
            urls(
                r#"control_plane = ["http://10.0.0.1:7421,http://10.0.0.2:7421", "http://10.0.0.3:7421"]"#
            ),
            Ok(Some(three))
        );
        assert_eq!(urls(""), Ok(None));
    }

    #[test]
    fn a_bad_control_plane_url_is_refused_by_name_and_line() {
        let cases = [
            (
                r#"control_plane = "10.0.0.1:7421""#,
                "start it with http://",
            ),
            (
                r#"control_plane = "https://10.0.0.1:7421""#,
                "https is not supported",
            ),
            (
                r#"control_plane = "ftp://10.0.0.1:7421""#,
                "scheme must be http",
            ),
            (r#"control_plane = "http://10.0.0.1""#, "names no port"),
            (
                r#"control_plane = "http://10.0.0.1:7421/api""#,
                "path or a query",
            ),
            (
                r#"control_plane = "http://admin:pw@10.0.0.1:7421""#,
                "user name",
            ),
            (
                r#"control_plane = "http://a b:7421""#,
                "\"http://a b:7421\"",
            ),
            (
                r#"control_plane = "http://10.0.0.1:7421,,http://10.0.0.2:7421""#,
                "empty control plane URL",
            ),
            (
                r#"control_plane = "http://10.0.0.1:7421,""#,
                "empty control plane URL",
            ),
            (
                r#"control_plane = ["http://10.0.0.1:7421", ""]"#,
                "empty control plane URL",
            ),
            (r#"control_plane = """#, "no control plane URL given"),
            (r#"control_plane = []"#, "no control plane URL given"),
            (
                r#"control_plane = 7421"#,
                "a control plane URL, several separated by commas",
            ),
            (
                r#"control_plane = "http://10.0.0.1:7421,http://10.0.0.1:7421/""#,
                "listed twice",
            ),
        ];
        for (text, expected) in cases {
            let e = AgentConfig::parse(text).unwrap_err();
            assert!(e.contains(expected), "{text}: {e}");
            assert!(e.contains("control_plane"), "{text}: the key is named: {e}");
        }
    }

    #[test]
    fn flags_given_more_than_once_keep_their_order() {
        let urls =
            ControlPlanes::from_list(["http://h1:7421,http://h2:7421", "http://h3:7421"]).unwrap();
        assert_eq!(
            urls.urls(),
            ["http://h1:7421", "http://h2:7421", "http://h3:7421"]
        );
        assert_eq!(
            urls.to_string(),
            "http://h1:7421,http://h2:7421,http://h3:7421"
        );
        assert_eq!(
            ControlPlanes::from_list(Vec::<String>::new()),
            Err(ControlPlaneError::Empty)
        );
    }
}
