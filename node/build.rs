//! Generates the kubelet device plugin API, DRA plugin API and plugin
//! registration API (clients and servers) from `proto/` with the protoc shipped in `protoc-bin-vendored`, so the
//! build needs no system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build runs the compiler named by PROTOC.
    std::env::set_var("PROTOC", protoc);
    let protos = [
        "proto/api.proto",
        "proto/dra.proto",
        "proto/pluginregistration.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&protos, &["proto"])?;
    Ok(())
}
