//! nginx (Debian's `nginx-light`, installed by `scripts/install-test-deps.sh`) serving a
//! directory on a loopback port, over HTTP or HTTPS, for web seed and torrent URL tests.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Running, free_port, wait_for_port};

const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// nginx serving `root` on a free loopback port, as one process (no master/worker pair) so
/// dropping it leaves nothing behind.
pub struct Nginx {
    _process: Running,
    port: u16,
}

impl Nginx {
    /// Serves `root` over plain HTTP.
    pub fn serve(root: &Path, work: &Path) -> Self {
        Self::start(root, work, "", "")
    }

    /// Serves `root` over HTTPS with `cert` and `key` (PEM files), adding `extra` (nginx
    /// directives, such as `location` blocks) to the server.
    pub fn serve_tls(root: &Path, work: &Path, cert: &Path, key: &Path, extra: &str) -> Self {
        let tls = format!(
            " ssl; ssl_certificate {}; ssl_certificate_key {}",
            cert.display(),
            key.display()
        );
        Self::start(root, work, &tls, extra)
    }

    fn start(root: &Path, work: &Path, tls: &str, extra: &str) -> Self {
        let port = free_port(LOOPBACK);
        std::fs::create_dir_all(work).unwrap();
        let w = work.display();
        let user = if is_root() { "user root;" } else { "" };
        let conf = format!(
            "{user}
daemon off;
master_process off;
pid {w}/nginx.pid;
error_log {w}/error.log;
events {{}}
http {{
  access_log {w}/access.log;
  client_body_temp_path {w}; proxy_temp_path {w}; fastcgi_temp_path {w};
  uwsgi_temp_path {w}; scgi_temp_path {w};
  server {{ listen 127.0.0.1:{port}{tls}; root {root}; {extra} }}
}}
",
            root = root.display()
        );
        std::fs::write(work.join("nginx.conf"), conf).unwrap();
        let child = Command::new(nginx())
            .arg("-p")
            .arg(work)
            .arg("-c")
            .arg(work.join("nginx.conf"))
            .arg("-e")
            .arg(work.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (scripts/install-test-deps.sh installs nginx-light)");
        let process = Running(child);
        wait_for_port(LOOPBACK, port);
        Self {
            _process: process,
            port,
        }
    }

    /// The plain HTTP URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    /// The HTTPS URL of `path` (for a server started with [`Nginx::serve_tls`]).
    pub fn https_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}/{path}", self.port)
    }

    /// Requests the server answered, from its access log.
    pub fn requests(work: &Path) -> usize {
        std::fs::read_to_string(work.join("access.log"))
            .map(|log| log.lines().count())
            .unwrap_or(0)
    }
}

fn nginx() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("nginx"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}
