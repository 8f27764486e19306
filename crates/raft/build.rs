//! Compiles `proto/shoal/raft/v1/raft.proto` with protox (pure Rust, no system `protoc`) into
//! prost messages and a tonic client and server. Kept apart from `crates/api`: this service is
//! spoken only between control-plane servers, has no REST mapping, and is not part of `shoal.v1`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["shoal/raft/v1/raft.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
