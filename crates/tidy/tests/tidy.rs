//! The house rules of ARCHITECTURE.md, checked. See `src/lib.rs` for the layers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test and bench code: a panic is the failure report"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Crates a `core` crate must not reach, directly or transitively: runtimes and OS access.
const FORBIDDEN_IN_CORE: &[&str] = &[
    "tokio",
    "async-std",
    "smol",
    "mio",
    "futures",
    "futures-util",
    "futures-executor",
    "async-io",
    "getrandom",
    "rand",
    "libc",
    "nix",
    "socket2",
    "rayon",
    "crossbeam",
];

/// Source patterns a `core` crate must not contain, with the reason each is banned.
const FORBIDDEN_PATTERNS: &[(&str, &str)] = &[
    ("std::fs", "core crates do no file I/O"),
    ("std::net", "core crates open no sockets"),
    ("std::thread", "core crates spawn no threads"),
    ("std::process", "core crates run no processes"),
    ("std::env", "core crates read no environment"),
    (
        "Instant::now",
        "core crates read no clock: take time as an argument",
    ),
    (
        "SystemTime",
        "core crates read no clock: take time as an argument",
    ),
    ("thread_rng", "core crates use an injected, seeded RNG"),
    ("OsRng", "core crates use an injected, seeded RNG"),
];

struct Workspace {
    root: PathBuf,
    /// Package name -> (layer, manifest directory, direct workspace dependencies).
    members: BTreeMap<String, (String, PathBuf, Vec<String>)>,
    /// Package id -> normal (non-dev, non-build) dependency package ids, from the resolve graph.
    graph: BTreeMap<String, Vec<String>>,
    /// Package id -> name.
    names: BTreeMap<String, String>,
    /// Package name -> id, for members.
    ids: BTreeMap<String, String>,
}

/// The workspace, read once per test run (`cargo metadata` takes a lock).
fn workspace() -> &'static Workspace {
    static WORKSPACE: std::sync::OnceLock<Workspace> = std::sync::OnceLock::new();
    WORKSPACE.get_or_init(read_workspace)
}

fn read_workspace() -> Workspace {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    // Only this platform's packages: the layering rules are about what we build here.
    let host = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned()))
        .arg("-vV")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| {
            v.lines()
                .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        })
        .expect("rustc -vV names the host");
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            &host,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let root = PathBuf::from(meta["workspace_root"].as_str().expect("workspace_root"));
    let member_ids: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut members = BTreeMap::new();
    let mut names = BTreeMap::new();
    let mut ids = BTreeMap::new();
    for package in meta["packages"].as_array().expect("packages") {
        let id = package["id"].as_str().expect("id").to_owned();
        let name = package["name"].as_str().expect("name").to_owned();
        names.insert(id.clone(), name.clone());
        if !member_ids.contains(id.as_str()) {
            continue;
        }
        let layer = package["metadata"]["shoal"]["layer"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let dir = Path::new(package["manifest_path"].as_str().expect("manifest"))
            .parent()
            .expect("dir")
            .to_owned();
        let deps = package["dependencies"]
            .as_array()
            .expect("deps")
            .iter()
            .filter(|d| d["kind"].is_null() && d["path"].is_string())
            .map(|d| d["name"].as_str().expect("dep name").to_owned())
            .collect();
        ids.insert(name.clone(), id);
        members.insert(name, (layer, dir, deps));
    }
    let mut graph = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().expect("resolve nodes") {
        let normal = node["deps"]
            .as_array()
            .expect("deps")
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k["kind"].is_null()))
            })
            .map(|d| d["pkg"].as_str().expect("pkg").to_owned())
            .collect();
        graph.insert(node["id"].as_str().expect("id").to_owned(), normal);
    }
    Workspace {
        root,
        members,
        graph,
        names,
        ids,
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_crate_declares_a_known_layer() {
    for (name, (layer, _, _)) in &workspace().members {
        assert!(
            ["core", "io", "bin", "test"].contains(&layer.as_str()),
            "{name}: add [package.metadata.shoal] layer = \"core\" | \"io\" | \"bin\" | \"test\" (found {layer:?})"
        );
    }
}

#[test]
fn dependencies_point_down_the_layers() {
    let ws = workspace();
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("core", &["core"][..]),
        ("io", &["core", "io"][..]),
        ("bin", &["core", "io"][..]),
        ("test", &["core", "io", "bin", "test"][..]),
    ]);
    for (name, (layer, _, deps)) in &ws.members {
        for dep in deps {
            let dep_layer = ws.members.get(dep).map_or("", |m| m.0.as_str());
            assert!(
                allowed
                    .get(layer.as_str())
                    .is_some_and(|ok| ok.contains(&dep_layer)),
                "{name} ({layer}) must not depend on {dep} ({dep_layer})"
            );
        }
    }
}

#[test]
fn core_crates_reach_no_runtime_or_os_crate() {
    let ws = workspace();
    for (name, (layer, _, _)) in &ws.members {
        if layer != "core" {
            continue;
        }
        let mut seen = BTreeSet::new();
        let mut stack = vec![ws.ids[name].clone()];
        while let Some(id) = stack.pop() {
            if seen.insert(id.clone()) {
                stack.extend(ws.graph.get(&id).into_iter().flatten().cloned());
            }
        }
        for id in &seen {
            let dep = &ws.names[id];
            assert!(
                !FORBIDDEN_IN_CORE.contains(&dep.as_str()),
                "core crate {name} reaches {dep}"
            );
        }
    }
}

#[test]
fn core_sources_touch_no_clock_file_socket_or_thread() {
    let ws = workspace();
    for (name, (layer, dir, _)) in &ws.members {
        if layer != "core" {
            continue;
        }
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).expect("lib.rs");
        assert!(
            lib.contains("#![forbid(unsafe_code)]"),
            "{name}/src/lib.rs must #![forbid(unsafe_code)]"
        );
        let mut files = Vec::new();
        rust_files(&dir.join("src"), &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).expect("source");
            for (line_no, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for (pattern, why) in FORBIDDEN_PATTERNS {
                    assert!(
                        !code.contains(pattern),
                        "{}:{}: `{pattern}`: {why}",
                        file.display(),
                        line_no + 1
                    );
                }
            }
        }
    }
}

#[test]
fn every_source_file_says_what_it_is_for() {
    let ws = workspace();
    let mut files = Vec::new();
    rust_files(&ws.root.join("crates"), &mut files);
    let fuzz = ws.root.join("fuzz/fuzz_targets");
    if fuzz.exists() {
        rust_files(&fuzz, &mut files);
    }
    for file in files {
        let text = std::fs::read_to_string(&file).expect("source");
        assert!(
            text.starts_with("//!"),
            "{} must open with a //! comment saying what it is for",
            file.display()
        );
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        assert!(
            !["utils", "util", "helpers", "helper", "misc"].contains(&stem),
            "{}: name the concept instead of a grab-bag module",
            file.display()
        );
    }
}

#[test]
fn architecture_md_names_every_crate() {
    let ws = workspace();
    let doc = std::fs::read_to_string(ws.root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    for (name, (_, dir, _)) in &ws.members {
        let rel = dir
            .strip_prefix(&ws.root)
            .expect("inside the workspace")
            .display()
            .to_string();
        assert!(
            doc.contains(&format!("`{rel}`")),
            "ARCHITECTURE.md must describe {name} as `{rel}`"
        );
    }
}

/// Every method of every `shoal.v1` service the control plane implements begins by naming its
/// action (`self.authorize(&request, Action::...)`), so no method is left open by accident and
/// gRPC and REST are judged by the same line.
#[test]
fn every_control_plane_method_authorizes_its_caller() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut methods = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).expect("source");
        let mut rest = text.as_str();
        while let Some(start) = rest.find("Service for ControlPlane {") {
            let block = &rest[start..];
            let end = block.find("\n}\n").unwrap_or(block.len());
            for method in block[..end].split("    async fn ").skip(1) {
                methods += 1;
                let name = method.split('(').next().unwrap_or("");
                let body = method.split_once(", Status> {").map_or("", |(_, b)| b);
                let first = body.trim_start().lines().next().unwrap_or("");
                assert!(
                    first.contains("self.authorize(&request, Action::"),
                    "{}: {name} must begin with self.authorize(&request, Action::...), not {first:?}",
                    file.display()
                );
            }
            rest = &block[end..];
        }
    }
    assert!(
        methods >= 14,
        "found only {methods} service methods; has the layout changed?"
    );
}

/// Only `crates/raft` names openraft: the rest of Shoal sees `shoal_raft`'s own types, so the
/// consensus library can be upgraded or replaced in one crate.
#[test]
fn only_the_raft_crate_depends_on_openraft() {
    let ws = workspace();
    for (name, (_, dir, _)) in &ws.members {
        if name == "shoal-raft" {
            continue;
        }
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
        for line in manifest.lines() {
            let key = line
                .trim_start()
                .split(['=', '.', ' '])
                .next()
                .unwrap_or("");
            assert!(
                key != "openraft" && !line.contains("package = \"openraft\""),
                "{name} depends on openraft; only crates/raft may (use shoal_raft instead)"
            );
        }
    }
    let raft = ws
        .members
        .get("shoal-raft")
        .expect("the raft crate is a member");
    let manifest = std::fs::read_to_string(raft.1.join("Cargo.toml")).expect("Cargo.toml");
    assert!(
        manifest.contains("openraft = { version = \"=0.9.25\""),
        "crates/raft pins openraft exactly (see ARCHITECTURE.md, Why openraft 0.9.25)"
    );
}
